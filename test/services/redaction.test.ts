/**
 * Redaction on a real service process (the built `api`, PostgreSQL unreachable at
 * 127.0.0.9): with a one-letter password every log line and the readiness body keep
 * their words (nothing like `"service":"a[REDACTED]i"`), with a long password it appears
 * nowhere, and a configuration error about a credentialed URL never echoes the password.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { waitFor } from '../helpers/net.ts';
import { buildInto, runToExit, startService, waitReadiness, type Built, type RunningService } from './harness.ts';

const LONG = 'CANARY-db-pass-71c0e4';
const QUEUE_CANARY = 'CANARY-queue-pass-2d9b';

let built: Built;
const dir = () => built.services.get('api')!.dir;

beforeAll(async () => {
  built = await buildInto(['api']);
});
afterAll(() => built?.cleanup());

/** Nothing listens on 127.0.0.9 (connection refused at once). */
const downEnv = (databaseUrl: string) => ({
  STELLA_DATABASE_URL: databaseUrl,
  STELLA_REDIS_URL: 'redis://127.0.0.9:6379/0',
  STELLA_QUEUE_URL: 'nats://127.0.0.9:4222',
  STELLA_OBJECT_STORE_ENDPOINT: 'http://127.0.0.9:9000',
  STELLA_READINESS_TIMEOUT_MS: '1000',
});

type Check = { name: string; ok: boolean; error?: string };

/** Runs api with the database down until start-up failed twice; returns its readiness body, logs and output. */
/** `body`: the readiness and /config answers. */
async function runDown(databaseUrl: string): Promise<{ svc: RunningService; body: string; checks: Check[] }> {
  const svc = await startService(dir(), { env: downEnv(databaseUrl) });
  try {
    await waitFor('two failed start-up attempts', async () => svc.logs().filter((l) => l.msg === 'start-up work failed; retrying').length >= 2, 20_000, 100);
    const ready = (await waitReadiness(svc, 503, 20_000, (b) => JSON.stringify(b).includes('attempt 2'))) as { checks: Check[] };
    const r = await svc.get('/health/readiness');
    const cfg = await svc.get('/config');
    expect(cfg.status).toBe(200);
    return { svc, body: r.body + cfg.body, checks: ready.checks };
  } finally {
    await svc.stop();
  }
}

describe('api with PostgreSQL down', () => {
  it('a one-letter password (postgres://u:p@…): every log line and the readiness body keep their words; "u:p@" appears nowhere', async () => {
    const { svc, body, checks } = await runDown('postgres://u:p@127.0.0.9:5432/x');
    const lines = svc.logs();
    expect(lines.length).toBeGreaterThan(2);
    for (const l of lines) {
      expect(l.service).toBe('api');
      expect(l.version).toBe('v9.8.7-rc.1');
      expect(String(l.msg)).not.toContain('[REDACTED]');
    }
    const failed = lines.filter((l) => l.msg === 'start-up work failed; retrying');
    expect(failed[0]).toMatchObject({ level: 'warn', fields: { attempt: 1 } });
    expect(JSON.stringify(failed[0])).toContain('ECONNREFUSED 127.0.0.9:5432');
    const listening = lines.find((l) => String(l.msg).startsWith('api listening on'))!;
    expect(listening).toBeDefined();
    const config = (listening.fields as { config: Record<string, string> }).config;
    expect(config.STELLA_DATABASE_URL).toBe('[REDACTED] (env)');
    expect(config.STELLA_TOKEN_TTL).toBe('1h (default)');
    expect(config.STELLA_QUEUE_URL).toBe('nats://127.0.0.9:4222 (env)');

    const startup = checks.find((c) => c.name === 'startup')!;
    expect(startup.ok).toBe(false);
    expect(startup.error).toMatch(/^start-up work failed \(attempt \d+, retrying\): .*ECONNREFUSED 127\.0\.0\.9:5432/);
    for (const w of ['start-up', 'work', 'failed', 'attempt', 'retrying']) expect(startup.error!.split(/[^A-Za-z-]+/)).toContain(w);
    const pgCheck = checks.find((c) => c.name === 'postgres')!;
    expect(pgCheck).toMatchObject({ ok: false });
    expect(pgCheck.error).toContain('127.0.0.9:5432');
    expect(body).toContain('"status":"not-ready"');
    expect(body).toContain('"service":"api"');
    expect(body).not.toContain('[REDACTED]');

    const all = svc.stdout() + svc.stderr() + body;
    expect(all).not.toContain('u:p@');
    expect(all).not.toContain('postgres://u:');
    expect(svc.stderr()).toBe('');
  });

  it('a long password appears nowhere: logs, readiness, /config', async () => {
    const { svc, body } = await runDown(`postgres://stella:${LONG}@127.0.0.9:5432/stella`);
    const all = svc.stdout() + svc.stderr() + body;
    expect(all).not.toContain(LONG);
    expect(all).not.toContain(encodeURIComponent(LONG));
    for (const l of svc.logs()) expect(l.service).toBe('api');
    expect(svc.stdout()).toContain('start-up work failed; retrying');
  });
});

describe('configuration errors', () => {
  it('a malformed credentialed URL is named without its password (short or long), exit 2', async () => {
    for (const pw of ['p', QUEUE_CANARY]) {
      const r = await runToExit(dir(), { env: { ...downEnv('postgres://u:p@127.0.0.9:5432/x'), STELLA_QUEUE_URL: `nats://u:${pw}@queue:notaport` } });
      expect(r.code).toBe(2);
      const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { service: string; msg: string });
      expect(lines).toHaveLength(1);
      expect(lines[0]!.service).toBe('api');
      expect(lines[0]!.msg).toBe('config: STELLA_QUEUE_URL="nats://u:[REDACTED]@queue:notaport" is not a valid URL (expected scheme://host[:port][/path])');
      expect(r.stdout + r.stderr).not.toContain(`u:${pw}@`);
      if (pw.length > 1) expect(r.stdout + r.stderr).not.toContain(pw);
    }
  });

  it('a malformed secret URL is hidden whole, and its password is not echoed by a later problem either', async () => {
    const r = await runToExit(dir(), { env: { ...downEnv(`postgres://u:${LONG}@db:notaport/x`), STELLA_TOKEN_TTL: `soon ${LONG}` } });
    expect(r.code).toBe(2);
    expect(r.stdout).toContain('STELLA_DATABASE_URL (secret, value hidden) is not a valid URL');
    expect(r.stdout).toContain('STELLA_TOKEN_TTL=');
    expect(r.stdout).toContain('is not a duration');
    expect(r.stdout + r.stderr).not.toContain(LONG);
  });
});
