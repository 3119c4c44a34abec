/**
 * The configuration reference marks required keys from `startupRequirements`
 * (ci/src/generate/docs.ts). This starts every service from its source, on the
 * pinned Node 24, without any configuration, and fails when the keys a service
 * refuses to start without differ from that list (and so from the docs).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { catalog } from '../../ci/src/catalog/index.ts';
import { CONFIG_EXIT_CODE, startupRequirements } from '../../ci/src/generate/docs.ts';
import { ROOT } from './pages.ts';

const NODE = join(ROOT, 'node_modules', '.bin', 'node');
const emptyConfigDir = mkdtempSync(join(tmpdir(), 'stella-conf-'));
afterAll(() => rmSync(emptyConfigDir, { recursive: true, force: true }));

/** Runs a service until it exits or says it listens; returns its exit code (undefined: it started) and its log. */
function start(service: string, env: Record<string, string>): Promise<{ code: number | null | undefined; log: string }> {
  return new Promise((resolve, reject) => {
    const port = String(20000 + Math.floor(Math.random() * 20000));
    const child = spawn(NODE, [join(ROOT, 'services', 'src', service, 'main.ts')], {
      env: { PATH: process.env.PATH ?? '', STELLA_CONFIG_DIR: emptyConfigDir, STELLA_HTTP_PORT: port, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    let started = false;
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const onData = (d: Buffer) => {
      log += String(d);
      if (!started && /listening on/.test(log)) {
        started = true;
        child.kill('SIGKILL');
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code: started ? undefined : code, log });
    });
  });
}

const requiredKeysIn = (log: string) => [...log.matchAll(/(STELLA_[A-Z_]+) is required/g)].map((m) => m[1]!).sort();

/** Values that satisfy a requirement without reaching anything (validation runs before any connection). */
const DUMMY: Record<string, string> = {
  STELLA_DATABASE_URL: 'postgres://stella:x@127.0.0.1:1/stella',
  STELLA_ADMIN_PASSWORD: 'not-a-real-password',
  STELLA_AI_MODEL_ENDPOINT: 'http://127.0.0.1:1/v1',
};

describe('required keys in the configuration reference', () => {
  for (const s of catalog.services) {
    it(`${s.name}: without configuration it refuses to start exactly for the keys the docs mark required`, async () => {
      const want = startupRequirements.filter((r) => !r.when && r.services.includes(s.name)).map((r) => r.key).sort();
      const r = await start(s.name, {});
      expect(requiredKeysIn(r.log), r.log.slice(-2000)).toEqual(want);
      expect(r.code, r.log.slice(-2000)).toBe(want.length ? CONFIG_EXIT_CODE : undefined);
      for (const req of startupRequirements.filter((x) => !x.when && x.services.includes(s.name))) {
        expect(r.log).toContain(req.message.replace('<service>', s.name));
      }
    }, 60_000);
  }

  for (const req of startupRequirements.filter((r) => r.when)) {
    for (const service of req.services) {
      it(`${service}: ${req.key} is required when ${Object.entries(req.when!).map(([k, v]) => `${k}=${v}`).join(', ')}`, async () => {
        const others = Object.fromEntries(startupRequirements.filter((x) => !x.when && x.services.includes(service)).map((x) => [x.key, DUMMY[x.key]!]));
        const r = await start(service, { ...others, ...req.when });
        expect(r.code, r.log.slice(-2000)).toBe(CONFIG_EXIT_CODE);
        expect(r.log).toContain(req.message);
        expect(DUMMY[req.key]).toBeDefined();
        const ok = await start(service, { ...others, ...req.when, [req.key]: DUMMY[req.key]! });
        expect(requiredKeysIn(ok.log), ok.log.slice(-2000)).toEqual([]);
      }, 60_000);
    }
  }
});
