/**
 * Throwaway support servers for service tests, each on a free loopback port with
 * its data in a temp dir: PostgreSQL 15 (initdb + pg_ctl, run as the `postgres`
 * user because PostgreSQL refuses root), Redis and NATS (Debian packages, installed
 * by scripts/host-setup.sh). Every wait is bounded; `stop()` removes everything.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort, waitFor } from './net.ts';
import { findTool } from './tools.ts';

const run = promisify(execFile);

// Found the one way every test finds tools (test/helpers/tools.ts); the fallbacks are only names for messages.
const PG_CTL = findTool('pg_ctl');
export const PG_BIN = PG_CTL ? dirname(PG_CTL) : '/usr/lib/postgresql/15/bin';
export const REDIS_BIN = findTool('redis-server') ?? 'redis-server';
export const NATS_BIN = findTool('nats-server') ?? 'nats-server';

export function postgresAvailable(): boolean {
  return PG_CTL !== undefined && existsSync(join(PG_BIN, 'initdb'));
}
export function redisAvailable(): boolean {
  return findTool('redis-server') !== undefined;
}
export function natsAvailable(): boolean {
  return findTool('nats-server') !== undefined;
}

export interface TestPostgres {
  /** postgres://stella:<password>@127.0.0.1:<port>/stella */
  readonly url: string;
  readonly port: number;
  readonly user: string;
  readonly password: string;
  readonly database: string;
  /** A URL with another password (for "the database rejects the password" cases). */
  urlWithPassword(password: string): string;
  /** Starts the cluster again after stop() (same data, same port). */
  start(): Promise<void>;
  /** Fast shutdown; the data stays until destroy(). */
  stop(): Promise<void>;
  /** Stops and removes the data directory. */
  destroy(): Promise<void>;
}

function tcpOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.setTimeout(1000, () => {
      s.destroy();
      resolve(false);
    });
  });
}

/** A PostgreSQL 15 cluster with a password-protected `stella` superuser and database. */
export async function startPostgres(opts: { password?: string } = {}): Promise<TestPostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'stella-pg-'));
  const data = join(dir, 'data');
  const port = await freePort();
  const user = 'stella';
  const password = opts.password ?? `pw-${Math.random().toString(36).slice(2)}`;
  const asRoot = userInfo().uid === 0;
  const as = (cmd: string, args: string[]) => (asRoot ? run('runuser', ['-u', 'postgres', '--', cmd, ...args], { timeout: 60_000 }) : run(cmd, args, { timeout: 60_000 }));
  const pwfile = join(dir, 'pw');
  writeFileSync(pwfile, `${password}\n`);
  chmodSync(pwfile, 0o600);
  if (asRoot) {
    const { uid, gid } = await run('id', ['-u', 'postgres']).then(async (u) => ({ uid: Number(u.stdout.trim()), gid: Number((await run('id', ['-g', 'postgres'])).stdout.trim()) }));
    chownSync(dir, uid, gid);
    chownSync(pwfile, uid, gid);
  }
  await as(join(PG_BIN, 'initdb'), ['-D', data, '-U', user, `--pwfile=${pwfile}`, '--auth-host=scram-sha-256', '--auth-local=trust', '-E', 'UTF8', '--no-sync']);
  const logFile = join(dir, 'server.log');
  const start = async () => {
    await as(join(PG_BIN, 'pg_ctl'), ['-D', data, '-l', logFile, '-w', '-t', '30', '-o', `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c full_page_writes=off -c synchronous_commit=off`, 'start']);
  };
  const stop = async () => {
    await as(join(PG_BIN, 'pg_ctl'), ['-D', data, '-m', 'fast', '-w', '-t', '30', 'stop']).catch(() => undefined);
  };
  await start();
  const base = `postgres://${user}:${encodeURIComponent(password)}@127.0.0.1:${port}`;
  await waitFor(`postgres on 127.0.0.1:${port}`, async () => {
    const c = new pg.Client({ connectionString: `${base}/postgres` });
    try {
      await c.connect();
      await c.query('SELECT 1');
      return true;
    } finally {
      await c.end().catch(() => undefined);
    }
  }, 30_000, 200);
  const c = new pg.Client({ connectionString: `${base}/postgres` });
  await c.connect();
  await c.query('CREATE DATABASE stella');
  await c.end();
  return {
    url: `${base}/stella`,
    port,
    user,
    password,
    database: 'stella',
    urlWithPassword: (pw: string) => `postgres://${user}:${encodeURIComponent(pw)}@127.0.0.1:${port}/stella`,
    start,
    stop,
    async destroy() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface TestProcessServer {
  readonly url: string;
  readonly port: number;
  stop(): Promise<void>;
}

async function spawnServer(what: string, bin: string, args: string[], port: number, dir: string, url: string): Promise<TestProcessServer> {
  const proc: ChildProcess = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'], cwd: dir });
  let stderr = '';
  proc.stderr?.on('data', (d) => (stderr = (stderr + String(d)).slice(-4000)));
  const stop = async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(`${what} on 127.0.0.1:${port}`, () => tcpOpen(port), 15_000, 100);
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}\n${stderr}`);
  }
  return { url, port, stop };
}

/** redis-server without persistence; `password` turns on requirepass. */
export async function startRedis(opts: { password?: string } = {}): Promise<TestProcessServer> {
  const dir = mkdtempSync(join(tmpdir(), 'stella-redis-'));
  const port = await freePort();
  const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir];
  if (opts.password) args.push('--requirepass', opts.password);
  const auth = opts.password ? `:${encodeURIComponent(opts.password)}@` : '';
  return spawnServer('redis', REDIS_BIN, args, port, dir, `redis://${auth}127.0.0.1:${port}/0`);
}

/**
 * nats-server on a loopback port (a given one, to bring a dependency up late), with
 * JetStream (its store in the temp dir) unless `jetstream: false` (core NATS only).
 */
export async function startNats(opts: { port?: number; jetstream?: boolean } = {}): Promise<TestProcessServer> {
  const dir = mkdtempSync(join(tmpdir(), 'stella-nats-'));
  const port = opts.port ?? (await freePort());
  const js = opts.jetstream === false ? [] : ['-js', '-sd', join(dir, 'jetstream')];
  return spawnServer('nats', NATS_BIN, ['-a', '127.0.0.1', '-p', String(port), ...js], port, dir, `nats://127.0.0.1:${port}`);
}
