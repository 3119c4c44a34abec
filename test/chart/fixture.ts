/**
 * What the chart tests share: a build document and a support image lock with distinct
 * digests, the chart packaged from them (the `chart` function's packaging, into a temp dir),
 * helm with its homes in that temp dir, and the Pod Security checker (tools/pss-check).
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { catalog } from '../../ci/src/catalog/index.ts';
import type { BuildDocument } from '../../ci/src/build/document.ts';
import { packageChart, releasePins, type SupportLockLike } from '../../ci/src/chart/index.ts';
import { findTool } from '../helpers/tools.ts';

export const ROOT = resolve(import.meta.dirname, '../..');
export const CHART_VERSION = '1.4.0-rc.1';
export const APP_VERSION = 'v1.4.0-rc.1';
export const EPOCH = 1_700_000_000;

const hex = (s: string) => createHash('sha256').update(s).digest('hex');

export function fixtureBuild(registry = '127.0.0.1:5000', salt = ''): BuildDocument {
  return {
    images: catalog.services.map((s) => ({
      service: s.name,
      repository: `${registry}/stellaops/${s.image}`,
      digest: `sha256:${hex(`${salt}image ${s.name}`)}`,
      platforms: { 'linux/amd64': `sha256:${hex(`${salt}${s.name} amd64`)}`, 'linux/arm64': `sha256:${hex(`${salt}${s.name} arm64`)}` },
    })),
  };
}

export function fixtureLock(): SupportLockLike {
  const names = ['postgres', 'redis', 'object-store', 'queue', 'otel-collector'] as const;
  return { images: Object.fromEntries(names.map((n) => [n, { repository: `127.0.0.1:5000/stellaops/support-${n}`, digest: `sha256:${hex(`support ${n}`)}`, version: '1.0' }])) };
}

/** The released chart's packaging of the fixture, written to dir. */
export function packageFixture(dir: string, build = fixtureBuild(), lock = fixtureLock()) {
  const pins = releasePins({ images: build, supportLock: lock, chartVersion: CHART_VERSION, appVersion: APP_VERSION });
  const pkg = packageChart({ source: ROOT, pins, sourceDateEpoch: EPOCH });
  const path = join(dir, pkg.fileName);
  writeFileSync(path, pkg.bytes);
  return { pkg, path, pins };
}

export interface Helm {
  readonly bin: string;
  run(args: readonly string[]): { status: number | null; stdout: string; stderr: string };
}

export function helm(): Helm {
  const bin = findTool('helm')!;
  const home = mkdtempSync(join(tmpdir(), 'stella-helm-'));
  const env = { ...process.env, HELM_CACHE_HOME: join(home, 'cache'), HELM_CONFIG_HOME: join(home, 'config'), HELM_DATA_HOME: join(home, 'data') };
  return {
    bin,
    run: (args) => {
      const r = spawnSync(bin, args, { env, encoding: 'utf8', timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
      return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
    },
  };
}

/** tools/pss-check built (cached by version) by its build script, or why not. */
export function pssCheck(): { path?: string; why?: string } {
  const r = spawnSync('bash', [join(ROOT, 'tools/pss-check/build.sh')], { encoding: 'utf8', timeout: 1_200_000 });
  const path = r.stdout?.trim().split('\n').pop();
  return r.status === 0 && path ? { path } : { why: `tools/pss-check/build.sh failed (exit ${r.status}): ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' ')}` };
}

export type K8sObject = { kind: string; apiVersion: string; metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> }; [k: string]: unknown };

export function parseManifests(text: string): K8sObject[] {
  return parseAllDocuments(text)
    .map((d) => d.toJS() as K8sObject | null)
    .filter((o): o is K8sObject => !!o && typeof o === 'object' && 'kind' in o);
}

type PodSpec = { containers: Container[]; initContainers?: Container[] };
export type Container = { name: string; image: string; env?: { name: string; value?: string }[]; resources?: { requests?: Record<string, string>; limits?: Record<string, string> }; livenessProbe?: unknown; readinessProbe?: unknown };

/** The pod spec of a workload, if it has one. */
export function podSpecOf(o: K8sObject): PodSpec | undefined {
  const spec = o.spec as Record<string, any> | undefined;
  switch (o.kind) {
    case 'Deployment':
    case 'StatefulSet':
    case 'Job':
      return spec?.template?.spec;
    case 'CronJob':
      return spec?.jobTemplate?.spec?.template?.spec;
    default:
      return undefined;
  }
}
