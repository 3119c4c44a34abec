/**
 * The configuration loader as a pure function (injected env and files): precedence,
 * `_FILE` and config-directory sources, type validation, locked keys, unknown keys,
 * Kubernetes service-link variables, and messages that never show a secret.
 */
import { describe, expect, it } from 'vitest';
import { configFor, serviceByName } from '../../ci/src/catalog/config.ts';
import { ConfigError, durationMs, isServiceLinkVariable, loadConfig } from '../../services/src/runtime/config.ts';
import { Logger, Redactor } from '../../services/src/runtime/log.ts';

const files = (m: Record<string, string>) => (p: string) => {
  if (p in m) return m[p]!;
  throw Object.assign(new Error(`ENOENT: ${p}`), { code: 'ENOENT' });
};
const problems = (fn: () => unknown): readonly string[] => {
  try {
    fn();
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  throw new Error('expected a ConfigError');
};

describe('loadConfig', () => {
  it('reads exactly the catalog keys, with defaults', () => {
    const c = loadConfig('conseiller', { env: {}, readFile: files({}) });
    expect([...c.entries.keys()].sort()).toEqual(configFor(serviceByName('conseiller')).map((k) => k.key).sort());
    expect(c.int('STELLA_HTTP_PORT')).toBe(8084);
    expect(c.bool('STELLA_DISABLE_MERGE')).toBe(true);
    expect(c.list('STELLA_FEED_SOURCES')).toEqual([]);
    expect(c.ms('STELLA_FEED_POLL_INTERVAL')).toBe(3_600_000);
    expect(c.entries.get('STELLA_LOG_LEVEL')!.source).toBe('default');
  });

  it('takes env, then KEY_FILE, then the config directory, then the default', () => {
    const read = files({ '/run/secrets/level': 'warn\n', '/etc/stella/STELLA_LOG_LEVEL': 'error\n', '/cfg/STELLA_LOG_LEVEL': 'debug' });
    expect(loadConfig('ai', { env: { STELLA_LOG_LEVEL: 'info', STELLA_LOG_LEVEL_FILE: '/run/secrets/level' }, readFile: read }).str('STELLA_LOG_LEVEL')).toBe('info');
    expect(loadConfig('ai', { env: { STELLA_LOG_LEVEL_FILE: '/run/secrets/level' }, readFile: read }).str('STELLA_LOG_LEVEL')).toBe('warn');
    expect(loadConfig('ai', { env: {}, readFile: read }).entries.get('STELLA_LOG_LEVEL')).toMatchObject({ value: 'error', source: 'config-dir', path: '/etc/stella/STELLA_LOG_LEVEL' });
    expect(loadConfig('ai', { env: { STELLA_CONFIG_DIR: '/cfg' }, readFile: read }).str('STELLA_LOG_LEVEL')).toBe('debug');
    // Only one trailing newline is stripped from a file (a secret may end in spaces).
    const pw = loadConfig('api', { env: { STELLA_ADMIN_PASSWORD_FILE: '/s' }, readFile: files({ '/s': 'p a s s \r\n' }) });
    expect(pw.str('STELLA_ADMIN_PASSWORD')).toBe('p a s s ');
  });

  it('validates every type and reports all problems in one message', () => {
    const p = problems(() =>
      loadConfig('export', {
        env: { STELLA_HTTP_PORT: '70000', STELLA_METRICS_ENABLED: 'yes', STELLA_LOG_LEVEL: 'loud', STELLA_QUEUE_URL: 'queue:4222', STELLA_QUEUE_RETENTION: '3 days', STELLA_DATABASE_POOL_SIZE: 'five' },
        readFile: files({}),
      }),
    );
    expect(p).toEqual([
      'STELLA_HTTP_PORT="70000" is above the maximum 65535',
      'STELLA_LOG_LEVEL="loud" is not one of debug, info, warn, error',
      'STELLA_METRICS_ENABLED="yes" is not a boolean (expected true or false)',
      'STELLA_DATABASE_POOL_SIZE="five" is not an integer',
      'STELLA_QUEUE_URL="queue:4222" is not a valid URL (expected scheme://host[:port][/path])',
      'STELLA_QUEUE_RETENTION="3 days" is not a duration (expected <integer>ms|s|m|h, e.g. 30s)',
    ]);
    expect(new ConfigError(p).message).toMatch(/^config: 6 problems: STELLA_HTTP_PORT/);
    expect(durationMs('250ms') + durationMs('2s') + durationMs('1m') + durationMs('1h')).toBe(250 + 2000 + 60_000 + 3_600_000);
  });

  it('never shows a secret value in a message', () => {
    const p = problems(() => loadConfig('api', { env: { STELLA_DATABASE_URL: 'CANARY-not-a-url' }, readFile: files({}) }));
    expect(p).toEqual(['STELLA_DATABASE_URL (secret, value hidden) is not a valid URL (expected scheme://host[:port][/path])']);
    const f = problems(() => loadConfig('api', { env: { STELLA_DATABASE_URL_FILE: '/missing/CANARY' }, readFile: files({}) }));
    expect(f).toEqual(['STELLA_DATABASE_URL_FILE=/missing/CANARY cannot be read: ENOENT']);
  });

  it('never echoes the password of a malformed credentialed URL, and hands the secrets read to the caller', () => {
    // STELLA_QUEUE_URL is not a secret key: its value is shown, without the URL's password.
    const e = (() => {
      try {
        loadConfig('notify', { env: { STELLA_QUEUE_URL: 'nats://u:CANARY-queue-pass@queue:notaport', STELLA_DATABASE_URL: 'postgres://u:p@db:5432/x' }, readFile: files({}) });
      } catch (x) {
        return x as ConfigError;
      }
      throw new Error('expected a ConfigError');
    })();
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.problems).toEqual(['STELLA_QUEUE_URL="nats://u:[REDACTED]@queue:notaport" is not a valid URL (expected scheme://host[:port][/path])']);
    expect(e.message).not.toContain('CANARY');
    expect(e.secrets).toEqual(expect.arrayContaining(['CANARY-queue-pass', 'p']));
  });

  it('secretValues: a secret URL gives its password (not the whole URL), other secrets their value', () => {
    const c = loadConfig('api', { env: { STELLA_DATABASE_URL: 'postgres://u:p%40ss@db:5432/x?sslpassword=CANARY-ssl', STELLA_REDIS_URL: 'redis://cache:6379/0', STELLA_ADMIN_PASSWORD: 'x' }, readFile: files({}) });
    expect(c.secretValues().sort()).toEqual(['CANARY-ssl', 'p%40ss', 'p@ss', 'x'].sort());
    expect(c.describe()).toMatchObject({ STELLA_DATABASE_URL: '[REDACTED] (env)', STELLA_ADMIN_PASSWORD: '[REDACTED] (env)', STELLA_LOG_LEVEL: 'info (default)' });
  });

  it('refuses unknown STELLA_* variables but not Kubernetes service links', () => {
    expect(problems(() => loadConfig('policy', { env: { STELLA_POLICY_CACHE_TTLL: '5m', STELLA_FOO: 'x' }, readFile: files({}) }))).toEqual([
      'STELLA_FOO is not a setting of policy; see docs/install/configuration for the keys it reads',
      'STELLA_POLICY_CACHE_TTLL is not a setting of policy (did you mean STELLA_POLICY_CACHE_TTL?); see docs/install/configuration for the keys it reads',
    ]);
    const links = { STELLA_API_SERVICE_HOST: '10.96.0.12', STELLA_API_SERVICE_PORT: '8081', STELLA_API_SERVICE_PORT_HTTP: '8081', STELLA_API_PORT: 'tcp://10.96.0.12:8081', STELLA_API_PORT_8081_TCP: 'tcp://10.96.0.12:8081', STELLA_API_PORT_8081_TCP_ADDR: '10.96.0.12', STELLA_API_PORT_8081_TCP_PORT: '8081', STELLA_API_PORT_8081_TCP_PROTO: 'tcp' };
    expect(loadConfig('policy', { env: links, readFile: files({}) }).int('STELLA_HTTP_PORT')).toBe(8086);
    expect(isServiceLinkVariable('STELLA_DB_PORT', '5432')).toBe(false);
    expect(isServiceLinkVariable('STELLA_API_SERVICE_HOST', 'api.local')).toBe(false);
  });

  it('refuses a locked key set to anything but its default, and accepts the default', () => {
    expect(problems(() => loadConfig('excitator', { env: { STELLA_DISABLE_MERGE: 'false' }, readFile: files({}) }))[0]).toMatch(/^STELLA_DISABLE_MERGE="false" is locked to "true"/);
    expect(loadConfig('excitator', { env: { STELLA_DISABLE_MERGE: 'true' }, readFile: files({}) }).bool('STELLA_DISABLE_MERGE')).toBe(true);
  });

  it('treats an empty environment value as unset (compose `KEY=` falls back to the default)', () => {
    const c = loadConfig('export', { env: { STELLA_OTEL_EXPORTER_ENDPOINT: '', STELLA_EXPORT_FORMATS: '', STELLA_LOG_LEVEL: '' }, readFile: files({}) });
    expect(c.optional('STELLA_OTEL_EXPORTER_ENDPOINT')).toBeUndefined();
    expect(c.list('STELLA_EXPORT_FORMATS')).toEqual(['json', 'spdx', 'csaf']);
    expect(c.entries.get('STELLA_LOG_LEVEL')).toMatchObject({ value: 'info', source: 'default' });
    // An empty file in the config directory is an explicit empty value.
    const d = loadConfig('export', { env: {}, readFile: files({ '/etc/stella/STELLA_EXPORT_FORMATS': '\n' }) });
    expect(d.list('STELLA_EXPORT_FORMATS')).toEqual([]);
  });

  it('exposes only discoverable, non-secret keys, with URL credentials stripped', () => {
    const c = loadConfig('console', { env: { STELLA_API_URL: 'http://user:CANARY@api:8081' }, readFile: files({}) });
    expect(c.discoverable()).toEqual({ STELLA_LOG_LEVEL: 'info', STELLA_METRICS_ENABLED: true, STELLA_OFFLINE: false, STELLA_API_URL: 'http://api:8081/', STELLA_QUICKSTART_MODE: false, STELLA_DOCS_URL: '/docs/install/overview.md' });
    expect(c.secretValues()).toContain('CANARY');
  });
});

describe('log redaction', () => {
  it('removes secrets, URL passwords (raw, URL-encoded, JSON-escaped) from messages, fields and errors', () => {
    const c = loadConfig('api', { env: { STELLA_DATABASE_URL: 'postgres://stella:p%40ss"CANARY@db:5432/stella', STELLA_ADMIN_PASSWORD: 'ADMIN-CANARY' }, readFile: files({}) });
    const r = new Redactor();
    r.add(c.secretValues());
    const lines: string[] = [];
    const log = new Logger({ service: 'api', version: 'v1', redactor: r, write: (l) => lines.push(l) });
    log.error('connecting to postgres://stella:p%40ss"CANARY@db:5432/stella failed', { err: new Error('bad password p@ss"CANARY'), nested: { pw: 'ADMIN-CANARY' } });
    expect(lines).toHaveLength(1);
    expect(lines[0]).not.toContain('CANARY');
    const rec = JSON.parse(lines[0]!) as { msg: string; fields: { err: { message: string }; nested: { pw: string } } };
    expect(rec.msg).toBe('connecting to postgres://stella:[REDACTED]@db:5432/stella failed');
    expect(rec.fields.err.message).toBe('bad password [REDACTED]');
    expect(rec.fields.nested.pw).toBe('[REDACTED]');
  });
});
