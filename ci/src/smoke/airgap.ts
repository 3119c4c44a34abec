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
 *   4. inside it, `smoke-compose` with the relocated pins: a fresh Docker daemon (in the
 *      namespace too) pulls every image from that registry, by digest, and the quickstart runs
 *      until every service is healthy, seeded.
 * Needs root (ip netns, a daemon). Prints each phase's time. Stops and removes all it started.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StellaError } from '../errors.ts';
import { BundlePath, validateImagesLock } from '../bundle/format.ts';

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
  readonly progress?: (line: string) => void;
}

export interface SmokeAirgapReport {
  readonly namespace: string;
  readonly isolation: { readonly routes: string; readonly refused: readonly string[] };
  readonly seconds: { readonly load: number; readonly compose?: number; readonly startToHealthy?: number };
  readonly images: number;
  readonly compose?: { readonly failures: readonly string[] };
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

/** Runs `node ci/src/cli.ts <args>` inside the namespace, streaming its progress. */
function cliInNamespace(ns: string, o: SmokeAirgapOptions, args: string[], timeoutMs: number): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    // nsenter, not `ip netns exec`: that also remounts /sys for the namespace, which hides the
    // cgroup mounts a Docker daemon needs ("Devices cgroup isn't mounted").
    const child = spawn('nsenter', [`--net=/run/netns/${ns}`, '--', process.execPath, join(o.source, 'ci/src/cli.ts'), ...args], { cwd: o.source, stdio: ['ignore', 'pipe', 'pipe'], env: process.env });
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
    writeFileSync(config, `version: 0.1\nlog: { level: error, accesslog: { disabled: true } }\nstorage:\n  filesystem: { rootdirectory: ${join(work, 'registry')} }\n  delete: { enabled: true }\nhttp:\n  addr: 127.0.0.1:5000\n`);
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
      const build = { images: lock.images.filter((i) => i.kind === 'service').map((i) => ({ service: i.name, repository: i.repository, digest: i.digest, platforms: i.platforms })) };
      const support = { lockVersion: 1, images: Object.fromEntries(lock.images.filter((i) => i.kind === 'support').map((i) => [i.name, { repository: i.repository, digest: i.digest, platforms: i.platforms }])) };
      writeFileSync(join(work, 'build.json'), `${JSON.stringify(build, null, 2)}\n`);
      writeFileSync(join(work, 'support-images.lock.json'), `${JSON.stringify(support, null, 2)}\n`);
      const t1 = performance.now();
      const c = await cliInNamespace(ns, o, ['smoke-compose', '--images', join(work, 'build.json'), '--support-lock', join(work, 'support-images.lock.json'), '--work-dir', join(work, 'compose'), '--timeout', String(o.timeoutSeconds ?? 300)], 2_400_000);
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
      progress(`quickstart from the loaded registry: ${compose.failures.length ? `${compose.failures.length} failure(s)` : `every service healthy`} (${composeSeconds} s${startToHealthy !== undefined ? `, start → healthy ${startToHealthy} s` : ''})`);
    }
    return {
      namespace: ns,
      isolation: { routes, refused },
      seconds: { load: loadSeconds, ...(composeSeconds !== undefined ? { compose: composeSeconds } : {}), ...(startToHealthy !== undefined ? { startToHealthy } : {}) },
      images: lock.images.length,
      ...(compose ? { compose } : {}),
      failures,
    };
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    cleanup();
    if (!o.workDir) rmSync(work, { recursive: true, force: true });
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
    progress: (l) => io.progress(l),
  });
  const out = JSON.stringify(r, null, 2);
  if (r.failures.length) throw new StellaError('VERIFY_FAILED', `smoke-airgap: ${r.failures.length} check(s) did not hold:\n  - ${r.failures.join('\n  - ')}\n${out}`);
  return out;
}
