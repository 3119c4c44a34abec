/**
 * A real single-node Kubernetes on this machine (scripts/cluster.sh: the official components
 * built from their Go modules by scripts/build-kubernetes.sh, Debian's containerd/runc/CNI), then
 * on it: the node and its version, Pod Security "restricted" refusing a non-compliant pod for real
 * and running a compliant one, `kubectl apply --dry-run=server` of every rendered chart variant,
 * and smoke-helm (install by digest, canary, upgrade, rollback, bundled mode) with two releases
 * built here from the tree (the second with one more migration).
 *
 * beforeAll starts the cluster through the script (a cold build of the components takes
 * 15-25 min; cached after); afterAll stops it only when this file started it. Needs root, go,
 * gcc, containerd, runc, the CNI plugins, skopeo, helm and the local registry.
 */
import { execFile, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Resolver } from 'node:dns/promises';
import { parseAllDocuments } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { smokeHelm, type SmokeHelmReport } from '../../ci/src/smoke/helm.ts';
import { skipUnless, tool, type Requirement } from '../helpers/tools.ts';
import { ROOT, helm, packageFixture, type Helm } from '../chart/fixture.ts';

const run = promisify(execFile);
const REGISTRY = process.env.STELLA_REGISTRY ?? '127.0.0.1:5000';
const SCRIPT = join(ROOT, 'scripts/cluster.sh');
const CHART_DIR = join(ROOT, 'deploy/helm/stella');
const NODE = join(ROOT, 'node_modules/.bin/node');
const WANT_VERSION = /^\s*require k8s\.io\/kubernetes (v\S+)/m.exec(readFileSync(join(ROOT, 'tools/kubernetes/go.mod'), 'utf8'))?.[1] ?? /k8s\.io\/kubernetes (v\S+)/.exec(readFileSync(join(ROOT, 'tools/kubernetes/go.mod'), 'utf8'))![1];

const need = (name: string, ok: boolean, hint: string): Requirement => ({ name, ok, hint });
const registryUp = spawnSync('curl', ['-sf', '-o', '/dev/null', `http://${REGISTRY}/v2/`], { timeout: 5000 }).status === 0;
const SKIP = skipUnless(
  [
    need('root (containerd, the kubelet and the bridge)', process.getuid?.() === 0, 'run the tests as root, as .ci/run does'),
    ...['go', 'gcc', 'containerd', 'runc', 'iptables', 'skopeo', 'helm', 'openssl', 'curl'].map((t) => tool(t)),
    need('the CNI plugins (/usr/lib/cni/bridge, firewall)', existsSync('/usr/lib/cni/bridge') && existsSync('/usr/lib/cni/firewall'), 'scripts/host-setup.sh installs containernetworking-plugins'),
    need(`the local registry ${REGISTRY}`, registryUp, 'scripts/host-setup.sh starts it'),
  ],
  'a real single-node Kubernetes (scripts/cluster.sh)',
);

let kubeconfig = '';
let started = false;
let bin = '';
let upSeconds = 0;

const kubectl = (args: readonly string[], input?: string) => {
  const r = spawnSync(join(bin, 'kubectl'), ['--kubeconfig', kubeconfig, ...args], { input, encoding: 'utf8', timeout: 300_000, maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
};

beforeAll(async () => {
  if (SKIP) return;
  const t = Date.now();
  const r = await run('bash', [SCRIPT, 'up'], { timeout: 45 * 60_000, maxBuffer: 16 << 20 }).catch((e: { stdout?: string; stderr?: string; message: string }) => {
    throw new Error(`bash scripts/cluster.sh up failed: ${e.message}\n${e.stderr ?? ''}`);
  });
  upSeconds = Math.round((Date.now() - t) / 1000);
  const [cfg, how] = r.stdout.trim().split('\n');
  kubeconfig = cfg!;
  started = how === 'started';
  bin = readFileSync(join(kubeconfig, '../../bin'), 'utf8').trim();
  console.log(`cluster: ${how} in ${upSeconds} s (${kubeconfig})\n${r.stderr.trim()}`);
}, 46 * 60_000);

afterAll(async () => {
  if (SKIP || !started) return;
  const t = Date.now();
  await run('bash', [SCRIPT, 'down'], { timeout: 10 * 60_000 });
  console.log(`cluster: stopped in ${Math.round((Date.now() - t) / 1000)} s`);
}, 11 * 60_000);

describe.skipIf(SKIP)('a real Kubernetes built from its Go modules', () => {
  it('has a Ready node reporting the pinned version', () => {
    const v = JSON.parse(kubectl(['version', '-o', 'json']).stdout) as { serverVersion: { gitVersion: string } };
    expect(v.serverVersion.gitVersion).toBe(WANT_VERSION);
    const nodes = JSON.parse(kubectl(['get', 'nodes', '-o', 'json']).stdout) as { items: { status: { conditions: { type: string; status: string }[]; nodeInfo: { kubeletVersion: string; containerRuntimeVersion: string } } }[] };
    expect(nodes.items).toHaveLength(1);
    expect(nodes.items[0]!.status.conditions.find((c) => c.type === 'Ready')?.status).toBe('True');
    expect(nodes.items[0]!.status.nodeInfo.kubeletVersion).toBe(WANT_VERSION);
    expect(nodes.items[0]!.status.nodeInfo.containerRuntimeVersion).toMatch(/^containerd:\/\//);
  });

  it('has CoreDNS available and a default no-provisioner StorageClass with hostPath volumes', () => {
    expect(kubectl(['-n', 'kube-system', 'get', 'deployment', 'coredns', '-o', 'jsonpath={.status.availableReplicas}']).stdout).toBe('1');
    const sc = JSON.parse(kubectl(['get', 'storageclass', '-o', 'json']).stdout) as { items: { provisioner: string; metadata: { annotations?: Record<string, string> } }[] };
    expect(sc.items.some((s) => s.provisioner === 'kubernetes.io/no-provisioner' && s.metadata.annotations?.['storageclass.kubernetes.io/is-default-class'] === 'true')).toBe(true);
    const pvs = JSON.parse(kubectl(['get', 'pv', '-o', 'json']).stdout) as { items: { spec: { hostPath?: { path: string } } }[] };
    expect(pvs.items.filter((p) => p.spec.hostPath).length).toBeGreaterThanOrEqual(8);
  });

  it('enforces Pod Security "restricted" for real, runs a compliant pod, and resolves a Service name', async () => {
    const ns = 'stella-psa-check';
    kubectl(['delete', 'namespace', ns, '--ignore-not-found', '--wait=true']);
    expect(kubectl(['create', 'namespace', ns]).status).toBe(0);
    expect(kubectl(['label', 'namespace', ns, 'pod-security.kubernetes.io/enforce=restricted']).status).toBe(0);
    const pause = `${REGISTRY}/k8s/pause:stella`;
    const pod = (name: string, sc: object) => JSON.stringify({ apiVersion: 'v1', kind: 'Pod', metadata: { name, namespace: ns }, spec: { containers: [{ name: 'c', image: pause, securityContext: sc }] } });
    const bad = kubectl(['apply', '-f', '-'], pod('privileged', { privileged: true }));
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/violates PodSecurity "restricted:latest"/);
    const good = kubectl(['apply', '-f', '-'], pod('compliant', { runAsNonRoot: true, runAsUser: 65532, allowPrivilegeEscalation: false, capabilities: { drop: ['ALL'] }, seccompProfile: { type: 'RuntimeDefault' } }));
    expect(good.stderr).toBe('');
    expect(good.status).toBe(0);
    const ready = kubectl(['-n', ns, 'wait', '--for=condition=Ready', 'pod/compliant', '--timeout=120s']);
    expect(ready.stderr).toBe('');
    expect(ready.status).toBe(0);
    const ip = kubectl(['-n', ns, 'get', 'pod', 'compliant', '-o', 'jsonpath={.status.podIP}']).stdout;
    expect(ip).toMatch(/^10\.213\.0\.\d+$/);
    // CoreDNS answers for the API server's Service (from the host, through kube-proxy's rules for the DNS Service IP).
    const resolver = new Resolver({ timeout: 3000, tries: 3 });
    resolver.setServers(['10.214.0.10']);
    expect(await resolver.resolve4('kubernetes.default.svc.cluster.local')).toEqual(['10.214.0.1']);
    kubectl(['delete', 'namespace', ns, '--wait=false']);
  }, 180_000);

  describe('kubectl apply --dry-run=server of every rendered variant', () => {
    let h: Helm;
    let dir: string;
    let chart: string;
    const VARIANTS: Record<string, string[]> = {
      default: [],
      prod: ['-f', join(CHART_DIR, 'values-prod.yaml')],
      airgap: ['-f', join(CHART_DIR, 'values-airgap.yaml')],
      bundled: ['--set', 'bundled.enabled=true'],
    };
    beforeAll(() => {
      dir = mkdtempSync(join(tmpdir(), 'stella-dry-run-'));
      h = helm();
      chart = packageFixture(dir).path;
      kubectl(['delete', 'namespace', 'stella-dry-run', '--ignore-not-found', '--wait=true']);
      kubectl(['create', 'namespace', 'stella-dry-run']);
      // enforce refuses non-compliant pods; warn makes the API server name any workload whose pods would be refused.
      kubectl(['label', 'namespace', 'stella-dry-run', 'pod-security.kubernetes.io/enforce=restricted', 'pod-security.kubernetes.io/warn=restricted']);
    });
    afterAll(() => {
      rmSync(dir, { recursive: true, force: true });
      kubectl(['delete', 'namespace', 'stella-dry-run', '--wait=false']);
    });
    for (const [variant, args] of Object.entries(VARIANTS)) {
      it(`${variant}: the API server accepts every object, with no Pod Security warning`, () => {
        const t = h.run(['template', 'stella', chart, '--namespace', 'stella-dry-run', '--kube-version', WANT_VERSION, ...args]);
        expect(t.stderr).toBe('');
        const r = kubectl(['apply', '--dry-run=server', '-n', 'stella-dry-run', '-f', '-'], t.stdout);
        expect(r.stderr).toBe('');
        expect(r.status).toBe(0);
        const created = r.stdout.trim().split('\n');
        expect(created.length).toBeGreaterThan(20);
        for (const l of created) expect(l).toMatch(/ (created|configured|unchanged) \(server dry run\)$/);
      });
    }
    it('refuses a pod of the chart made non-compliant (negative case: enforcement is real)', () => {
      const t = h.run(['template', 'stella', chart, '--namespace', 'stella-dry-run']);
      const deploy = parseAllDocuments(t.stdout).map((d) => d.toJS() as any).find((o) => o?.kind === 'Deployment');
      const spec = structuredClone(deploy.spec.template.spec);
      spec.containers[0].securityContext.allowPrivilegeEscalation = true;
      delete spec.serviceAccountName; // the dry run of a bare Pod needs no ServiceAccount of the chart
      const pod = { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'broken', namespace: 'stella-dry-run' }, spec };
      const r = kubectl(['apply', '--dry-run=server', '-f', '-'], JSON.stringify(pod));
      expect(r.status).not.toBe(0);
      expect(r.stderr).toMatch(/violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false/);
      // The same Deployment with that template is admitted with a warning (enforcement is on pods).
      deploy.spec.template.spec = spec;
      const w = kubectl(['apply', '--dry-run=server', '-n', 'stella-dry-run', '-f', '-'], JSON.stringify(deploy));
      expect(w.status).toBe(0);
      expect(w.stderr).toMatch(/would violate PodSecurity "restricted:latest"/);
    });
  });
});

/** The tree with one more API migration (a second release's "new migration"), beside node_modules. */
function patchedTree(dir: string): string {
  const tree = join(dir, 'tree');
  mkdirSync(tree);
  for (const e of readdirSync(ROOT)) {
    if (['services', '.git', 'dist', 'test-results'].includes(e)) continue;
    symlinkSync(join(ROOT, e), join(tree, e));
  }
  cpSync(join(ROOT, 'services'), join(tree, 'services'), { recursive: true, filter: (s) => !s.includes('/node_modules') });
  symlinkSync(join(ROOT, 'services/node_modules'), join(tree, 'services/node_modules'));
  const schema = join(tree, 'services/src/api/schema.ts');
  const text = readFileSync(schema, 'utf8');
  const marker = 'CREATE TABLE stella_seed_runs (name text PRIMARY KEY, sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());`,\n  },\n';
  if (!text.includes(marker)) throw new Error(`services/src/api/schema.ts changed: the smoke's extra migration goes after migration 3 (${marker.slice(0, 40)}…)`);
  writeFileSync(schema, text.replace(marker, `${marker}  {\n    version: 4,\n    name: 'smoke upgrade marker',\n    sql: \`CREATE TABLE stella_smoke_upgrade (id integer PRIMARY KEY, note text NOT NULL);\`,\n  },\n`));
  return tree;
}

describe.skipIf(SKIP || process.env.STELLA_SMOKE_HELM === '0')('smoke-helm on that cluster', () => {
  let report: SmokeHelmReport;
  let work: string;
  beforeAll(async () => {
    work = mkdtempSync(join(tmpdir(), 'stella-smoke-helm-test-'));
    const platform = `linux/${process.arch === 'arm64' ? 'arm64' : 'amd64'}`;
    const cli = (cwd: string, args: string[]) => run(NODE, [join(ROOT, 'ci/src/cli.ts'), ...args], { cwd, maxBuffer: 64 << 20, timeout: 20 * 60_000, env: { ...process.env, STELLA_BASE_LOCK_POLICY: 'refresh-if-unavailable' } });
    const t = Date.now();
    await cli(ROOT, ['build-base', '--registry', REGISTRY, '--namespace', 'stellaops-smoke', '--oci-layout', join(work, 'base')]);
    const rev = ['--git-commit', '0000000000000000000000000000000000000001', '--source-date-epoch', '1700000000'];
    await cli(ROOT, ['build', '--version', 'v1.4.0-rc.1', '--base', `oci:${join(work, 'base')}`, '--registry', REGISTRY, '--namespace', 'stellaops-smoke', '--platforms', platform, ...rev, '--output', join(work, 'build-1.json')]);
    const tree = patchedTree(work);
    await cli(tree, ['build', '--version', 'v1.4.0-rc.2', '--base', `oci:${join(work, 'base')}`, '--registry', REGISTRY, '--namespace', 'stellaops-smoke', '--platforms', platform, ...rev, '--output', join(work, 'build-2.json')]);
    console.log(`smoke-helm: two releases built and pushed in ${((Date.now() - t) / 1000).toFixed(1)} s`);
    process.env.STELLA_KUBECTL = join(bin, 'kubectl');
    report = await smokeHelm({ source: ROOT, kubeconfig, images: join(work, 'build-1.json'), upgradeImages: join(work, 'build-2.json'), timeoutSeconds: 600, progress: (l) => console.log(`smoke-helm: ${l}`) });
    console.log(`smoke-helm phases (s): ${JSON.stringify(report.phases)}`);
    if (report.failures.length) console.log(`smoke-helm failures:\n  - ${report.failures.join('\n  - ')}`);
  }, 60 * 60_000);
  afterAll(() => {
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('installs both releases by digest from the registry, on the pinned server', () => {
    expect(report.serverVersion).toBe(WANT_VERSION);
    expect(report.charts.first.digest).not.toBe(report.charts.second.digest);
    expect(report.charts.first.signature?.verified).toBe(true);
  });
  for (const mode of ['external', 'bundled'] as const) {
    it(`${mode}: every pod Ready, canary written, upgrade and rollback keep it, each timed`, () => {
      const m = report.modes[mode]!;
      expect(m, `${mode} ran`).toBeDefined();
      expect(Object.values(m.pods).every((s) => s === 'Ready')).toBe(true);
      expect(m.canary.component).toMatch(/^pkg:generic\/stella-smoke-canary@/);
      expect(m.images.second).not.toEqual(m.images.first);
      expect(m.images.rolledBack).toEqual(m.images.first);
      expect(report.failures.filter((f) => f.startsWith(mode) || !/^(external|bundled)/.test(f))).toEqual([]);
      const p = mode === 'external' ? 'ext' : 'bundled';
      for (const ph of ['install', 'seed', 'canary', 'upgrade', 'rollback']) expect(report.phases[`${p}: ${ph}`], ph).toBeGreaterThan(0);
    });
  }
  it('upgrade: the migrator hook completed before every new pod, workers after the API, the new migration applied', () => {
    const o = report.modes.external!.order!;
    expect(o.migratorCompleted).toBeDefined();
    expect(report.modes.external!.canary.apiSchemaAfterUpgrade).toBe(4);
    expect(report.failures.filter((f) => f.startsWith('upgrade'))).toEqual([]);
  });
  it('has no failures at all', () => {
    expect(report.failures).toEqual([]);
  });
  it('bundled: the chart\'s own bucket Job created the bucket (one Job per revision, completed after install, upgrade and rollback)', () => {
    const jobs = report.modes.bundled!.bucketJobs!;
    expect(Object.keys(jobs).sort()).toEqual(['install', 'rollback', 'upgrade']);
    expect(jobs.install).toMatch(/^smoke-stella-object-store-init-1\b/);
    expect(jobs.upgrade).toMatch(/^smoke-stella-object-store-init-2\b/);
    // A rollback re-applies revision 1's manifest, its Job included (run once more: idempotent).
    expect(jobs.rollback).toMatch(/^smoke-stella-object-store-init-1\b/);
  });
  it('needed no workaround: the smoke does nothing the chart should do', () => {
    expect(report.workarounds).toEqual([]);
  });
});
