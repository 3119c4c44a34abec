/**
 * Runs built services as real processes (`node_modules/.bin/node <dir>/main.js`) with a
 * clean environment: only PATH, the given STELLA_* keys, a free STELLA_HTTP_PORT and an
 * empty STELLA_CONFIG_DIR (so the host's /etc/stella never leaks in).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { buildServices, type BuiltService } from '../../services/build.ts';
import { freePort, waitFor } from '../helpers/net.ts';

export const NODE = resolve('node_modules/.bin/node');
export const VERSION = 'v9.8.7-rc.1';
export const COMMIT = 'c0ffee0123456789abcdef0123456789abcdef01';
export const BUILD_DATE = '2026-02-03T04:05:06Z';

export interface Built {
  readonly root: string;
  readonly services: Map<string, BuiltService>;
  cleanup(): void;
}

export async function buildInto(services: readonly string[]): Promise<Built> {
  const root = mkdtempSync(join(tmpdir(), 'stella-services-'));
  const built = await buildServices({ outDir: join(root, 'app'), version: VERSION, gitCommit: COMMIT, buildDate: BUILD_DATE, services });
  return { root, services: new Map(built.map((b) => [b.service, b])), cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

export interface RunningService {
  readonly proc: ChildProcess;
  readonly port: number;
  readonly url: string;
  readonly configDir: string;
  stdout(): string;
  stderr(): string;
  /** Parsed JSON log lines of stdout (throws on a line that is not JSON). */
  logs(): Record<string, unknown>[];
  /** Resolves with the exit code (or the signal name). */
  readonly exited: Promise<number | string>;
  get(path: string, init?: RequestInit): Promise<{ status: number; body: string; json: () => unknown }>;
  /** SIGTERM, then SIGKILL after `ms`; resolves with the exit code. */
  stop(ms?: number): Promise<number | string>;
}

export interface StartOptions {
  readonly env?: Record<string, string | undefined>;
  readonly args?: readonly string[];
  readonly port?: number;
  /** Wait for liveness 200 before returning (default true). */
  readonly waitLive?: boolean;
}

export async function startService(dir: string, opts: StartOptions = {}): Promise<RunningService> {
  const port = opts.port ?? (await freePort());
  const configDir = mkdtempSync(join(tmpdir(), 'stella-config-'));
  const env: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin', STELLA_HTTP_PORT: String(port), STELLA_CONFIG_DIR: configDir };
  for (const [k, v] of Object.entries(opts.env ?? {})) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  const proc = spawn(NODE, [join(dir, 'main.js'), ...(opts.args ?? [])], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d) => (out += String(d)));
  proc.stderr!.on('data', (d) => (err += String(d)));
  const exited = new Promise<number | string>((r) => proc.once('close', (code, signal) => r(code ?? signal ?? 'unknown')));
  void exited.then(() => rmSync(configDir, { recursive: true, force: true }));
  const url = `http://127.0.0.1:${port}`;
  const svc: RunningService = {
    proc,
    port,
    url,
    configDir,
    stdout: () => out,
    stderr: () => err,
    logs: () =>
      out
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>),
    exited,
    async get(path, init) {
      const r = await fetch(url + path, { ...init, signal: AbortSignal.timeout(10_000) });
      const body = await r.text();
      return { status: r.status, body, json: () => JSON.parse(body) as unknown };
    },
    async stop(ms = 15_000) {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const t = setTimeout(() => proc.kill('SIGKILL'), ms);
        const code = await exited;
        clearTimeout(t);
        return code;
      }
      return exited;
    },
  };
  if (opts.waitLive !== false) {
    try {
      await waitFor(`liveness of ${dir}`, async () => {
        if (proc.exitCode !== null) throw new Error(`exited with ${proc.exitCode}: ${out}${err}`);
        return (await fetch(`${url}/health/liveness`)).status === 200;
      }, 20_000, 100);
    } catch (e) {
      proc.kill('SIGKILL');
      throw e;
    }
  }
  return svc;
}

/** Polls readiness until it answers `status`. */
export async function waitReadiness(s: RunningService, status: number, timeoutMs = 20_000, also: (body: unknown) => boolean = () => true): Promise<unknown> {
  let last: unknown;
  await waitFor(`readiness ${status} of ${s.url}`, async () => {
    const r = await s.get('/health/readiness');
    last = r.json();
    return r.status === status && also(last);
  }, timeoutMs, 150).catch((e: Error) => {
    throw new Error(`${e.message}; last answer ${JSON.stringify(last)}`);
  });
  return last;
}

/** Runs a service to completion (for start-up failures and one-shot commands). */
export async function runToExit(dir: string, opts: StartOptions & { timeoutMs?: number } = {}): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const s = await startService(dir, { ...opts, waitLive: false });
  const t = setTimeout(() => s.proc.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  const code = await s.exited;
  clearTimeout(t);
  return { code, stdout: s.stdout(), stderr: s.stderr() };
}
