/**
 * smoke-helm: the published chart on a real Kubernetes (any kubeconfig; here the single-node
 * cluster of scripts/cluster.sh, elsewhere kind or k3s).
 *
 *   0. the chart of each release (`chart`'s packaging, pinned to that build's digests and the
 *      support image lock) is pushed to <registry>/<namespace>/charts/stella and signed with
 *      an ephemeral key; everything after installs it from there, by digest;
 *   external mode:
 *   1. PostgreSQL, Redis, NATS (JetStream) and the object store (SeaweedFS) as host processes
 *      bound to --dependency-address (the CNI bridge gateway: reachable from pods, nothing else);
 *      their URLs and credentials go to the release as existingSecret references;
 *   2. `helm install` by digest into a namespace labelled pod-security.kubernetes.io/enforce=
 *      restricted; every pod Ready;
 *   3. an admin and the seed through the API image (a one-off Job built from the migrator
 *      hook, quickstart seeding on), then canary data through the API (a finding, an export
 *      written to the object store);
 *   4. `helm upgrade` to the second release (other digests, one more migration): the migrator
 *      hook ran before every new pod, workers waited for the API, the schema has the new
 *      migration, the canary is intact;
 *   5. `helm rollback`: the first release's digests run again, the canary is intact;
 *   bundled mode: the same install with the StatefulSets of the support images (the chart's own
 *   bucket Job creates the object store's bucket: the smoke checks it completed after install,
 *   upgrade and rollback, and creates nothing itself), canary, every StatefulSet pod deleted and
 *   back, canary intact, upgrade, canary intact.
 * Every phase is timed; `failures` lists each check that did not hold (the function fails on any).
 */
import { weedBinary } from '../support/binaries.ts';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { chmodSync, closeSync, existsSync, openSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseAllDocuments, stringify as yamlStringify } from 'yaml';
import { StellaError } from '../errors.ts';
import { readBuildDocument, type BuildDocument } from '../build/document.ts';
import { chartStep, type ChartResult } from '../chart/publish.ts';
import { loadSupportLock } from '../chart/function.ts';
import { generateKeyPair, loadPrivateKey } from '../sign/index.ts';
import { planTags } from '../tags/index.ts';
import { catalog } from '../catalog/index.ts';
import { flag } from '../dagger/names.ts';
import { Registries, signingWithKey } from '../release/context.ts';
import { registryAccess } from '../release/pipeline.ts';

export type SmokeMode = 'external' | 'bundled';

export interface SmokeHelmOptions {
  readonly source: string;
  /** kubeconfig of the cluster to install into. */
  readonly kubeconfig: string;
  /** Build document of the first release. */
  readonly images: string;
  /** Build document of the second release (other digests, one more migration). */
  readonly upgradeImages: string;
  readonly version?: string;
  readonly upgradeVersion?: string;
  readonly supportLock?: string;
  readonly registry?: string;
  readonly namespace?: string;
  /** Kubernetes namespace of the release (created, labelled restricted, deleted after). */
  readonly releaseNamespace?: string;
  /** Address the external dependencies listen on (reachable from pods). */
  readonly dependencyAddress?: string;
  readonly modes?: readonly SmokeMode[];
  readonly timeoutSeconds?: number;
  readonly keep?: boolean;
  readonly progress?: (line: string) => void;
}

export interface ModeReport {
  readonly pods: Record<string, string>;
  readonly canary: Record<string, unknown>;
  readonly images: { readonly first: Record<string, string>; readonly second?: Record<string, string>; readonly rolledBack?: Record<string, string> };
  readonly order?: Record<string, string>;
  /** Bundled mode: the chart's bucket Job after install, upgrade and rollback (name and run time). */
  readonly bucketJobs?: Record<string, string>;
}

export interface SmokeHelmReport {
  readonly serverVersion: string;
  readonly charts: { readonly first: ChartResult; readonly second: ChartResult };
  readonly phases: Record<string, number>;
  readonly modes: Partial<Record<SmokeMode, ModeReport>>;
  readonly failures: string[];
  /** What the smoke had to do that the chart should (each one a chart gap to close; none today). */
  readonly workarounds: string[];
}

const RELEASE = 'smoke';
/** The chart's fullname for this release name (<release>-stella). */
const FULL = `${RELEASE}-stella`;
const API = catalog.services.find((s) => s.name === 'api')!;
/** The catalog's workers: the chart holds each of their pods on a wait-for-api init container. */
const WORKERS = catalog.services.filter((s) => s.role === 'worker').map((s) => s.name);


interface Exit { status: number | null; stdout: string; stderr: string }

function exec(bin: string, args: readonly string[], o: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): Exit {
  const r = spawnSync(bin, args, { env: o.env ?? process.env, input: o.input, encoding: 'utf8', timeout: o.timeoutMs ?? 600_000, maxBuffer: 128 << 20 });
  return { status: r.status, stdout: r.stdout ?? '', stderr: (r.stderr ?? '') + (r.error ? String(r.error) : '') };
}

function must(what: string, r: Exit): string {
  if (r.status !== 0) throw new StellaError('VERIFY_FAILED', `${what} failed (exit ${r.status}): ${r.stderr.trim().split('\n').slice(-6).join('\n')}`);
  return r.stdout;
}

function freePortOn(host: string): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, host, () => {
      const a = s.address();
      s.close(() => (typeof a === 'object' && a ? res(a.port) : rej(new Error(`no free port on ${host}`))));
    });
  });
}

async function waitUntil<T>(what: string, seconds: number, f: () => Promise<T | undefined> | T | undefined): Promise<T> {
  const end = Date.now() + seconds * 1000;
  let last: unknown;
  for (;;) {
    try {
      const v = await f();
      if (v !== undefined && v !== false) return v as T;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new StellaError('VERIFY_FAILED', `${what}: not after ${seconds} s${last ? ` (${(last as Error).message})` : ''}`);
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/** The host the kubeconfig's current cluster is served on. */
export function apiServerHost(kubeconfig: string): string | undefined {
  const m = /server:\s*https?:\/\/\[?([^\]/:\s]+)/.exec(readFileSync(kubeconfig, 'utf8'));
  return m?.[1];
}

// ---- the external dependencies, as host processes ------------------------------------------

export interface HostDeps {
  readonly postgresUrl: string;
  readonly redisUrl: string;
  readonly natsUrl: string;
  readonly objectStore: { endpoint: string; accessKey: string; secretKey: string; port: number };
  readonly ports: { postgres: number; redis: number; nats: number };
  psql(sql: string): string;
  stop(): void;
}

/** PUT /<bucket> on the S3 gateway, SigV4-signed (path style, empty payload). */
async function s3CreateBucket(endpoint: string, accessKey: string, secretKey: string, bucket: string): Promise<number> {
  const sha = (b: string) => createHash('sha256').update(b).digest('hex');
  const hmac = (k: string | Buffer, d: string) => createHmac('sha256', k).update(d).digest();
  const url = new URL(`/${bucket}`, endpoint);
  const now = new Date().toISOString().replace(/[:-]|\.\d{3}/g, '');
  const day = now.slice(0, 8);
  const headers: Record<string, string> = { host: url.host, 'x-amz-content-sha256': sha(''), 'x-amz-date': now };
  const names = Object.keys(headers).sort();
  const canonical = ['PUT', url.pathname, '', ...names.map((n) => `${n}:${headers[n]}`), '', names.join(';'), sha('')].join('\n');
  const scope = `${day}/us-east-1/s3/aws4_request`;
  const key = hmac(hmac(hmac(hmac(`AWS4${secretKey}`, day), 'us-east-1'), 's3'), 'aws4_request');
  const signature = createHmac('sha256', key).update(['AWS4-HMAC-SHA256', now, scope, sha(canonical)].join('\n')).digest('hex');
  const r = await fetch(url, { method: 'PUT', headers: { ...headers, authorization: `AWS4-HMAC-SHA256 Credential=${accessKey}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}` }, signal: AbortSignal.timeout(15_000) });
  return r.status;
}

export async function startHostDeps(addr: string, dir: string, progress: (l: string) => void): Promise<HostDeps> {
  const procs: ChildProcess[] = [];
  // PostgreSQL runs as the postgres user (when we are root): it must reach its directory.
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, 0o755);
  const pgDir = join(dir, 'postgres');
  const pass = { pg: randomBytes(12).toString('hex'), redis: randomBytes(12).toString('hex'), s3: randomBytes(16).toString('hex') };
  const ports = { postgres: await freePortOn(addr), redis: await freePortOn(addr), nats: await freePortOn(addr), s3: await freePortOn(addr) };
  const asPostgres = process.getuid?.() === 0;
  const pgRun = (bin: string, args: string[]) => (asPostgres ? exec('runuser', ['-u', 'postgres', '--', bin, ...args]) : exec(bin, args));
  mkdirSync(pgDir, { recursive: true });
  if (asPostgres) exec('chown', ['-R', 'postgres:postgres', pgDir]);
  const pwFile = join(dir, 'pgpass');
  writeFileSync(pwFile, pass.pg, { mode: 0o644 });
  must('initdb', pgRun('initdb', ['-D', join(pgDir, 'data'), '-U', 'stella', '--auth=scram-sha-256', `--pwfile=${pwFile}`, '-E', 'UTF8']));
  rmSync(pwFile);
  writeFileSync(join(pgDir, 'data', 'pg_hba.conf'), 'local all all trust\nhost all all 0.0.0.0/0 scram-sha-256\n');
  must('pg_ctl start', pgRun('pg_ctl', ['-D', join(pgDir, 'data'), '-l', join(pgDir, 'log'), '-w', '-o', `-h ${addr} -p ${ports.postgres} -k ${pgDir}`, 'start']));
  must('createdb', pgRun('createdb', ['-h', pgDir, '-p', String(ports.postgres), '-U', 'stella', 'stella']));
  const spawnLogged = (name: string, bin: string, args: string[]) => {
    const log = openSync(join(dir, `${name}.log`), 'a');
    const p = spawn(bin, args, { cwd: dir, stdio: ['ignore', log, log] });
    closeSync(log);
    procs.push(p);
    return p;
  };
  spawnLogged('redis', 'redis-server', ['--bind', addr, '--port', String(ports.redis), '--requirepass', pass.redis, '--save', '', '--appendonly', 'yes', '--dir', dir, '--protected-mode', 'no']);
  mkdirSync(join(dir, 'nats'), { recursive: true });
  spawnLogged('nats', 'nats-server', ['-a', addr, '-p', String(ports.nats), '-js', '-sd', join(dir, 'nats'), '--http_port', '0']);
  const weed = weedBinary();
  if (!weed) throw new StellaError('NOT_FOUND', 'smoke-helm: no SeaweedFS `weed` binary for the external object store: build the support images (`stella-release support-images`) or set STELLA_WEED_BIN');
  const s3cfg = join(dir, 's3.json');
  writeFileSync(s3cfg, JSON.stringify({ identities: [{ name: 'stella', credentials: [{ accessKey: 'stella-smoke', secretKey: pass.s3 }], actions: ['Admin', 'Read', 'Write', 'List', 'Tagging'] }] }));
  // Master, volume server and filer advertise and bind the same address (the filer reaches the volume server at it).
  const grpc = [await freePortOn(addr), await freePortOn(addr), await freePortOn(addr), await freePortOn(addr)];
  const internal = [await freePortOn(addr), await freePortOn(addr), await freePortOn(addr)];
  mkdirSync(join(dir, 'weed'), { recursive: true });
  spawnLogged('weed', weed, [
    'server', `-dir=${join(dir, 'weed')}`, `-ip=${addr}`, `-ip.bind=${addr}`, `-master.port=${internal[0]}`, `-master.port.grpc=${grpc[0]}`, '-master.volumeSizeLimitMB=16',
    `-volume.port=${internal[1]}`, `-volume.port.grpc=${grpc[1]}`, '-volume.max=20', '-filer', `-filer.port=${internal[2]}`, `-filer.port.grpc=${grpc[2]}`,
    '-s3', `-s3.port=${ports.s3}`, `-s3.port.grpc=${grpc[3]}`, '-s3.port.iceberg=0', '-s3.port.lance=0', '-master.telemetry=false', `-s3.config=${s3cfg}`,
  ]);
  const stop = () => {
    for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM');
    pgRun('pg_ctl', ['-D', join(pgDir, 'data'), '-m', 'fast', '-w', 'stop']);
  };
  const psql = (sql: string) => must('psql', pgRun('psql', ['-h', pgDir, '-p', String(ports.postgres), '-U', 'stella', '-d', 'stella', '-AtX', '-v', 'ON_ERROR_STOP=1', '-c', sql]));
  try {
    await waitUntil('redis', 30, () => exec('redis-cli', ['-h', addr, '-p', String(ports.redis), '--no-auth-warning', '-a', pass.redis, 'PING']).stdout.includes('PONG') || undefined);
    await waitUntil('nats', 30, async () => {
      const { connect } = await import('node:net');
      return new Promise<boolean | undefined>((r) => {
        const s = connect(ports.nats, addr, () => (s.end(), r(true)));
        s.on('error', () => r(undefined));
      });
    });
    // The S3 gateway answers (an unsigned request gets 403 once it is up).
    await waitUntil('the object store', 90, async () => ((await fetch(`http://${addr}:${ports.s3}/`).catch(() => undefined))?.status ?? 0) > 0 || undefined);
    // The bucket the services use (their readiness is a HeadBucket); the filer lists it a moment later.
    await waitUntil('the object store bucket', 60, async () => [200, 409].includes(await s3CreateBucket(`http://${addr}:${ports.s3}`, 'stella-smoke', pass.s3, 'stella')) || undefined);
  } catch (e) {
    stop();
    throw e;
  }
  progress(`external dependencies on ${addr}: postgres :${ports.postgres}, redis :${ports.redis}, nats :${ports.nats}, object store :${ports.s3}`);
  return {
    postgresUrl: `postgres://stella:${pass.pg}@${addr}:${ports.postgres}/stella`,
    redisUrl: `redis://:${pass.redis}@${addr}:${ports.redis}/0`,
    natsUrl: `nats://${addr}:${ports.nats}`,
    objectStore: { endpoint: `http://${addr}:${ports.s3}`, accessKey: 'stella-smoke', secretKey: pass.s3, port: ports.s3 },
    ports,
    psql,
    stop,
  };
}

// ---- kubectl, helm, the API -----------------------------------------------------------------

/** kubectl and helm against one kubeconfig, helm with its own home (also smoke-airgap's Helm phase). */
export class Kube {
  readonly kubectl: string;
  readonly helmBin: string;
  readonly helmEnv: NodeJS.ProcessEnv;
  readonly kubeconfig: string;
  /** `kubectl`: its path; default $STELLA_KUBECTL, else PATH. */
  constructor(kubeconfig: string, home: string, kubectl?: string) {
    this.kubeconfig = kubeconfig;
    this.kubectl = kubectl || process.env.STELLA_KUBECTL || 'kubectl';
    this.helmBin = process.env.STELLA_HELM || 'helm';
    this.helmEnv = { ...process.env, KUBECONFIG: kubeconfig, HELM_CACHE_HOME: join(home, 'cache'), HELM_CONFIG_HOME: join(home, 'config'), HELM_DATA_HOME: join(home, 'data') };
  }
  k(args: readonly string[], input?: string, timeoutMs?: number): Exit {
    return exec(this.kubectl, ['--kubeconfig', this.kubeconfig, ...args], { input, timeoutMs });
  }
  kMust(what: string, args: readonly string[], input?: string): string {
    return must(`kubectl ${what}`, this.k(args, input));
  }
  json<T = any>(args: readonly string[]): T {
    return JSON.parse(this.kMust(args.join(' '), [...args, '-o', 'json'])) as T;
  }
  helm(args: readonly string[], timeoutMs = 900_000): Exit {
    return exec(this.helmBin, args, { env: this.helmEnv, timeoutMs });
  }
}

/** `kubectl port-forward` to a Service; the local port once it forwards. */
async function portForward(kube: Kube, ns: string, svc: string, port: number): Promise<{ url: string; stop: () => void }> {
  const p = spawn(kube.kubectl, ['--kubeconfig', kube.kubeconfig, '-n', ns, 'port-forward', `svc/${svc}`, `:${port}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const local = await new Promise<number>((res, rej) => {
    const t = setTimeout(() => rej(new StellaError('VERIFY_FAILED', `kubectl port-forward svc/${svc}: no forward after 30 s: ${out}`)), 30_000);
    const on = (d: Buffer) => {
      out += String(d);
      const m = /127\.0\.0\.1:(\d+) ->/.exec(out);
      if (m) (clearTimeout(t), res(Number(m[1])));
    };
    p.stdout!.on('data', on);
    p.stderr!.on('data', on);
    p.once('exit', (c) => (clearTimeout(t), rej(new StellaError('VERIFY_FAILED', `kubectl port-forward svc/${svc} exited (${c}): ${out}`))));
  });
  return { url: `http://127.0.0.1:${local}`, stop: () => void p.kill('SIGTERM') };
}

async function api(url: string, method: string, path: string, token?: string, body?: unknown): Promise<{ status: number; body: any; text: string }> {
  const r = await fetch(`${url}${path}`, { method, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(20_000) });
  const text = await r.text();
  let parsed: unknown = null;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: r.status, body: parsed, text };
}

interface Canary {
  readonly component: string;
  readonly findingId: string;
  readonly exportId: string;
  readonly exportSha256: string;
}

// ---- the smoke --------------------------------------------------------------------------------

export async function smokeHelm(o: SmokeHelmOptions): Promise<SmokeHelmReport> {
  const progress = o.progress ?? (() => undefined);
  const failures: string[] = [];
  const workarounds: string[] = [];
  const check = (ok: boolean, what: string) => {
    if (!ok) failures.push(what);
    return ok;
  };
  const phases: Record<string, number> = {};
  const timed = async <T>(name: string, f: () => Promise<T> | T): Promise<T> => {
    const t = Date.now();
    try {
      return await f();
    } finally {
      phases[name] = Math.round((Date.now() - t) / 100) / 10;
      progress(`phase ${name}: ${phases[name]} s`);
    }
  };
  const timeout = o.timeoutSeconds ?? 600;
  const ns = o.releaseNamespace ?? 'stella-smoke';
  const registry = o.registry ?? '127.0.0.1:5000';
  const regNs = o.namespace ?? 'stellaops-smoke';
  const modes = o.modes ?? ['external', 'bundled'];
  const kubeconfig = resolve(o.source, o.kubeconfig);
  if (!existsSync(kubeconfig)) throw new StellaError('NOT_FOUND', `smoke-helm: kubeconfig ${kubeconfig} does not exist (bash scripts/cluster.sh up prints one)`);
  const work = mkdtempSync(join(tmpdir(), 'stella-smoke-helm-'));
  chmodSync(work, 0o711);
  const kube = new Kube(kubeconfig, join(work, 'helm'));
  const plain = registry.startsWith('127.0.0.1') || registry.startsWith('localhost') || process.env.STELLA_REGISTRY_PLAIN_HTTP === '1';

  const version = JSON.parse(kube.kMust('version', ['version', '-o', 'json'])) as { serverVersion?: { gitVersion?: string } };
  const serverVersion = version.serverVersion?.gitVersion ?? 'unknown';
  progress(`cluster ${serverVersion} (${kubeconfig})`);

  // 0. both charts, published and signed, from the build documents.
  const [first, second] = await timed('publish charts', async () => {
    const key = generateKeyPair('');
    const signing = signingWithKey(loadPrivateKey(key.privateKeyPem, '', 'ephemeral smoke key'));
    const registries = new Registries(registryAccess({}));
    const supportLock = await loadSupportLock(o.source, o.supportLock);
    const publish = async (images: BuildDocument, v: string) => {
      const plan = planTags({ version: v });
      return chartStep({ source: o.source, images, supportLock, chartVersion: plan.chartVersion, appVersion: plan.imageVersion, registry, namespace: regNs, sourceDateEpoch: 1_700_000_000, outDir: join(work, 'charts'), registries, signing }, { progress });
    };
    return [await publish(await readBuildDocument(resolve(o.source, o.images)), o.version ?? 'v1.4.0-rc.1'), await publish(await readBuildDocument(resolve(o.source, o.upgradeImages)), o.upgradeVersion ?? 'v1.4.0-rc.2')];
  });
  check(first.digest !== second.digest, 'the two releases give the same chart digest');
  const chartRef = (c: ChartResult) => `${c.oci}@${c.digest}`;
  const helmOci = (c: ChartResult) => [chartRef(c), ...(plain ? ['--plain-http'] : [])];

  const report: { -readonly [K in keyof SmokeHelmReport]: SmokeHelmReport[K] } = { serverVersion, charts: { first, second }, phases, modes: {}, failures, workarounds };

  const resetNamespace = () => {
    const got = kube.k(['get', 'namespace', ns, '-o', 'json']);
    if (got.status === 0) {
      const labels = (JSON.parse(got.stdout) as { metadata: { labels?: Record<string, string> } }).metadata.labels ?? {};
      if (labels['stellaops.io/smoke'] !== 'true') throw new StellaError('INVALID_ARGUMENT', `smoke-helm: namespace ${ns} exists and is not a smoke namespace (no stellaops.io/smoke=true label): pick another --release-namespace`);
      kube.kMust('delete namespace', ['delete', 'namespace', ns, '--wait=true', '--timeout=180s']);
    }
    kube.kMust('create namespace', ['apply', '-f', '-'], yamlStringify({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns, labels: { 'stellaops.io/smoke': 'true', 'pod-security.kubernetes.io/enforce': 'restricted', 'pod-security.kubernetes.io/enforce-version': 'latest', 'pod-security.kubernetes.io/warn': 'restricted' } } }));
  };
  const secret = (name: string, data: Record<string, string>) => kube.kMust(`secret ${name}`, ['-n', ns, 'apply', '-f', '-'], yamlStringify({ apiVersion: 'v1', kind: 'Secret', metadata: { name }, type: 'Opaque', stringData: data }));

  const podsReady = (): Record<string, string> => {
    const pods = kube.json<{ items: any[] }>(['-n', ns, 'get', 'pods']).items.filter((p) => !p.metadata.labels?.['job-name'] && p.status.phase !== 'Succeeded');
    return Object.fromEntries(pods.map((p) => [p.metadata.name as string, (p.status.conditions ?? []).some((c: any) => c.type === 'Ready' && c.status === 'True') ? 'Ready' : `${p.status.phase} not Ready`]));
  };
  const runningImages = (): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const d of kube.json<{ items: any[] }>(['-n', ns, 'get', 'deployments,statefulsets']).items) out[`${d.kind}/${d.metadata.name}`] = String(d.spec.template.spec.containers[0].image);
    return out;
  };
  const checkAllReady = (what: string) => {
    const pods = podsReady();
    check(Object.keys(pods).length > 0, `${what}: no pods`);
    for (const [p, s] of Object.entries(pods)) check(s === 'Ready', `${what}: pod ${p} is ${s}`);
    return pods;
  };
  const helmFail = (what: string, r: Exit) => {
    if (r.status !== 0) {
      const pods = kube.k(['-n', ns, 'get', 'pods', '-o', 'wide']).stdout;
      const events = kube.k(['-n', ns, 'get', 'events', '--sort-by=.lastTimestamp']).stdout.split('\n').slice(-25).join('\n');
      throw new StellaError('VERIFY_FAILED', `smoke-helm: helm ${what} failed (exit ${r.status}): ${r.stderr.trim().split('\n').slice(-8).join('\n')}\n${pods}\n${events}`);
    }
  };
  const helmDo = (what: string, args: string[]) => helmFail(what, kube.helm([...args, '-n', ns, '--wait', '--timeout', `${timeout}s`]));
  /**
   * Bundled mode: the chart's own bucket Job (templates/bundled/object-store-init.yaml, the quickstart's
   * `stella-init.mjs bucket`, one Job per release revision) ran to completion, and it is the only one
   * (Helm deleted the previous revision's). The smoke creates no bucket: the canary's export proves it.
   */
  const checkBucketJob = (what: string): string | undefined => {
    const selector = 'app.kubernetes.io/component=object-store-init';
    const done = kube.k(['-n', ns, 'wait', '--for=condition=complete', 'job', '-l', selector, `--timeout=${timeout}s`], undefined, (timeout + 30) * 1000);
    const jobs = kube.json<{ items: any[] }>(['-n', ns, 'get', 'jobs', '-l', selector]).items.filter((j) => !j.metadata.deletionTimestamp);
    check(done.status === 0, `${what}: the bucket Job did not complete: ${done.stderr.trim().split('\n').slice(-3).join(' ')}`);
    check(jobs.length === 1, `${what}: ${jobs.length} bucket Jobs (${jobs.map((j) => j.metadata.name).join(', ')}), expected the release revision's one`);
    const j = jobs[0];
    if (!j) return undefined;
    const took = (Date.parse(j.status?.completionTime ?? '') - Date.parse(j.status?.startTime ?? '')) / 1000;
    return `${j.metadata.name}${Number.isFinite(took) ? ` (${took} s)` : ''}`;
  };

  /** An admin and the quickstart seed, by the API image's own `migrate` (as the migrator hook, with seeding on). */
  const seedAdmin = async (): Promise<string> => {
    const hooks = parseAllDocuments(must('helm get hooks', kube.helm(['get', 'hooks', RELEASE, '-n', ns]))).map((d) => d.toJS() as any).filter(Boolean);
    const migrator = hooks.find((h) => h.kind === 'Job' && /migrator$/.test(h.metadata.name));
    if (!migrator) throw new StellaError('VERIFY_FAILED', 'smoke-helm: the release has no migrator hook Job');
    const password = randomBytes(12).toString('hex');
    const job = structuredClone(migrator);
    job.metadata = { name: `${FULL}-smoke-seed`, labels: migrator.metadata.labels };
    const c = job.spec.template.spec.containers[0];
    c.env = [...(c.env ?? []).filter((e: any) => !['STELLA_QUICKSTART_MODE', 'STELLA_ADMIN_PASSWORD'].includes(e.name)), { name: 'STELLA_QUICKSTART_MODE', value: 'true' }, { name: 'STELLA_ADMIN_PASSWORD', value: password }];
    kube.k(['-n', ns, 'delete', 'job', job.metadata.name, '--ignore-not-found', '--wait=true']);
    kube.kMust('apply the seed job', ['-n', ns, 'apply', '-f', '-'], JSON.stringify(job));
    must('the seed job', kube.k(['-n', ns, 'wait', '--for=condition=complete', `job/${job.metadata.name}`, `--timeout=${timeout}s`], undefined, (timeout + 30) * 1000));
    kube.k(['-n', ns, 'delete', 'job', job.metadata.name, '--wait=false']);
    return password;
  };

  const withApi = async <T>(f: (url: string) => Promise<T>): Promise<T> => {
    const pf = await portForward(kube, ns, `${FULL}-api`, API.http.port);
    try {
      await waitUntil('the API through port-forward', 60, async () => ((await fetch(`${pf.url}${API.http.readiness}`).catch(() => undefined))?.status === 200) || undefined);
      return await f(pf.url);
    } finally {
      pf.stop();
    }
  };
  const tokenFor = async (url: string, password: string) => {
    const r = await api(url, 'POST', '/api/v1/tokens', undefined, { username: 'admin', password });
    if (r.status !== 201 || !r.body?.token) throw new StellaError('VERIFY_FAILED', `POST /api/v1/tokens: HTTP ${r.status} ${r.text.slice(0, 300)}`);
    return String(r.body.token);
  };
  const writeCanary = async (password: string): Promise<Canary> =>
    withApi(async (url) => {
      const token = await tokenFor(url, password);
      const sbom = (await api(url, 'GET', '/api/v1/sboms', token)).body?.sboms?.[0]?.id;
      const advisory = (await api(url, 'GET', '/api/v1/advisories', token)).body?.advisories?.[0]?.id;
      if (!sbom || !advisory) throw new StellaError('VERIFY_FAILED', 'smoke-helm: the seed has no SBOM or advisory to hang the canary on');
      const component = `pkg:generic/stella-smoke-canary@${randomBytes(4).toString('hex')}`;
      const f = await api(url, 'POST', '/api/v1/findings', token, { sbomId: sbom, advisoryId: advisory, component });
      if (f.status !== 201) throw new StellaError('VERIFY_FAILED', `POST /api/v1/findings: HTTP ${f.status} ${f.text.slice(0, 300)}`);
      const e = await api(url, 'POST', '/api/v1/exports', token, { target: 'smoke', format: 'json' });
      if (e.status !== 202) throw new StellaError('VERIFY_FAILED', `POST /api/v1/exports: HTTP ${e.status} ${e.text.slice(0, 300)}`);
      const exportId = String(e.body.exportId);
      const written = await waitUntil(`export ${exportId} written by the export worker`, 120, async () => {
        const s = await api(url, 'GET', `/api/v1/exports/${exportId}`, token);
        return s.status === 200 && s.body?.status === 'written' ? s.body : undefined;
      });
      const dl = await fetch(`${url}/api/v1/exports/${exportId}/download`, { headers: { authorization: `Bearer ${token}` } });
      const sha = createHash('sha256').update(Buffer.from(await dl.arrayBuffer())).digest('hex');
      check(dl.status === 200 && sha === written.sha256, `canary export: download HTTP ${dl.status}, sha256 ${sha} vs recorded ${written.sha256}`);
      return { component, findingId: String(f.body.finding.id), exportId, exportSha256: sha };
    });
  const canaryIntact = async (what: string, password: string, c: Canary) =>
    withApi(async (url) => {
      const token = await tokenFor(url, password);
      const findings = (await api(url, 'GET', '/api/v1/findings', token)).body?.findings ?? [];
      check(findings.some((f: any) => f.component === c.component && String(f.id) === c.findingId), `${what}: the canary finding ${c.component} is gone`);
      const dl = await fetch(`${url}/api/v1/exports/${c.exportId}/download`, { headers: { authorization: `Bearer ${token}` } });
      const sha = createHash('sha256').update(Buffer.from(await dl.arrayBuffer())).digest('hex');
      check(dl.status === 200 && sha === c.exportSha256, `${what}: the canary export ${c.exportId}: HTTP ${dl.status}, sha256 ${sha} (was ${c.exportSha256})`);
      return findings.length as number;
    });

  /**
   * The migrator hook (deleted by Helm once it succeeded: its Job events remain) completed before
   * any pod the upgrade created; every new worker pod's wait-for-API init container ended with 0
   * before its main container started.
   */
  const checkUpgradeOrder = (since: number): Record<string, string> => {
    const order: Record<string, string> = {};
    const events = kube.json<{ items: any[] }>(['-n', ns, 'get', 'events', '--field-selector', `involvedObject.kind=Job,involvedObject.name=${FULL}-migrator`]).items;
    const at = (e: any) => Date.parse(e.lastTimestamp ?? e.eventTime ?? e.metadata.creationTimestamp);
    const completed = events.filter((e) => e.reason === 'Completed' && at(e) >= since - 1000).map(at);
    if (!check(completed.length > 0, 'upgrade: no Completed event of the migrator hook Job during the upgrade')) return order;
    const done = Math.max(...completed);
    order.migratorCompleted = new Date(done).toISOString();
    const pods = kube.json<{ items: any[] }>(['-n', ns, 'get', 'pods']).items.filter((p) => !p.metadata.labels?.['job-name'] && Date.parse(p.metadata.creationTimestamp) >= since - 1000);
    check(pods.length > 0, 'upgrade: it created no pods');
    for (const p of pods) check(Date.parse(p.metadata.creationTimestamp) >= done - 1000, `upgrade: pod ${p.metadata.name} was created (${p.metadata.creationTimestamp}) before the migrator hook completed (${order.migratorCompleted})`);
    const readyAt = (p: any) => Date.parse((p.status.conditions ?? []).find((c: any) => c.type === 'Ready')?.lastTransitionTime ?? '');
    const apiReady = Math.min(...pods.filter((p) => p.metadata.name.startsWith(`${FULL}-api-`)).map(readyAt));
    order.apiReady = Number.isFinite(apiReady) ? new Date(apiReady).toISOString() : 'never';
    for (const w of WORKERS) {
      for (const p of pods.filter((x) => x.metadata.name.startsWith(`${FULL}-${w}-`))) {
        const init = (p.status.initContainerStatuses ?? []).find((s: any) => s.name === 'wait-for-api');
        if (!check(!!init, `upgrade: worker pod ${p.metadata.name} has no wait-for-api init container`)) continue;
        check(init.state?.terminated?.exitCode === 0, `upgrade: ${p.metadata.name}'s wait-for-api did not end with 0`);
        const main = Date.parse(p.status.containerStatuses?.[0]?.state?.running?.startedAt ?? '');
        order[w] = Number.isFinite(main) ? new Date(main).toISOString() : 'not running';
        check(Number.isFinite(main) && main >= Date.parse(init.state?.terminated?.finishedAt ?? '') - 1000, `upgrade: ${p.metadata.name} started before its wait for the API ended`);
      }
    }
    return order;
  };

  const digestsOf = (imgs: Record<string, string>) => Object.fromEntries(Object.entries(imgs).map(([k, v]) => [k, v.split('@')[1] ?? v]));
  const expectDigests = (what: string, imgs: Record<string, string>, doc: BuildDocument) => {
    for (const i of doc.images) {
      const d = Object.entries(imgs).find(([k]) => k === `Deployment/${FULL}-${i.service}`);
      if (d) check(d[1].endsWith(`@${i.digest}`), `${what}: ${d[0]} runs ${d[1]}, expected …@${i.digest}`);
    }
  };

  const docA = await readBuildDocument(resolve(o.source, o.images));
  const docB = await readBuildDocument(resolve(o.source, o.upgradeImages));
  const deps: HostDeps[] = [];
  try {
    for (const mode of modes) {
      const m = mode === 'external' ? 'ext' : 'bundled';
      await timed(`${m}: namespace`, resetNamespace);
      let values: Record<string, unknown>;
      let extDeps: HostDeps | undefined;
      if (mode === 'external') {
        const addr = o.dependencyAddress ?? apiServerHost(kubeconfig);
        if (!addr || addr === '127.0.0.1' || addr === 'localhost') throw new StellaError('INVALID_ARGUMENT', 'smoke-helm: give --dependency-address: an address of this host that pods reach (the cluster bridge gateway; kind: the docker network gateway)');
        extDeps = await timed(`${m}: dependencies`, () => startHostDeps(addr, join(work, 'deps'), progress));
        deps.push(extDeps);
        secret('stella-postgresql', { url: extDeps.postgresUrl });
        secret('stella-redis', { url: extDeps.redisUrl });
        secret('stella-object-store', { accessKey: extDeps.objectStore.accessKey, secretKey: extDeps.objectStore.secretKey });
        values = {
          postgresql: { port: extDeps.ports.postgres },
          redis: { port: extDeps.ports.redis },
          queue: { url: extDeps.natsUrl, port: extDeps.ports.nats },
          objectStore: { endpoint: extDeps.objectStore.endpoint, pathStyle: true, existingSecret: 'stella-object-store', port: extDeps.objectStore.port, bucket: 'stella' },
        };
      } else {
        values = { bundled: { enabled: true } };
      }
      const valuesFile = join(work, `values-${mode}.yaml`);
      writeFileSync(valuesFile, yamlStringify(values));

      await timed(`${m}: install`, () => helmDo('install', ['install', RELEASE, ...helmOci(first), '-f', valuesFile]));
      const pods = checkAllReady(`${mode} install`);
      const bucketJobs: Record<string, string> = {};
      const bucketJob = (phase: string) => {
        if (mode !== 'bundled') return;
        const j = checkBucketJob(`bundled ${phase}`);
        if (j) bucketJobs[phase] = j;
      };
      bucketJob('install');
      const imagesFirst = runningImages();
      expectDigests(`${mode} install`, imagesFirst, docA);
      const password = await timed(`${m}: seed`, seedAdmin);
      const canary = await timed(`${m}: canary`, () => writeCanary(password));
      progress(`${mode}: canary finding ${canary.component}, export ${canary.exportId}`);
      const modeReport: { -readonly [K in keyof ModeReport]: ModeReport[K] } = { pods, canary: { ...canary }, images: { first: digestsOf(imagesFirst) }, ...(mode === 'bundled' ? { bucketJobs } : {}) };
      report.modes[mode] = modeReport;

      if (mode === 'bundled') {
        await timed(`${m}: statefulset pods deleted`, async () => {
          const sts = kube.json<{ items: any[] }>(['-n', ns, 'get', 'statefulsets']).items.map((s) => s.metadata.name as string);
          check(sts.length >= 4, `bundled: ${sts.length} StatefulSets (${sts.join(', ')}), expected PostgreSQL, Redis, the object store and NATS`);
          const before = Object.fromEntries(kube.json<{ items: any[] }>(['-n', ns, 'get', 'pods']).items.map((p) => [p.metadata.name, p.metadata.uid]));
          kube.kMust('delete statefulset pods', ['-n', ns, 'delete', 'pods', ...sts.map((s) => `${s}-0`), '--wait=true']);
          for (const s of sts) must(`rollout of ${s}`, kube.k(['-n', ns, 'rollout', 'status', `statefulset/${s}`, `--timeout=${timeout}s`], undefined, (timeout + 30) * 1000));
          await waitUntil('every pod Ready after the StatefulSet pods were deleted', timeout, () => Object.values(podsReady()).every((s) => s === 'Ready') || undefined);
          const after = Object.fromEntries(kube.json<{ items: any[] }>(['-n', ns, 'get', 'pods']).items.map((p) => [p.metadata.name, p.metadata.uid]));
          for (const s of sts) check(after[`${s}-0`] !== undefined && after[`${s}-0`] !== before[`${s}-0`], `bundled: pod ${s}-0 was not recreated`);
          const pvcs = kube.json<{ items: any[] }>(['-n', ns, 'get', 'pvc']).items;
          check(pvcs.length >= 4 && pvcs.every((p) => p.status.phase === 'Bound'), `bundled: PVCs ${pvcs.map((p) => `${p.metadata.name}=${p.status.phase}`).join(', ')}`);
        });
        await timed(`${m}: canary after pod deletion`, () => canaryIntact('bundled, after the StatefulSet pods were deleted', password, canary));
      }

      const upgradeStart = Date.now();
      await timed(`${m}: upgrade`, () => helmDo('upgrade', ['upgrade', RELEASE, ...helmOci(second), '-f', valuesFile]));
      checkAllReady(`${mode} upgrade`);
      bucketJob('upgrade');
      const imagesSecond = runningImages();
      expectDigests(`${mode} upgrade`, imagesSecond, docB);
      modeReport.images = { ...modeReport.images, second: digestsOf(imagesSecond) };
      modeReport.order = checkUpgradeOrder(upgradeStart);
      if (extDeps) {
        const want = extDeps.psql("SELECT max(version) FROM stella_schema_migrations WHERE component = 'api'").trim();
        modeReport.canary = { ...modeReport.canary, apiSchemaAfterUpgrade: Number(want) };
        check(Number(want) >= 4, `upgrade: the schema is at api#${want}; the second release's migration did not run`);
      }
      await timed(`${m}: canary after upgrade`, () => canaryIntact(`${mode} upgrade`, password, canary));

      await timed(`${m}: rollback`, () => helmDo('rollback', ['rollback', RELEASE, '1']));
      checkAllReady(`${mode} rollback`);
      bucketJob('rollback');
      const imagesBack = runningImages();
      expectDigests(`${mode} rollback`, imagesBack, docA);
      modeReport.images = { ...modeReport.images, rolledBack: digestsOf(imagesBack) };
      await timed(`${m}: canary after rollback`, () => canaryIntact(`${mode} rollback`, password, canary));

      if (!o.keep) {
        await timed(`${m}: uninstall`, () => {
          kube.helm(['uninstall', RELEASE, '-n', ns, '--wait', '--timeout', '300s']);
          kube.k(['delete', 'namespace', ns, '--wait=true', '--timeout=300s'], undefined, 330_000);
          // Bundled PVs stay Released (their data is not wiped by anyone): each bundled run takes fresh ones.
        });
      }
      extDeps?.stop();
    }
  } finally {
    for (const d of deps) d.stop();
    if (!o.keep) rmSync(work, { recursive: true, force: true });
  }
  return report;
}

type A = Readonly<Record<string, string | boolean | number | undefined>>;

/** `stella-release smoke-helm …`: the report as JSON; fails listing every check that did not hold. */
export async function smokeHelmFn(a: A, io: { readonly source: string; progress(line: string): void }): Promise<string> {
  const need = (k: string, what: string) => {
    if (a[k] === undefined || a[k] === '') throw new StellaError('INVALID_ARGUMENT', `${flag(k)} is required (${what})`);
    return String(a[k]);
  };
  const kubeconfig = a.kubeconfig ? String(a.kubeconfig) : process.env.KUBECONFIG;
  if (!kubeconfig) throw new StellaError('INVALID_ARGUMENT', '--kubeconfig is required (or KUBECONFIG): the cluster to install into, e.g. the one `bash scripts/cluster.sh up` prints');
  const mode = a.mode === undefined ? 'both' : String(a.mode);
  if (!['external', 'bundled', 'both'].includes(mode)) throw new StellaError('INVALID_ARGUMENT', `--mode ${mode}: expected external, bundled or both`);
  const report = await smokeHelm({
    source: io.source,
    kubeconfig,
    images: need('images', 'the first release\'s build document'),
    upgradeImages: need('upgradeImages', 'the second release\'s build document: other digests, one more migration'),
    ...(a.version ? { version: String(a.version) } : {}),
    ...(a.upgradeVersion ? { upgradeVersion: String(a.upgradeVersion) } : {}),
    ...(a.supportLock ? { supportLock: String(a.supportLock) } : {}),
    ...(a.registry ? { registry: String(a.registry) } : {}),
    ...(a.namespace ? { namespace: String(a.namespace) } : {}),
    ...(a.releaseNamespace ? { releaseNamespace: String(a.releaseNamespace) } : {}),
    ...(a.dependencyAddress ? { dependencyAddress: String(a.dependencyAddress) } : {}),
    ...(typeof a.timeout === 'number' ? { timeoutSeconds: a.timeout } : {}),
    modes: mode === 'both' ? ['external', 'bundled'] : [mode as SmokeMode],
    keep: a.keep === true,
    progress: io.progress,
  });
  const text = JSON.stringify(report, null, 2);
  if (report.failures.length) throw new StellaError('VERIFY_FAILED', `smoke-helm: ${report.failures.length} check(s) failed:\n  - ${report.failures.join('\n  - ')}\n${text}`);
  return text;
}
