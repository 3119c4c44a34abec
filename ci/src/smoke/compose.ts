/**
 * smoke-compose: the Compose quickstart on a Docker host that has never seen it.
 *
 *   1. a fresh Docker daemon (./daemon.ts), unless --docker-host names one (Dagger: a
 *      Docker-in-Docker service); the images come only from registries (the build document's,
 *      the support image lock's);
 *   2. a copy of deploy/compose/ as the install; `quickstart.sh --check` changes nothing;
 *   3. `quickstart.sh --images build.json`: the time from its start to all-healthy and to
 *      "the console answers"; with --bundle, `quickstart.sh --bundle FILE` instead: the bundle
 *      verified, loaded (load.sh) into the registry the script starts from the bundle's own
 *      support-registry image, and its quickstart run from that registry (the install is then
 *      the bundle's compose/, copied to <dir>/install);
 *   4. what listens: only 127.0.0.1 (with --expose-public, at the end: every address);
 *   5. the AOC rule in the running stack: conseiller and excitator /capabilities say merge: false;
 *   6. the seed through the API (admin token, SBOMs, advisories, VEX, policy, task pack);
 *   7. a re-run changes nothing (same containers, same secrets, same .env);
 *   8. with --round-trip: more data (a scan import's findings, an export, a queued task run),
 *      backup.sh → reset.sh --yes → backup.sh --restore, then every table row for row, every
 *      object byte for byte, Redis's keys and NATS JetStream's streams compared;
 *   9. with --expose-public: EXPOSE_PUBLIC=1 publishes on every address;
 *  10. with --tls: `quickstart.sh --tls` (EXPOSE_PUBLIC=1): nginx healthy, HTTPS to the console
 *      and the API verified against the CA quickstart.sh generated (and refused without it), the
 *      key 0600, the TLS ports on every address, the plain-HTTP console and API on 127.0.0.1 only.
 * The collector: a span from the API (stella-api) and a scraped /metrics line in its file exporter.
 * Returns a report; `failures` lists every check that did not hold (the function fails on any).
 */
import { spawn, spawnSync } from 'node:child_process';
import { request as httpsRequest } from 'node:https';
import { createHash, randomBytes } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { runForStatus, type Exit } from '../base/exec.ts';
import { StellaError } from '../errors.ts';
import { catalog } from '../catalog/index.ts';
import { freePort } from '../net.ts';
import { COMPOSE_DIR, HTTP_PUBLISH_SERVICES, PROJECT, TLS_PORTS, publishedPorts, supportImageVariable } from '../compose/render.ts';
import { imageRef, parseSupportLock } from '../compose/images.ts';
import { childPids, startFreshDaemon, type FreshDaemon } from './daemon.ts';
import { bucketObjects } from './s3.ts';

export interface SmokeComposeOptions {
  /** The repository checkout (deploy/compose/ is copied from it). */
  readonly source: string;
  /** The release's build document (build.json): the StellaOps images, by digest. Or `bundle`. */
  readonly images?: string;
  /** An air-gap bundle instead of `images`: `quickstart.sh --bundle FILE` (verify, load into the registry it starts, run). */
  readonly bundle?: string;
  /** With `bundle`: the key its checksums must be signed with (else its own key: integrity only). */
  readonly publicKey?: string;
  /** A support image lock to use instead of deploy/support-images.lock.json (a candidate lock): its pins go to the install's image variables. */
  readonly supportLock?: string;
  /** Use this Docker daemon (e.g. tcp://docker:2375, a DinD service) instead of starting a fresh one. */
  readonly dockerHost?: string;
  /** Where the install (and the fresh daemon) live; default a new temporary directory, removed after. */
  readonly workDir?: string;
  readonly timeoutSeconds?: number;
  readonly roundTrip?: boolean;
  readonly exposePublic?: boolean;
  /** Last: the tls profile (quickstart.sh --tls with EXPOSE_PUBLIC=1) and HTTPS checked against the generated CA. */
  readonly tls?: boolean;
  /** Leave the stack and the daemon running (for debugging); prints how to reach them. */
  readonly keep?: boolean;
  /** Called with the running, seeded stack after the re-run check, before the round trip and the teardown (e.g. the console's browser test). */
  readonly withStack?: (stack: RunningStack) => Promise<void>;
  readonly progress?: (line: string) => void;
}

/** The running quickstart, as `withStack` gets it. */
export interface RunningStack {
  readonly install: string;
  readonly consoleUrl: string;
  readonly apiUrl: string;
  readonly adminPassword: string;
  /** DOCKER_HOST, COMPOSE_FILE and the port variables the stack runs with. */
  readonly env: NodeJS.ProcessEnv;
  /** Runs one of the install's scripts (quickstart.sh, …) with the stack's environment plus `extra`. */
  sh(script: string, args: string[], extra?: NodeJS.ProcessEnv): Promise<Exit>;
  /** `docker compose -p stellaops …` against the stack's daemon. */
  compose(args: string[]): Promise<Exit>;
}

export interface TableSnapshot {
  readonly rows: number;
  readonly md5: string;
}

export interface DataSnapshot {
  readonly tables: Record<string, TableSnapshot>;
  readonly objects: Record<string, string>;
  readonly redis: Record<string, string>;
  readonly streams: Record<string, { messages: number; bytes: number; lastSeq: number }>;
}

export interface SmokeReport {
  readonly dockerHost: string;
  readonly freshDaemon: boolean;
  readonly install: string;
  /** quickstart.sh start → it reports every service healthy. */
  readonly startToHealthySeconds?: number;
  /** quickstart.sh start → GET / on the console answers 200. */
  readonly startToConsoleSeconds?: number;
  readonly services: Record<string, string>;
  readonly listeners: string[];
  readonly capabilities: Record<string, unknown>;
  readonly seed: Record<string, number>;
  readonly rerun?: { readonly recreated: string[]; readonly secretsKept: boolean; readonly envKept: boolean };
  readonly roundTrip?: { readonly before: DataSnapshot; readonly after: DataSnapshot; readonly created: Record<string, unknown>; readonly backupBytes: number; readonly backupSeconds: number; readonly restoreSeconds: number };
  readonly exposedListeners?: string[];
  /** What the collector wrote: lines of metrics.jsonl naming a StellaOps scrape target, and spans from the services. */
  telemetry?: { readonly scrapedMetrics: number; readonly spans: number; readonly spanServices: string[]; readonly apiSpans: number };
  /** The tls profile: what the HTTPS requests answered, the listeners, the key's mode. */
  tls?: { readonly console?: number; readonly api?: number; readonly untrustedRefused: boolean; readonly keyMode: string; readonly listeners: string[]; readonly proxy: string };
  readonly failures: string[];
}


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

export async function smokeCompose(o: SmokeComposeOptions): Promise<SmokeReport> {
  const progress = o.progress ?? (() => undefined);
  const failures: string[] = [];
  const check = (ok: boolean, what: string) => {
    if (!ok) failures.push(what);
    return ok;
  };
  const timeout = o.timeoutSeconds ?? 300;
  const work = o.workDir ?? mkdtempSync(join(tmpdir(), 'stella-smoke-'));
  mkdirSync(work, { recursive: true });
  if (!o.images === !o.bundle) throw new StellaError('INVALID_ARGUMENT', 'smoke-compose: give --images (a build document) or --bundle (an air-gap bundle), not both');
  // With a bundle, the install is the bundle's own compose/ (copied to <dir>/install by
  // quickstart.sh --bundle); deploy/compose is only the launcher the operator runs first.
  const bundleDir = join(work, 'from-bundle');
  const launcher = join(work, o.bundle ? 'launcher' : 'install');
  const install = o.bundle ? join(bundleDir, 'install') : launcher;
  const qsArgs = o.bundle ? ['--bundle', resolve(o.bundle), '--dir', bundleDir, ...(o.publicKey ? ['--public-key', resolve(o.publicKey)] : [])] : ['--images', resolve(o.images!)];
  let daemon: FreshDaemon | undefined;
  const bridge = `stq${randomBytes(4).toString('hex')}`;
  if (!o.dockerHost) daemon = await startFreshDaemon({ root: join(work, 'daemon'), bridge, progress });
  const dockerHost = o.dockerHost ?? daemon!.host;

  // The install (or the launcher): deploy/compose/ without any local state.
  cpSync(join(o.source, COMPOSE_DIR), launcher, { recursive: true, filter: (src) => !/\/(\.env|\.secrets|backups)(\/|$)/.test(src.slice(join(o.source, COMPOSE_DIR).length)) });
  const files = ['docker-compose.yml'];
  if (daemon) {
    // Outside the install (a bundle's install is written by quickstart.sh): an absolute path.
    writeFileSync(join(work, 'compose.smoke.yml'), `# smoke-compose: the fresh daemon's network uses a bridge the host's FORWARD chain lets through.\nnetworks:\n  stella-net:\n    driver_opts:\n      com.docker.network.bridge.name: ${bridge}\n`);
    files.push(join(work, 'compose.smoke.yml'));
  }
  const ports: Record<string, number> = {};
  for (const p of [...publishedPorts(), ...TLS_PORTS]) ports[p.variable] = await freePort();
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin',
    HOME: process.env.HOME ?? '/root',
    DOCKER_HOST: dockerHost,
    COMPOSE_FILE: files.join(':'),
    STELLA_QUICKSTART_TIMEOUT: String(timeout),
    // The registry quickstart.sh --bundle starts: a free port (and names of its own).
    ...(o.bundle ? { STELLA_BUNDLE_REGISTRY_PORT: String(await freePort()) } : {}),
    ...Object.fromEntries(Object.entries(ports).map(([k, v]) => [k, String(v)])),
  };
  if (o.supportLock) {
    const lock = parseSupportLock(JSON.parse(readFileSync(o.supportLock, 'utf8')), o.supportLock);
    for (const [name, pin] of Object.entries(lock)) env[supportImageVariable(name)] = imageRef(pin!);
  }
  const sh = (script: string, args: string[], extra: NodeJS.ProcessEnv = {}, input?: string) => runForStatus('bash', [join(install, script), ...args], { cwd: install, env: { ...env, ...extra }, timeoutMs: (timeout + 300) * 1000, input });
  const launch = (args: string[]) => runForStatus('bash', [join(launcher, 'quickstart.sh'), ...args], { cwd: launcher, env, timeoutMs: (timeout + 600) * 1000 });
  const docker = (args: string[], input?: string) => runForStatus('docker', args, { cwd: launcher, env, timeoutMs: 120_000, input });
  const compose = (args: string[], input?: string) => docker(['compose', '-p', PROJECT, ...args], input);
  // A daemon reached over TCP (a DinD service) publishes in its own network namespace: the
  // ports bind to every address there (EXPOSE_PUBLIC=1) and are reached at its host name.
  const remote = dockerHost.startsWith('tcp://') ? new URL(dockerHost.replace(/^tcp:/, 'http:')).hostname : undefined;
  if (remote) {
    env.EXPOSE_PUBLIC = '1';
    env.STELLA_TLS_NAMES = remote;
  }
  const reach = remote ?? '127.0.0.1';
  const consoleUrl = `http://${reach}:${ports.STELLA_CONSOLE_PORT}/`;
  const apiUrl = `http://${reach}:${ports.STELLA_API_PORT}`;

  const report: { -readonly [K in keyof SmokeReport]: SmokeReport[K] } = { dockerHost, freshDaemon: !!daemon, install, services: {}, listeners: [], capabilities: {}, seed: {}, failures };
  try {
    // 2. pre-flight only: passes on the fresh host, changes nothing.
    const pre = await launch(['--check', ...qsArgs]);
    check(pre.status === 0, `quickstart.sh --check failed on the fresh host: ${pre.stderr.trim()}`);
    check(!existsSync(join(install, '.env')) && !existsSync(join(install, '.secrets')), 'quickstart.sh --check wrote .env or .secrets/');
    if (o.bundle) check(!existsSync(bundleDir), `quickstart.sh --check --bundle wrote ${bundleDir}`);
    const before = await docker(['ps', '-aq']);
    check(before.stdout.trim() === '', 'quickstart.sh --check created containers');

    // 3. the quickstart, timed; the console polled meanwhile.
    const t0 = Date.now();
    let consoleAt: number | undefined;
    let done = false;
    const poll = (async () => {
      while (!done && consoleAt === undefined) {
        try {
          const r = await fetch(consoleUrl, { signal: AbortSignal.timeout(2000) });
          if (r.status === 200) consoleAt = Date.now();
          await r.body?.cancel();
        } catch {
          // not yet
        }
        await sleep(250);
      }
    })();
    const qs = await launch(qsArgs);
    const healthyAt = Date.now();
    done = true;
    await poll;
    // The report prints the admin password: never into the smoke's own log.
    const adminPassword = existsSync(join(install, '.secrets', 'admin-password')) ? readFileSync(join(install, '.secrets', 'admin-password'), 'utf8').trim() : undefined;
    const tail = qs.stdout.trim().split('\n').slice(-8).join('\n');
    progress(adminPassword ? tail.replaceAll(adminPassword, '[REDACTED]') : tail);
    if (!check(qs.status === 0, `quickstart.sh failed (exit ${qs.status}): ${qs.stderr.trim().split('\n').slice(-20).join('\n')}`)) return report;
    report.startToHealthySeconds = (healthyAt - t0) / 1000;
    if (consoleAt === undefined) {
      const r = await fetch(consoleUrl).catch(() => undefined);
      if (r?.status === 200) consoleAt = Date.now();
    }
    if (check(consoleAt !== undefined, `the console at ${consoleUrl} does not answer 200`)) report.startToConsoleSeconds = (consoleAt! - t0) / 1000;
    progress(`quickstart: start → all healthy ${report.startToHealthySeconds.toFixed(1)} s, → console answers ${report.startToConsoleSeconds?.toFixed(1)} s`);
    check(qs.stdout.includes('password in .secrets/admin-password'), 'quickstart.sh did not print the admin credentials');
    const states = await docker(['ps', '-a', '--filter', `label=com.docker.compose.project=${PROJECT}`, '--format', '{{.Label "com.docker.compose.service"}} {{.Status}}']);
    for (const l of states.stdout.trim().split('\n').filter(Boolean)) report.services[l.split(' ')[0]!] = l.slice(l.indexOf(' ') + 1);
    for (const s of catalog.services) check(/healthy/.test(report.services[s.name] ?? '') && !/unhealthy/.test(report.services[s.name] ?? ''), `${s.name} is not healthy: ${report.services[s.name] ?? 'no container'}`);
    // Every support service has a real health check now (stella-probe in NATS, SeaweedFS and the collector).
    for (const name of ['postgres', 'redis', 'object-store', 'nats', 'otel-collector']) check(/\(healthy\)/.test(report.services[name] ?? ''), `${name} has no passing health check: ${report.services[name] ?? 'no container'}`);

    // 4. listeners.
    report.listeners = listeners(daemon);
    if (daemon) {
      check(report.listeners.length >= publishedPorts().length, `expected a listener per published port, got ${report.listeners.join(', ')}`);
      for (const l of report.listeners) check(l.startsWith('127.0.0.1:'), `listens on a non-loopback address without EXPOSE_PUBLIC=1: ${l}`);
    }

    // 5. the AOC rule.
    for (const name of ['conseiller', 'excitator']) {
      const port = catalog.services.find((s) => s.name === name)!.http.port;
      const r = await compose(['exec', '-T', name, '/nodejs/bin/node', '-e', `fetch('http://127.0.0.1:${port}/capabilities').then(r=>r.text()).then(t=>process.stdout.write(t))`]);
      try {
        report.capabilities[name] = JSON.parse(r.stdout);
      } catch {
        report.capabilities[name] = r.stdout || r.stderr;
      }
      check((report.capabilities[name] as { merge?: unknown })?.merge === false, `${name} /capabilities does not say merge: false: ${JSON.stringify(report.capabilities[name])}`);
    }

    // 6. the seed, through the API.
    const password = readFileSync(join(install, '.secrets', 'admin-password'), 'utf8').trim();
    const token = await apiToken(apiUrl, password).catch((e: Error) => {
      failures.push(`POST /api/v1/tokens as admin: ${e.message}`);
      return undefined;
    });
    if (token) {
      for (const [path, key] of [['sboms', 'sboms'], ['advisories', 'advisories'], ['vex', 'vex'], ['policies', 'policies'], ['task-packs', 'taskPacks'], ['tenants', 'tenants']] as const) {
        const r = await fetch(`${apiUrl}/api/v1/${path}`, { headers: { authorization: `Bearer ${token}` } });
        const body = (await r.json().catch(() => ({}))) as Record<string, unknown[]>;
        report.seed[path] = Array.isArray(body[key]) ? body[key].length : -1;
        check(r.status === 200 && report.seed[path]! > 0, `seed: GET /api/v1/${path} answered ${r.status} with ${report.seed[path]} entries`);
      }
    }

    // The collector: a span from the API (the requests above) and a scraped StellaOps metric, in its file exporter's output.
    report.telemetry = await telemetry(docker, env);
    check(report.telemetry.scrapedMetrics > 0, `the collector wrote no scraped StellaOps metric to /var/lib/otelcol/metrics.jsonl within 60 s`);
    check(report.telemetry.apiSpans > 0, `the collector received no span from the API (stella-api) within 60 s; spans from: ${report.telemetry.spanServices.join(', ') || 'none'}`);

    // 7. a re-run changes nothing.
    const containers = async () => (await docker(['ps', '-a', '--filter', `label=com.docker.compose.project=${PROJECT}`, '--format', '{{.ID}} {{.Names}} {{.CreatedAt}}'])).stdout.trim().split('\n').sort();
    const secretsHash = () => readdirSync(join(install, '.secrets')).sort().map((f) => `${f}:${sha(readFileSync(join(install, '.secrets', f)))}`).join(',');
    const c1 = await containers();
    const s1 = secretsHash();
    const e1 = sha(readFileSync(join(install, '.env')));
    // With a bundle, the re-run is the installed copy's: the bundle's own quickstart.sh --bundle.
    const again = await sh('quickstart.sh', qsArgs);
    check(again.status === 0, `the second quickstart.sh failed: ${again.stderr.trim().split('\n').slice(-10).join('\n')}`);
    const c2 = await containers();
    const recreated = c1.filter((c) => !c2.includes(c)).map((c) => c.split(' ')[1]!);
    report.rerun = { recreated, secretsKept: secretsHash() === s1, envKept: sha(readFileSync(join(install, '.env'))) === e1 };
    check(recreated.length === 0 && c1.length === c2.length, `the second quickstart.sh recreated containers: ${recreated.join(', ')}`);
    check(report.rerun.secretsKept, 'the second quickstart.sh changed .secrets/');
    check(report.rerun.envKept, 'the second quickstart.sh changed .env');

    if (o.withStack) await o.withStack({ install, consoleUrl, apiUrl, adminPassword: password, env, sh: (s, a, extra) => sh(s, a, extra), compose: (a) => compose(a) });

    // 8. backup → reset → restore.
    if (o.roundTrip && token) {
      const created = await createData(apiUrl, token, progress);
      await sleep(5000);
      const snap = () => snapshot(compose, install, `http://${reach}:${ports.STELLA_OBJECT_STORE_PORT!}`);
      const before = await snap();
      const tb = Date.now();
      const backupFile = join(work, 'backup.tar.gz');
      const b = await sh('backup.sh', ['--output', backupFile]);
      const backupSeconds = (Date.now() - tb) / 1000;
      check(b.status === 0 && existsSync(backupFile), `backup.sh failed: ${b.stderr.trim()}`);
      // The backup stops and starts the services: wait until they are ready again before the reset.
      const ready = await sh('quickstart.sh', []);
      check(ready.status === 0, `quickstart.sh after backup.sh: ${ready.stderr.trim()}`);
      const r = await sh('reset.sh', ['--yes']);
      check(r.status === 0, `reset.sh --yes failed: ${r.stderr.trim()}`);
      const vols = await docker(['volume', 'ls', '-q', '--filter', `label=com.docker.compose.project=${PROJECT}`]);
      check(vols.stdout.trim() === '', `reset.sh left volumes: ${vols.stdout.trim()}`);
      check(!existsSync(join(install, '.secrets')) && !existsSync(join(install, '.env')), 'reset.sh left .env or .secrets/');
      const tr = Date.now();
      const rs = await sh('backup.sh', ['--restore', backupFile]);
      const restoreSeconds = (Date.now() - tr) / 1000;
      check(rs.status === 0, `backup.sh --restore failed: ${rs.stderr.trim().split('\n').slice(-15).join('\n')}`);
      const after = await snap();
      report.roundTrip = { before, after, created, backupBytes: existsSync(backupFile) ? readFileSync(backupFile).length : 0, backupSeconds, restoreSeconds };
      compareSnapshots(before, after, failures);
      check(Object.keys(before.tables).length > 0, 'round trip: no tables to compare');
    }

    // Last: EXPOSE_PUBLIC=1 publishes on every address.
    if (o.exposePublic && daemon) {
      const pub = await sh('quickstart.sh', [], { EXPOSE_PUBLIC: '1' });
      check(pub.status === 0, `quickstart.sh with EXPOSE_PUBLIC=1 failed: ${pub.stderr.trim()}`);
      report.exposedListeners = listeners(daemon);
      check(report.exposedListeners.length >= publishedPorts().length, `EXPOSE_PUBLIC=1: expected a listener per published port, got ${report.exposedListeners.join(', ')}`);
      for (const l of report.exposedListeners) check(l.startsWith('0.0.0.0:') || l.startsWith('*:') || l.startsWith('[::]:'), `EXPOSE_PUBLIC=1 but ${l} is not on every address`);
    }

    // Last: the tls profile, public, with the generated CA.
    if (o.tls) await tlsPhase({ sh: (script, args, extra) => sh(script, [...args, ...(o.bundle ? qsArgs : [])], extra), docker, install, reach, ports, daemon, check, report });
    return report;
  } finally {
    if (o.keep) {
      progress(`kept: DOCKER_HOST=${dockerHost} COMPOSE_FILE=${files.join(':')} in ${install}`);
    } else {
      await sh('reset.sh', ['--yes']).catch(() => undefined);
      await daemon?.stop();
      if (!o.workDir) rmSync(work, { recursive: true, force: true });
    }
  }
}

interface TlsPhase {
  readonly sh: (script: string, args: string[], extra?: NodeJS.ProcessEnv) => Promise<Exit>;
  readonly docker: (args: string[]) => Promise<Exit>;
  readonly install: string;
  readonly reach: string;
  readonly ports: Record<string, number>;
  readonly daemon: FreshDaemon | undefined;
  readonly check: (ok: boolean, what: string) => boolean;
  readonly report: { tls?: SmokeReport['tls'] };
}

/** quickstart.sh --tls with EXPOSE_PUBLIC=1, then HTTPS through nginx verified against .secrets/tls-ca.pem. */
async function tlsPhase(t: TlsPhase): Promise<void> {
  const { check } = t;
  const r = await t.sh('quickstart.sh', ['--tls'], { EXPOSE_PUBLIC: '1' });
  if (!check(r.status === 0, `quickstart.sh --tls failed (exit ${r.status}): ${r.stderr.trim().split('\n').slice(-15).join('\n')}`)) return;
  const secrets = join(t.install, '.secrets');
  const keyFile = join(secrets, 'tls-key.pem');
  const caFile = join(secrets, 'tls-ca.pem');
  if (!check(existsSync(keyFile) && existsSync(caFile) && existsSync(join(secrets, 'tls-cert.pem')), 'quickstart.sh --tls did not write .secrets/tls-cert.pem, tls-key.pem and tls-ca.pem')) return;
  const keyMode = (statSync(keyFile).mode & 0o777).toString(8).padStart(4, '0');
  check(keyMode === '0600', `.secrets/tls-key.pem has mode ${keyMode} (expected 0600)`);
  check(!existsSync(join(secrets, 'tls-ca-key.pem')), 'the generated CA\'s private key was left in .secrets/');
  const ca = readFileSync(caFile);
  const proxy = (await t.docker(['ps', '-a', '--filter', `label=com.docker.compose.project=${PROJECT}`, '--filter', 'label=com.docker.compose.service=tls-proxy', '--format', '{{.Status}}'])).stdout.trim();
  check(/\(healthy\)/.test(proxy), `tls-proxy is not healthy: ${proxy || 'no container'}`);
  const consoleUrl = `https://${t.reach}:${t.ports.STELLA_TLS_CONSOLE_PORT}/`;
  const apiUrl = `https://${t.reach}:${t.ports.STELLA_TLS_API_PORT}/health/readiness`;
  const c = await httpsGet(consoleUrl, ca).catch((e: Error) => e);
  const a = await httpsGet(apiUrl, ca).catch((e: Error) => e);
  check(!(c instanceof Error) && c.status === 200, `GET ${consoleUrl} (CA .secrets/tls-ca.pem): ${c instanceof Error ? c.message : `HTTP ${c.status}`}`);
  check(!(a instanceof Error) && a.status === 200 && /"status"/.test(a.body), `GET ${apiUrl} (CA .secrets/tls-ca.pem): ${a instanceof Error ? a.message : `HTTP ${a.status} ${a.body.slice(0, 200)}`}`);
  // Without the CA the same request must fail verification (the check above is a real one).
  const untrusted = await httpsGet(consoleUrl, undefined).then(
    () => false,
    (e: Error & { code?: string }) => /SELF_SIGNED|UNABLE_TO_GET_ISSUER|UNABLE_TO_VERIFY|CERT/.test(`${e.code ?? ''} ${e.message}`),
  );
  check(untrusted, `GET ${consoleUrl} without the CA was not refused as untrusted`);
  const ls = listeners(t.daemon);
  if (t.daemon) {
    const byPort = new Map(ls.map((l) => [Number(l.slice(l.lastIndexOf(':') + 1)), l]));
    for (const p of TLS_PORTS) {
      const l = byPort.get(t.ports[p.variable]!);
      check(!!l && /^(0\.0\.0\.0|\*|\[::\]):/.test(l), `tls profile with EXPOSE_PUBLIC=1: ${p.variable} should listen on every address, got ${l ?? 'no listener'}`);
    }
    for (const p of publishedPorts().filter((x) => HTTP_PUBLISH_SERVICES.includes(x.service))) {
      const l = byPort.get(t.ports[p.variable]!);
      check(!!l && l.startsWith('127.0.0.1:'), `tls profile with EXPOSE_PUBLIC=1: the plain-HTTP ${p.service} port should stay on 127.0.0.1, got ${l ?? 'no listener'}`);
    }
  }
  t.report.tls = { ...(c instanceof Error ? {} : { console: c.status }), ...(a instanceof Error ? {} : { api: a.status }), untrustedRefused: untrusted, keyMode, listeners: ls, proxy };
}

/** GET over HTTPS, verifying the server against `ca` (undefined: Node's default roots). */
function httpsGet(url: string, ca: Buffer | undefined): Promise<{ status: number; body: string }> {
  return new Promise((res, rej) => {
    const req = httpsRequest(url, { method: 'GET', ...(ca ? { ca } : {}), rejectUnauthorized: true, timeout: 10_000 }, (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (d: Buffer) => chunks.push(d));
      r.on('end', () => res({ status: r.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      r.on('error', rej);
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer in 10 s`)));
    req.on('error', rej);
    req.end();
  });
}

/** One file out of a container (docker cp gives a tar: one header, then the bytes). */
async function fileFromContainer(env: NodeJS.ProcessEnv, container: string, path: string): Promise<string> {
  const r = await new Promise<Buffer>((res) => {
    const c = spawn('docker', ['cp', `${container}:${path}`, '-'], { env });
    const chunks: Buffer[] = [];
    c.stdout.on('data', (d: Buffer) => chunks.push(d));
    c.on('exit', () => res(Buffer.concat(chunks)));
    c.on('error', () => res(Buffer.alloc(0)));
  });
  if (r.length < 512) return '';
  const size = parseInt(r.subarray(124, 136).toString('utf8').replace(/\0.*$/s, '').trim() || '0', 8);
  return r.subarray(512, 512 + size).toString('utf8');
}

async function telemetry(docker: (args: string[]) => Promise<Exit>, env: NodeJS.ProcessEnv): Promise<{ scrapedMetrics: number; spans: number; spanServices: string[]; apiSpans: number }> {
  const id = (await docker(['ps', '-q', '--filter', `label=com.docker.compose.project=${PROJECT}`, '--filter', 'label=com.docker.compose.service=otel-collector'])).stdout.trim();
  const targets = catalog.services.map((s) => `${s.name}:${s.http.port}`);
  let out = { scrapedMetrics: 0, spans: 0, spanServices: [] as string[], apiSpans: 0 };
  for (let i = 0; i < 30 && id; i++) {
    const metrics = await fileFromContainer(env, id, '/var/lib/otelcol/metrics.jsonl');
    const traces = await fileFromContainer(env, id, '/var/lib/otelcol/traces.jsonl');
    const services = new Set([...traces.matchAll(/"service\.name","value":\{"stringValue":"([^"]+)"/g)].map((m) => m[1]!));
    // Spans of the API: the resourceSpans lines (one OTLP export each) whose resource is stella-api.
    const apiSpans = traces.split('\n').filter((l) => l.includes('"service.name","value":{"stringValue":"stella-api"}')).reduce((n, l) => n + (l.match(/"spanId"/g) ?? []).length, 0);
    out = { scrapedMetrics: metrics.split('\n').filter((l) => targets.some((t) => l.includes(t))).length, spans: (traces.match(/"spanId"/g) ?? []).length, spanServices: [...services].sort(), apiSpans };
    if (out.scrapedMetrics > 0 && out.apiSpans > 0) break;
    await sleep(2000);
  }
  return out;
}

/** The TCP listeners of the fresh daemon's docker-proxy processes: "address:port". */
function listeners(daemon: FreshDaemon | undefined): string[] {
  if (!daemon) return [];
  const proxies = new Set(childPids(daemon.pid));
  const r = spawnSync('ss', ['-ltnpH'], { encoding: 'utf8' });
  const out: string[] = [];
  for (const line of r.stdout.split('\n')) {
    const pids = [...line.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
    if (!pids.some((p) => proxies.has(p))) continue;
    out.push(line.trim().split(/\s+/)[3]!);
  }
  return out.sort();
}

async function apiToken(api: string, password: string): Promise<string> {
  const r = await fetch(`${api}/api/v1/tokens`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'admin', password }) });
  const body = (await r.json().catch(() => ({}))) as { token?: string; error?: string };
  if (r.status !== 201 || !body.token) throw new Error(`HTTP ${r.status} ${JSON.stringify(body)}`);
  return body.token;
}

/** Data beyond the seed, through the API: findings (scan import), an export, a queued task pack run. */
async function createData(api: string, token: string, progress: (l: string) => void): Promise<Record<string, unknown>> {
  const call = async (method: string, path: string, body?: unknown) => {
    const r = await fetch(`${api}${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: r.status, body: (await r.json().catch(() => null)) as unknown };
  };
  const scan = await call('POST', '/api/v1/scans/import', {});
  const exp = await call('POST', '/api/v1/exports', { target: 'production', format: 'json' });
  const packs = await call('GET', '/api/v1/task-packs');
  const pack = ((packs.body as { taskPacks?: { id: string }[] })?.taskPacks ?? [])[0];
  const run = pack ? await call('POST', `/api/v1/task-packs/${encodeURIComponent(pack.id)}/run`) : { status: 0, body: 'no task pack' };
  const created = { scanImport: scan, export: exp, taskRun: run };
  progress(`round trip: created ${JSON.stringify(created)}`);
  return created;
}

type ComposeRun = (args: string[], input?: string) => Promise<Exit>;

/** Every table (row count, md5 of the sorted rows), every object (sha256), Redis keys, JetStream streams. */
export async function snapshot(compose: ComposeRun, install: string, objectStore: string): Promise<DataSnapshot> {
  const secret = (n: string) => readFileSync(join(install, '.secrets', n), 'utf8').trim();
  const psql = (sql: string) => compose(['exec', '-T', '-e', `PGPASSWORD=${secret('postgres-password')}`, 'postgres', 'psql', '-h', '127.0.0.1', '-U', 'stella', '-d', 'stella', '-AtX', '-v', 'ON_ERROR_STOP=1', '-f', '-'], sql);
  const list = await psql("SELECT schemaname || '.' || tablename FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1;");
  if (list.status !== 0) throw new Error(`psql: ${list.stderr}`);
  const tables: Record<string, TableSnapshot> = {};
  const names = list.stdout.trim().split('\n').filter(Boolean);
  if (names.length) {
    const sql = names.map((t) => { const [s, n] = t.split('.'); return `SELECT '${t}', count(*), coalesce(md5(string_agg(x::text, E'\\n' ORDER BY x::text)), '') FROM "${s}"."${n}" x;`; }).join('\n');
    const r = await psql(sql);
    if (r.status !== 0) throw new Error(`psql: ${r.stderr}`);
    for (const l of r.stdout.trim().split('\n')) {
      const [t, rows, md5] = l.split('|');
      tables[t!] = { rows: Number(rows), md5: md5 ?? '' };
    }
  }
  const objects = await bucketObjects({ endpoint: objectStore, accessKey: secret('object-store-access-key'), secretKey: secret('object-store-secret-key') }, 'stella');
  const redis: Record<string, string> = {};
  const rc = (args: string[]) => compose(['exec', '-T', 'redis', '/usr/bin/redis-cli', '--no-auth-warning', '-a', secret('redis-password'), ...args]);
  const keys = (await rc(['--scan'])).stdout.trim().split('\n').filter(Boolean).sort();
  for (const k of keys) {
    const type = (await rc(['TYPE', k])).stdout.trim();
    redis[k] = type === 'string' ? `string:${sha((await rc(['GET', k])).stdout)}` : type;
  }
  const jsz = await compose(['exec', '-T', 'api', '/nodejs/bin/node', '-e', "fetch('http://nats:8222/jsz?streams=true').then(r=>r.text()).then(t=>process.stdout.write(t))"]);
  const streams: DataSnapshot['streams'] = {};
  try {
    const j = JSON.parse(jsz.stdout) as { account_details?: { stream_detail?: { name: string; state: { messages: number; bytes: number; last_seq: number } }[] }[] };
    for (const a of j.account_details ?? []) for (const s of a.stream_detail ?? []) streams[s.name] = { messages: s.state.messages, bytes: s.state.bytes, lastSeq: s.state.last_seq };
  } catch {
    // no JetStream monitoring answer: no streams to compare
  }
  return { tables, objects, redis, streams };
}

export function compareSnapshots(a: DataSnapshot, b: DataSnapshot, failures: string[]): void {
  for (const [t, s] of Object.entries(a.tables)) {
    const r = b.tables[t];
    if (!r) failures.push(`round trip: table ${t} is gone`);
    else if (r.rows !== s.rows || r.md5 !== s.md5) failures.push(`round trip: table ${t}: ${s.rows} rows (md5 ${s.md5}) before, ${r.rows} rows (md5 ${r.md5}) after`);
  }
  for (const t of Object.keys(b.tables)) if (!a.tables[t]) failures.push(`round trip: table ${t} appeared`);
  for (const [k, h] of Object.entries(a.objects)) if (b.objects[k] !== h) failures.push(`round trip: object ${k}: ${b.objects[k] ? 'bytes differ' : 'missing'}`);
  for (const k of Object.keys(b.objects)) if (!a.objects[k]) failures.push(`round trip: object ${k} appeared`);
  for (const [k, v] of Object.entries(a.redis)) if (b.redis[k] !== v) failures.push(`round trip: redis key ${k}: ${b.redis[k] ?? 'missing'} (was ${v})`);
  for (const [k, v] of Object.entries(a.streams)) if (JSON.stringify(b.streams[k]) !== JSON.stringify(v)) failures.push(`round trip: stream ${k}: ${JSON.stringify(b.streams[k])} (was ${JSON.stringify(v)})`);
}
