/**
 * `smoke-airgap`: the bundle installs with no network (seed §8).
 *
 *   1. a network namespace of its own, with nothing but loopback: no interface, no route.
 *      Proven, not assumed: the routing table is empty, and connections to an outside address
 *      and to this host's own address fail ("Network is unreachable");
 *   2. a registry inside it (distribution 2.8, on the namespace's 127.0.0.1:5000): the only
 *      thing there is to reach;
 *   3. inside it, `bundle-load` of the bundle into that registry: verified first, pushed byte
 *      for byte, every image re-verified from the registry;
 *   4. inside it, `smoke-compose --bundle`: on a fresh Docker daemon (in the namespace too),
 *      `quickstart.sh --bundle FILE`, as an operator runs it: the bundle checked, extracted and
 *      verified, the bundle's own registry image `docker load`ed and started, the bundle loaded
 *      into it (load.sh), and the quickstart run from it, by digest, until every service is
 *      healthy and seeded; a re-run changes nothing.
 *   5. with a cluster (--kubeconfig; here scripts/cluster.sh): the cluster's containerd pulls from
 *      this host's network, not the namespace's, so the chart gets a registry of its own, empty
 *      until `bundle-load` fills it from the bundle (on this host, 127.0.0.1:<free port>, made
 *      known to the cluster by `cluster.sh registry add`); then `helm install` of the bundle's
 *      chart with values-airgap.yaml and the relocated values (global.imageRegistry), bundled
 *      mode (StatefulSets from the bundle's support images) in a Pod Security "restricted"
 *      namespace: every pod Ready, every container's image that registry's, by the bundle's digest.
 * Needs root (ip netns, a daemon). Prints each phase's time. Stops and removes all it started.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StellaError } from '../errors.ts';
import { BundlePath, validateImagesLock } from '../bundle/format.ts';
import { freePort } from '../net.ts';
import { Kube } from './helm.ts';

export interface SmokeAirgapOptions {
  /** The checkout (its ci/src/cli.ts runs inside the namespace; its deploy/compose is the quickstart). */
  readonly source: string;
  readonly bundle: string;
  /** The key to trust (PEM file); default the bundle's own. */
  readonly publicKey?: string;
  readonly workDir?: string;
  readonly timeoutSeconds?: number;
  /** Also bring the quickstart up from the loaded registry (default true). */
  readonly compose?: boolean;
  /** A cluster to install the bundle's chart on (its kubeconfig); none: the Helm phase is skipped. */
  readonly kubeconfig?: string;
  /** The folder with kubectl (default: PATH). */
  readonly kubectlDir?: string;
  /** scripts/cluster.sh of the checkout, to let the cluster pull from the Helm phase's registry (default: the checkout's). */
  readonly clusterScript?: string;
  readonly progress?: (line: string) => void;
}

export interface SmokeAirgapReport {
  readonly namespace: string;
  readonly isolation: { readonly routes: string; readonly refused: readonly string[] };
  readonly seconds: { readonly load: number; readonly compose?: number; readonly startToHealthy?: number; readonly helmLoad?: number; readonly helmInstall?: number };
  readonly images: number;
  readonly compose?: { readonly failures: readonly string[] };
  readonly helm?: HelmFromBundle;
  readonly failures: readonly string[];
}

/** What the Helm phase did: the registry it loaded, and what runs from it. */
export interface HelmFromBundle {
  readonly registry: string;
  /** Repositories in that registry after the load (it was empty before). */
  readonly repositories: readonly string[];
  readonly namespace: string;
  readonly chart: string;
  /** pod → Ready or why not. */
  readonly pods: Readonly<Record<string, string>>;
  /** Every container image of every pod (init containers too): `repository@digest`. */
  readonly images: readonly string[];
  readonly failures: readonly string[];
}

const REGISTRY_BIN = ['/usr/bin/docker-registry', '/usr/local/bin/docker-registry'].find((p) => existsSync(p)) ?? 'docker-registry';

function sh(args: string[], what: string): string {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8', timeout: 60_000 });
  if (r.status !== 0) throw new StellaError('BUILD_FAILED', `smoke-airgap: ${what}: ${args.join(' ')} exited ${r.status}: ${(r.stderr || r.stdout).trim().slice(-500)}`);
  return r.stdout;
}

/** The host's own address (the source of its default route), or undefined when it has none. */
function hostAddress(): string | undefined {
  const r = spawnSync('ip', ['-4', '-o', 'addr', 'show', 'scope', 'global'], { encoding: 'utf8' });
  return /inet (\d+\.\d+\.\d+\.\d+)\//.exec(r.stdout ?? '')?.[1];
}

/** Runs `node ci/src/cli.ts <args>` inside the namespace (or, with `ns` undefined, on this host), streaming its progress. */
function cliInNamespace(ns: string | undefined, o: SmokeAirgapOptions, args: string[], timeoutMs: number): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // nsenter, not `ip netns exec`: that also remounts /sys for the namespace, which hides the
    // cgroup mounts a Docker daemon needs ("Devices cgroup isn't mounted").
    const cli = [process.execPath, join(o.source, 'ci/src/cli.ts'), ...args];
    const argv = ns ? ['nsenter', `--net=/run/netns/${ns}`, '--', ...cli] : cli;
    const child = spawn(argv[0]!, argv.slice(1), { cwd: o.source, stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
    let stdout = '';
    let stderr = '';
    let partial = '';
    child.stdout!.on('data', (d) => (stdout += String(d)));
    child.stderr!.on('data', (d) => {
      stderr += String(d);
      partial += String(d);
      const lines = partial.split('\n');
      partial = lines.pop()!;
      for (const l of lines) o.progress?.(`  ${l}`);
    });
    const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
    child.on('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}

export async function smokeAirgap(o: SmokeAirgapOptions): Promise<SmokeAirgapReport> {
  const progress = o.progress ?? (() => {});
  if (process.getuid?.() !== 0) throw new StellaError('INVALID_ARGUMENT', 'smoke-airgap: needs root (it creates a network namespace and starts a Docker daemon in it)');
  if (!existsSync(o.bundle)) throw new StellaError('NOT_FOUND', `smoke-airgap: --bundle ${o.bundle}: no such file`);
  const work = o.workDir ?? mkdtempSync(join(tmpdir(), 'stella-airgap-'));
  mkdirSync(work, { recursive: true });
  const ns = `stella-ag-${process.pid}`;
  const failures: string[] = [];
  let registry: ChildProcess | undefined;
  sh(['ip', 'netns', 'add', ns], 'create the network namespace');
  const cleanup = (): void => {
    registry?.kill('SIGTERM');
    // Whatever still runs in the namespace (the daemon of an interrupted smoke) goes with it.
    const pids = spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout?.trim().split('\n').filter(Boolean) ?? [];
    for (const p of pids) spawnSync('kill', ['-9', p]);
    spawnSync('ip', ['netns', 'del', ns]);
  };
  // An interrupted run still removes its namespace and what runs in it.
  const onSignal = (sig: NodeJS.Signals): void => {
    cleanup();
    process.kill(process.pid, sig);
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    sh(['ip', 'netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up'], 'loopback up');
    // 1. Nothing but loopback, proven by the routing table and by connections that fail.
    const routes = sh(['ip', 'netns', 'exec', ns, 'ip', '-4', 'route', 'show'], 'routes').trim();
    if (routes !== '') failures.push(`the namespace has routes: ${routes}`);
    const refused: string[] = [];
    for (const target of ['1.1.1.1:443', ...(hostAddress() ? [`${hostAddress()}:22`] : []), '10.0.0.1:5000']) {
      const [h, p] = target.split(':');
      const r = spawnSync('ip', ['netns', 'exec', ns, 'bash', '-c', `exec 3<>/dev/tcp/${h}/${p}`], { encoding: 'utf8', timeout: 10_000 });
      if (r.status === 0) failures.push(`a connection to ${target} from the namespace succeeded: it is not isolated`);
      else refused.push(`${target}: ${(r.stderr.trim().split('\n').pop() ?? '').replace(/^.*: /, '') || 'refused'}`);
    }
    progress(`namespace ${ns}: no route (${routes === '' ? 'empty routing table' : routes}); refused: ${refused.join('; ')}`);

    // 2. The registry, inside.
    const config = join(work, 'registry.yml');
    writeFileSync(config, registryConfig(join(work, 'registry'), '127.0.0.1:5000'));
    // Its log goes to a file: an undrained pipe would fill and stall the registry.
    registry = spawn('ip', ['netns', 'exec', ns, REGISTRY_BIN, 'serve', config], { stdio: ['ignore', openSync(join(work, 'registry.log'), 'a'), openSync(join(work, 'registry.log'), 'a')] });
    for (let i = 0; ; i++) {
      const r = spawnSync('ip', ['netns', 'exec', ns, 'bash', '-c', 'exec 3<>/dev/tcp/127.0.0.1/5000'], { timeout: 5000 });
      if (r.status === 0) break;
      if (i > 50) throw new StellaError('BUILD_FAILED', 'smoke-airgap: the registry in the namespace did not start');
      await new Promise((r2) => setTimeout(r2, 200));
    }

    // 3. bundle-load inside the namespace.
    const relocated = join(work, 'relocated');
    const t0 = performance.now();
    const load = await cliInNamespace(ns, o, ['bundle-load', '--bundle', o.bundle, '--to', '127.0.0.1:5000', '--out', relocated, ...(o.publicKey ? ['--public-key', o.publicKey] : [])], 1_800_000);
    const loadSeconds = +((performance.now() - t0) / 1000).toFixed(1);
    if (load.status !== 0) throw new StellaError('VERIFY_FAILED', `smoke-airgap: bundle-load inside the namespace failed (exit ${load.status}): ${load.stderr.trim().split('\n').slice(-5).join(' | ')}`);
    progress(`bundle verified, loaded and re-verified inside the namespace in ${loadSeconds} s`);
    const lock = validateImagesLock(JSON.parse(readFileSync(join(relocated, BundlePath.imagesLock), 'utf8')));

    // 4. The quickstart from that registry, inside the namespace.
    let compose: SmokeAirgapReport['compose'];
    let composeSeconds: number | undefined;
    let startToHealthy: number | undefined;
    if (o.compose ?? true) {
      const t1 = performance.now();
      const c = await cliInNamespace(ns, o, ['smoke-compose', '--bundle', o.bundle, ...(o.publicKey ? ['--public-key', o.publicKey] : []), '--work-dir', join(work, 'compose'), '--timeout', String(o.timeoutSeconds ?? 300)], 2_400_000);
      composeSeconds = +((performance.now() - t1) / 1000).toFixed(1);
      let report: { failures?: string[]; startToHealthySeconds?: number } = {};
      try {
        report = JSON.parse(c.stdout) as typeof report;
      } catch {
        report = { failures: [`smoke-compose printed no report (exit ${c.status}): ${c.stderr.trim().split('\n').slice(-3).join(' | ')}`] };
      }
      startToHealthy = report.startToHealthySeconds;
      compose = { failures: report.failures ?? [] };
      for (const f of compose.failures) failures.push(`quickstart: ${f}`);
      if (c.status !== 0 && compose.failures.length === 0) failures.push(`smoke-compose exited ${c.status}`);
      progress(`quickstart.sh --bundle (its own registry, loaded with load.sh): ${compose.failures.length ? `${compose.failures.length} failure(s)` : `every service healthy`} (${composeSeconds} s${startToHealthy !== undefined ? `, start → healthy ${startToHealthy} s` : ''})`);
    }
    // 5. The chart, from a registry the bundle alone filled.
    let helm: HelmFromBundle | undefined;
    let helmSeconds: { helmLoad: number; helmInstall: number } | undefined;
    if (o.kubeconfig) {
      const r = await helmFromBundle(o, work, progress);
      helm = r.helm;
      helmSeconds = r.seconds;
      for (const f of helm.failures) failures.push(`helm: ${f}`);
    } else progress('helm: no --kubeconfig: the chart phase is skipped');
    return {
      namespace: ns,
      isolation: { routes, refused },
      seconds: { load: loadSeconds, ...(composeSeconds !== undefined ? { compose: composeSeconds } : {}), ...(startToHealthy !== undefined ? { startToHealthy } : {}), ...(helmSeconds ?? {}) },
      images: lock.images.length,
      ...(compose ? { compose } : {}),
      ...(helm ? { helm } : {}),
      failures,
    };
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    cleanup();
    if (!o.workDir) rmSync(work, { recursive: true, force: true });
  }
}

function registryConfig(root: string, addr: string): string {
  return `version: 0.1\nlog: { level: error, accesslog: { disabled: true } }\nstorage:\n  filesystem: { rootdirectory: ${root} }\n  delete: { enabled: true }\nhttp:\n  addr: ${addr}\n`;
}

async function waitForPort(host: string, port: number, what: string): Promise<void> {
  for (let i = 0; ; i++) {
    const ok = await new Promise<boolean>((res) => {
      const s = connect(port, host, () => {
        s.destroy();
        res(true);
      });
      s.on('error', () => res(false));
    });
    if (ok) return;
    if (i > 100) throw new StellaError('BUILD_FAILED', `smoke-airgap: ${what} did not start on ${host}:${port}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Phase 5: a registry on this host filled only by bundle-load, then helm install of the bundle's chart from it. */
async function helmFromBundle(o: SmokeAirgapOptions, work: string, progress: (l: string) => void): Promise<{ helm: HelmFromBundle; seconds: { helmLoad: number; helmInstall: number } }> {
  const failures: string[] = [];
  const kubeconfig = o.kubeconfig!;
  const kube = new Kube(kubeconfig, join(work, 'helm-home'), o.kubectlDir ? join(o.kubectlDir, 'kubectl') : undefined);
  const k = (args: string[], input?: string) => kube.k(args, input, 300_000);
  const cluster = o.clusterScript ?? join(o.source, 'scripts/cluster.sh');
  const port = await freePort();
  const registry = `127.0.0.1:${port}`;
  const storage = join(work, 'registry-helm');
  mkdirSync(storage, { recursive: true });
  writeFileSync(join(work, 'registry-helm.yml'), registryConfig(storage, registry));
  const log = openSync(join(work, 'registry-helm.log'), 'a');
  const child = spawn(REGISTRY_BIN, ['serve', join(work, 'registry-helm.yml')], { stdio: ['ignore', log, log] });
  const ns = `stella-airgap-${process.pid}`;
  const release = 'stella-airgap';
  let added = false;
  let created = false;
  try {
    await waitForPort('127.0.0.1', port, 'the Helm phase registry');
    const before = (await (await fetch(`http://${registry}/v2/_catalog`)).json()) as { repositories?: string[] };
    if ((before.repositories ?? []).length) failures.push(`the registry at ${registry} was not empty before the load: ${before.repositories!.join(', ')}`);
    const relocated = join(work, 'relocated-helm');
    const t0 = performance.now();
    const load = await cliInNamespace(undefined, o, ['bundle-load', '--bundle', o.bundle, '--to', registry, '--out', relocated, ...(o.publicKey ? ['--public-key', o.publicKey] : [])], 1_800_000);
    const helmLoad = +((performance.now() - t0) / 1000).toFixed(1);
    if (load.status !== 0) throw new StellaError('VERIFY_FAILED', `smoke-airgap: bundle-load into ${registry} failed (exit ${load.status}): ${load.stderr.trim().split('\n').slice(-5).join(' | ')}`);
    const repositories = (((await (await fetch(`http://${registry}/v2/_catalog?n=1000`)).json()) as { repositories?: string[] }).repositories ?? []).sort();
    progress(`helm: bundle loaded into ${registry} (${repositories.length} repositories) in ${helmLoad} s`);

    const reg = spawnSync('bash', [cluster, 'registry', 'add', registry], { encoding: 'utf8' });
    if (reg.status !== 0) throw new StellaError('BUILD_FAILED', `smoke-airgap: cluster.sh registry add ${registry}: ${reg.stderr.trim()}`);
    added = true;
    const nsDoc = JSON.stringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { 'stellaops.io/smoke': 'true', 'pod-security.kubernetes.io/enforce': 'restricted', 'pod-security.kubernetes.io/enforce-version': 'latest' } } });
    const made = k(['apply', '-f', '-'], nsDoc);
    if (made.status !== 0) throw new StellaError('BUILD_FAILED', `smoke-airgap: create namespace ${ns}: ${made.stderr.trim()}`);
    created = true;
    const helmDir = join(relocated, BundlePath.helm);
    const chart = readdirSync(helmDir).find((f) => /^stella-.*\.tgz$/.test(f));
    if (!chart) throw new StellaError('NOT_FOUND', `smoke-airgap: no chart (stella-*.tgz) in the bundle's ${BundlePath.helm}/`);
    const t1 = performance.now();
    const inst = kube.helm(['install', release, join(helmDir, chart), '-n', ns, '-f', join(helmDir, 'values-airgap.yaml'), '-f', join(helmDir, 'values-relocated.yaml'), '--set', 'bundled.enabled=true', '--wait', '--timeout', `${o.timeoutSeconds ?? 600}s`], ((o.timeoutSeconds ?? 600) + 120) * 1000);
    const helmInstall = +((performance.now() - t1) / 1000).toFixed(1);
    if (inst.status !== 0) {
      const events = k(['-n', ns, 'get', 'events', '--sort-by=.lastTimestamp']).stdout.split('\n').slice(-15).join('\n');
      failures.push(`helm install of the bundle's ${chart} failed (exit ${inst.status}): ${inst.stderr.trim().split('\n').slice(-5).join(' | ')}\n${events}`);
    }
    const podList = JSON.parse(k(['-n', ns, 'get', 'pods', '-o', 'json']).stdout || '{"items":[]}') as { items: any[] };
    const pods: Record<string, string> = {};
    const images = new Set<string>();
    for (const p of podList.items) {
      for (const c of [...(p.spec.initContainers ?? []), ...(p.spec.containers ?? [])]) images.add(String(c.image));
      if (p.status.phase === 'Succeeded') continue;
      pods[p.metadata.name] = (p.status.conditions ?? []).some((c: any) => c.type === 'Ready' && c.status === 'True') ? 'Ready' : `${p.status.phase} not Ready`;
    }
    if (Object.keys(pods).length === 0) failures.push('no pods run');
    for (const [p, st] of Object.entries(pods)) if (st !== 'Ready') failures.push(`pod ${p} is ${st}`);
    const lock = validateImagesLock(JSON.parse(readFileSync(join(relocated, BundlePath.imagesLock), 'utf8')));
    const digests = new Set(lock.images.map((i) => `${i.repository}@${i.digest}`));
    for (const im of images) if (!digests.has(im)) failures.push(`a container runs ${im}: not an image of the bundle at ${registry}`);
    const kinds = JSON.parse(k(['-n', ns, 'get', 'statefulsets', '-o', 'json']).stdout || '{"items":[]}') as { items: unknown[] };
    if (kinds.items.length < 4) failures.push(`bundled mode: ${kinds.items.length} StatefulSets, expected PostgreSQL, Redis, the object store and NATS`);
    progress(`helm: ${chart} installed from ${registry} in ${helmInstall} s: ${Object.values(pods).filter((x) => x === 'Ready').length}/${Object.keys(pods).length} pods Ready, ${images.size} images, all the bundle's`);
    return { helm: { registry, repositories, namespace: ns, chart, pods, images: [...images].sort(), failures }, seconds: { helmLoad, helmInstall } };
  } finally {
    if (created) {
      kube.helm(['uninstall', release, '-n', ns, '--wait', '--timeout', '120s'], 180_000);
      k(['delete', 'namespace', ns, '--wait=true', '--timeout=180s']);
    }
    if (added) spawnSync('bash', [cluster, 'registry', 'remove', registry]);
    child.kill('SIGTERM');
  }
}

export async function smokeAirgapFn(a: Readonly<Record<string, string | boolean | number | undefined>>, io: { readonly source: string; progress(line: string): void }): Promise<string> {
  const str = (k: string) => (typeof a[k] === 'string' && a[k] !== '' ? (a[k] as string) : undefined);
  const bundle = str('bundle');
  if (!bundle) throw new StellaError('INVALID_ARGUMENT', '--bundle is required (the bundle to install, e.g. dist/stella-bundle-v1.4.0.tar.zst)');
  const { resolve } = await import('node:path');
  const r = await smokeAirgap({
    source: io.source,
    bundle: resolve(io.source, bundle),
    ...(str('publicKey') ? { publicKey: resolve(io.source, str('publicKey')!) } : {}),
    ...(str('workDir') ? { workDir: resolve(io.source, str('workDir')!) } : {}),
    ...(typeof a.timeout === 'number' ? { timeoutSeconds: a.timeout } : {}),
    compose: a.noCompose !== true,
    ...(str('kubeconfig') ? { kubeconfig: resolve(io.source, str('kubeconfig')!) } : {}),
    ...(str('kubectlDir') ? { kubectlDir: resolve(io.source, str('kubectlDir')!) } : {}),
    progress: (l) => io.progress(l),
  });
  const out = JSON.stringify(r, null, 2);
  if (r.failures.length) throw new StellaError('VERIFY_FAILED', `smoke-airgap: ${r.failures.length} check(s) did not hold:\n  - ${r.failures.join('\n  - ')}\n${out}`);
  return out;
}
