/**
 * Versioned, idempotent PostgreSQL migrations. Each component (api, conseiller, …)
 * owns its tables and its numbered migrations; applied versions are recorded in
 * `stella_schema_migrations` with the SHA-256 of their SQL, so a re-run applies
 * nothing and an edited, already-applied migration is refused. A session-level
 * advisory lock serializes concurrent runners (replicas, the chart's Job).
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import type { Logger } from '../runtime/log.ts';

export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export interface MigrationResult {
  readonly applied: number[];
  readonly current: number;
}

const LOCK_KEY = 0x5374656c; // "Stel"

export async function migrate(pool: pg.Pool, component: string, migrations: readonly Migration[], log: Logger): Promise<MigrationResult> {
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [LOCK_KEY]);
    try {
      await client.query(`CREATE TABLE IF NOT EXISTS stella_schema_migrations (
        component text NOT NULL,
        version integer NOT NULL,
        name text NOT NULL,
        sha256 text NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT now(),
        PRIMARY KEY (component, version))`);
      const done = await client.query<{ version: number; sha256: string; name: string }>('SELECT version, sha256, name FROM stella_schema_migrations WHERE component = $1', [component]);
      const byVersion = new Map(done.rows.map((r) => [r.version, r]));
      const applied: number[] = [];
      for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
        const sha = createHash('sha256').update(m.sql).digest('hex');
        const prior = byVersion.get(m.version);
        if (prior) {
          if (prior.sha256 !== sha) {
            throw new Error(`migration ${component}#${m.version} (${m.name}) was changed after it was applied: expected sha256 ${prior.sha256}, got ${sha}`);
          }
          continue;
        }
        await client.query('BEGIN');
        try {
          await client.query(m.sql);
          await client.query('INSERT INTO stella_schema_migrations (component, version, name, sha256) VALUES ($1, $2, $3, $4)', [component, m.version, m.name, sha]);
          await client.query('COMMIT');
        } catch (e) {
          await client.query('ROLLBACK');
          throw new Error(`migration ${component}#${m.version} (${m.name}) failed: ${(e as Error).message}`, { cause: e });
        }
        applied.push(m.version);
        log.info(`applied migration ${component}#${m.version} ${m.name}`, { component, version: m.version });
      }
      const current = Math.max(0, ...migrations.map((m) => m.version));
      if (!applied.length) log.info(`migrations of ${component} up to date`, { component, version: current });
      return { applied, current };
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [LOCK_KEY]).catch(() => undefined);
    }
  } finally {
    client.release();
  }
}

/** The pool, or a clear error when STELLA_DATABASE_URL is not set. */
export function requirePool(pool: pg.Pool | undefined, service: string): pg.Pool {
  if (!pool) throw new Error(`${service} needs PostgreSQL: set STELLA_DATABASE_URL (or STELLA_DATABASE_URL_FILE)`);
  return pool;
}
