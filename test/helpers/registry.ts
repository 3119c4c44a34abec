/**
 * Throwaway OCI registries for one test file, on free loopback ports, storage
 * in a temp dir, no auth, deletes enabled:
 *
 *   distribution  Debian's `docker-registry` (distribution 2.8, no referrers
 *                 API: clients use the `sha256-<hex>` fallback tag). Installed
 *                 by scripts/host-setup.sh.
 *   referrers     tools/referrers-registry (go-containerregistry v0.22.0 with
 *                 the OCI 1.1 referrers API, made conformant), built and cached
 *                 by scripts/build-referrers-registry.sh.
 *
 * `startRegistryOfKind(kind)` starts either; `registryKinds()` lists both for
 * `describe.each`, each with whether it can run here and, if not, why.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitFor } from './net.ts';
import { CHECK_RUNS_IN, findTool, underCi } from './tools.ts';

export type RegistryKind = 'distribution' | 'referrers';

export interface TestRegistry {
  readonly kind: RegistryKind;
  /** True when the registry answers the OCI 1.1 referrers API (no fallback tag is written there). */
  readonly referrersApi: boolean;
  /** host:port, e.g. 127.0.0.1:41234 */
  readonly host: string;
  /** http://host:port */
  readonly url: string;
  /** Where it stores what is pushed (the referrers registry keeps manifests in memory, blobs here). */
  readonly storage: string;
  stop(): Promise<void>;
}

export const REGISTRY_BIN = findTool('docker-registry') ?? '/usr/bin/docker-registry';

export function registryAvailable(): boolean {
  return findTool('docker-registry') !== undefined;
}

export async function startRegistry(): Promise<TestRegistry> {
  const dir = mkdtempSync(join(tmpdir(), 'stella-registry-'));
  const port = await freePort();
  const config = join(dir, 'config.yml');
  writeFileSync(
    config,
    [
      'version: 0.1',
      'log: { level: error }',
      'storage:',
      `  filesystem: { rootdirectory: ${join(dir, 'data')} }`,
      '  delete: { enabled: true }',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '',
    ].join('\n'),
  );
  const proc: ChildProcess = spawn(REGISTRY_BIN, ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (d) => (stderr += String(d)));
  return served(proc, () => stderr, { kind: 'distribution', host: `127.0.0.1:${port}`, storage: join(dir, 'data'), dir });
}

const REPO_ROOT = join(import.meta.dirname, '..', '..');
let referrersBin: { path?: string; why?: string } | undefined;

/**
 * The referrers registry binary (built once, cached by
 * scripts/build-referrers-registry.sh), or why it is not available.
 */
export function referrersRegistryBinary(): { path?: string; why?: string } {
  if (referrersBin) return referrersBin;
  // Another build of it (e.g. the unwrapped go-containerregistry handler, to compare behaviour).
  const given = process.env.STELLA_REFERRERS_REGISTRY_BIN;
  if (given) return (referrersBin = existsSync(given) ? { path: given } : { why: `STELLA_REFERRERS_REGISTRY_BIN=${given} does not exist` });
  const r = spawnSync('bash', [join(REPO_ROOT, 'scripts', 'build-referrers-registry.sh')], { encoding: 'utf8', timeout: 600_000 });
  const path = r.stdout?.trim().split('\n').pop();
  referrersBin = r.status === 0 && path && existsSync(path) ? { path } : { why: `scripts/build-referrers-registry.sh failed (exit ${r.status}): ${(r.stderr ?? '').trim().split('\n').slice(-3).join(' ')}` };
  return referrersBin;
}

/** Starts tools/referrers-registry on a free loopback port (it picks the port and prints it). */
export async function startReferrersRegistry(): Promise<TestRegistry> {
  const bin = referrersRegistryBinary();
  if (!bin.path) throw new Error(`referrers registry unavailable: ${bin.why}`);
  const dir = mkdtempSync(join(tmpdir(), 'stella-referrers-registry-'));
  const storage = join(dir, 'blobs');
  const proc: ChildProcess = spawn(bin.path, ['--address', '127.0.0.1:0', '--disk', storage], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr?.on('data', (d) => (stderr += String(d)));
  const host = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`referrers registry printed no address within 15 s\n${stderr}`)), 15_000);
    proc.stdout?.on('data', (d) => {
      out += String(d);
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve(out.slice(0, nl).trim());
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`referrers registry exited (${code}) before listening\n${stderr}`));
    });
  });
  return served(proc, () => stderr, { kind: 'referrers', host, storage, dir });
}

export function startRegistryOfKind(kind: RegistryKind): Promise<TestRegistry> {
  return kind === 'referrers' ? startReferrersRegistry() : startRegistry();
}

export interface RegistryKindCase {
  readonly kind: RegistryKind;
  /** For test titles: what the registry is. */
  readonly title: string;
  /** Whether it can run on this host. */
  readonly available: boolean;
  /** Why not, naming where the skipped check runs. */
  readonly why: string;
}

/**
 * Both registry kinds, for `describe.each`. Under CI=true a missing registry is
 * never a skip: `available` is reported true so the suite starts it and fails.
 */
export function registryKinds(): RegistryKindCase[] {
  const ci = underCi();
  const dist = registryAvailable();
  const ref = referrersRegistryBinary();
  return [
    {
      kind: 'distribution',
      title: 'distribution 2.8 (no referrers API: sha256-<hex> fallback tag)',
      available: dist || ci,
      why: dist ? '' : `${REGISTRY_BIN} is missing (scripts/host-setup.sh installs it); this check runs in ${CHECK_RUNS_IN}`,
    },
    {
      kind: 'referrers',
      title: 'go-containerregistry with the OCI 1.1 referrers API',
      available: !!ref.path || ci,
      why: ref.path ? '' : `the referrers registry is unavailable (${ref.why}); this check runs in ${CHECK_RUNS_IN}`,
    },
  ];
}

/** Waits for `/v2/` on `host`, then hands back the registry; kills the process if it never answers. */
async function served(proc: ChildProcess, stderr: () => string, o: { kind: TestRegistry['kind']; host: string; storage: string; dir: string }): Promise<TestRegistry> {
  try {
    await waitFor(`${o.kind} registry on ${o.host}`, async () => (await fetch(`http://${o.host}/v2/`)).ok, 15_000);
  } catch (e) {
    proc.kill('SIGKILL');
    throw new Error(`${(e as Error).message}\n${stderr()}`);
  }
  return {
    kind: o.kind,
    referrersApi: o.kind === 'referrers',
    host: o.host,
    url: `http://${o.host}`,
    storage: o.storage,
    async stop() {
      if (proc.exitCode === null) {
        const exited = new Promise((r) => proc.once('exit', r));
        proc.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (proc.exitCode === null) proc.kill('SIGKILL');
      }
      rmSync(o.dir, { recursive: true, force: true });
    },
  };
}

