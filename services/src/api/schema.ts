/** The API's versioned migrations and its quickstart seed (applied once, idempotent). */
import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type pg from 'pg';
import type { Logger } from '../runtime/log.ts';
import type { Migration } from '../shared/migrate.ts';

const scrypt = promisify(scryptCb) as (password: string, salt: Buffer, keylen: number, opts: { N: number; r: number; p: number }) => Promise<Buffer>;

export const API_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'tenants, users and tokens',
    sql: `
CREATE TABLE tenants (id text PRIMARY KEY, name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE users (
  id bigserial PRIMARY KEY,
  tenant_id text NOT NULL REFERENCES tenants (id),
  username text NOT NULL UNIQUE,
  password_hash text NOT NULL,
  role text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE api_tokens (
  id bigserial PRIMARY KEY,
  user_id bigint NOT NULL REFERENCES users (id),
  token_sha256 text NOT NULL UNIQUE,
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL);`,
  },
  {
    version: 2,
    name: 'sboms, advisories, vex, policies, task packs, findings',
    sql: `
CREATE TABLE sboms (id text PRIMARY KEY, tenant_id text NOT NULL REFERENCES tenants (id), name text NOT NULL, format text NOT NULL, document jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
CREATE TABLE advisories (id text PRIMARY KEY, severity text NOT NULL, summary text NOT NULL, document jsonb NOT NULL);
CREATE TABLE vex_statements (id text PRIMARY KEY, vulnerability text NOT NULL, product text NOT NULL, status text NOT NULL, document jsonb NOT NULL);
CREATE TABLE policies (version text PRIMARY KEY, name text NOT NULL, document jsonb NOT NULL);
CREATE TABLE task_packs (id text PRIMARY KEY, name text NOT NULL, version text NOT NULL, document jsonb NOT NULL);
CREATE TABLE findings (
  id bigserial PRIMARY KEY,
  tenant_id text NOT NULL REFERENCES tenants (id),
  sbom_id text NOT NULL REFERENCES sboms (id),
  advisory_id text NOT NULL REFERENCES advisories (id),
  component text NOT NULL,
  severity text NOT NULL,
  vex_status text,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, sbom_id, advisory_id, component));`,
  },
  {
    version: 3,
    name: 'welcome wizard state and seed runs',
    sql: `
CREATE TABLE welcome_steps (tenant_id text NOT NULL REFERENCES tenants (id), step text NOT NULL, done_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tenant_id, step));
CREATE TABLE stella_seed_runs (name text PRIMARY KEY, sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());`,
  },
];

/** `scrypt$N$r$p$salt$hash` (base64), N=16384, r=8, p=1, 64-byte key. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, 64, { N: 16384, r: 8, p: 1 });
  return `scrypt$16384$8$1$${salt.toString('base64')}$${key.toString('base64')}`;
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const [alg, n, r, p, salt, hash] = stored.split('$');
  if (alg !== 'scrypt' || !salt || !hash) return false;
  const expected = Buffer.from(hash, 'base64');
  const key = await scrypt(password, Buffer.from(salt, 'base64'), expected.length, { N: Number(n), r: Number(r), p: Number(p) });
  return key.length === expected.length && timingSafeEqual(key, expected);
}

export const TENANT = 'demo';

interface SeedFiles {
  tenant: { id: string; name: string; admin: { username: string; role: string } };
  sboms: { id: string; name: string; format: string; document: unknown }[];
  advisories: { id: string; severity: string; summary: string }[];
  vex: { id: string; vulnerability: string; product: string; status: string }[];
  policy: { version: string; name: string };
  pack: { id: string; name: string; version: string };
}

function readSeed(dir: string): { files: SeedFiles; sha256: string } {
  const names = ['tenant.json', 'sboms.json', 'advisories.json', 'vex.json', 'policy-baseline.json', 'task-pack.json'];
  const h = createHash('sha256');
  const raw = names.map((n) => {
    const text = readFileSync(join(dir, n), 'utf8');
    h.update(`${n}\0${text}\0`);
    return JSON.parse(text) as unknown;
  });
  return {
    files: { tenant: raw[0], sboms: raw[1], advisories: raw[2], vex: raw[3], policy: raw[4], pack: raw[5] } as SeedFiles,
    sha256: h.digest('hex'),
  };
}

/** Applies the quickstart seed once (marker row `stella_seed_runs.quickstart`); later runs change nothing. */
export async function seed(pool: pg.Pool, seedDir: string, adminPassword: string, log: Logger): Promise<{ applied: boolean }> {
  const { files, sha256 } = readSeed(seedDir);
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const marker = await client.query('INSERT INTO stella_seed_runs (name, sha256) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING RETURNING name', ['quickstart', sha256]);
    if (!marker.rows.length) {
      await client.query('ROLLBACK');
      log.info('quickstart seed already applied; nothing changed');
      return { applied: false };
    }
    const t = files.tenant;
    await client.query('INSERT INTO tenants (id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING', [t.id, t.name]);
    await client.query('INSERT INTO users (tenant_id, username, password_hash, role) VALUES ($1, $2, $3, $4) ON CONFLICT (username) DO NOTHING', [t.id, t.admin.username, await hashPassword(adminPassword), t.admin.role]);
    for (const s of files.sboms) await client.query('INSERT INTO sboms (id, tenant_id, name, format, document) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING', [s.id, t.id, s.name, s.format, JSON.stringify(s.document)]);
    for (const a of files.advisories) await client.query('INSERT INTO advisories (id, severity, summary, document) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING', [a.id, a.severity, a.summary, JSON.stringify(a)]);
    for (const v of files.vex) await client.query('INSERT INTO vex_statements (id, vulnerability, product, status, document) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING', [v.id, v.vulnerability, v.product, v.status, JSON.stringify(v)]);
    await client.query('INSERT INTO policies (version, name, document) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [files.policy.version, files.policy.name, JSON.stringify(files.policy)]);
    await client.query('INSERT INTO task_packs (id, name, version, document) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING', [files.pack.id, files.pack.name, files.pack.version, JSON.stringify(files.pack)]);
    await client.query('COMMIT');
    log.info('quickstart seed applied', { tenant: t.id, sboms: files.sboms.length, advisories: files.advisories.length, vex: files.vex.length, sha256 });
    return { applied: true };
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    client.release();
  }
}
