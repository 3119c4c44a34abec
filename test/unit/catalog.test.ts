import { describe, expect, it } from 'vitest';
import { catalog, configFor, validateCatalog, assertValidCatalog, selectServices, SERVICE_NAMES, type Catalog, type ServiceSpec } from '../../ci/src/catalog/index.ts';

const withService = (patch: (s: ServiceSpec) => ServiceSpec, index = 0): Catalog => ({
  ...catalog,
  services: catalog.services.map((s, i) => (i === index ? patch(s) : s)),
});

describe('service catalog', () => {
  it('is valid and lists the 11 services in seed order', () => {
    expect(validateCatalog(catalog)).toEqual([]);
    expect(catalog.services.map((s) => s.name)).toEqual([...SERVICE_NAMES]);
    expect(catalog.support.map((s) => s.name)).toEqual(['postgres', 'redis', 'object-store', 'queue', 'otel-collector']);
  });

  it('gives every service health paths, an image and a documented key set', () => {
    for (const s of catalog.services) {
      expect(s.image).toBe(`stella-${s.name}`);
      expect(s.http.liveness).toBe('/health/liveness');
      expect(s.http.readiness).toBe('/health/readiness');
      const keys = configFor(s);
      expect(keys.find((k) => k.key === 'STELLA_HTTP_PORT')?.default).toBe(s.http.port);
      for (const k of keys) expect(k.description.length).toBeGreaterThan(10);
    }
  });

  it('publishes the console on 8080 and the API on 8081 (seed §3.2)', () => {
    expect(catalog.services.find((s) => s.name === 'console')?.publishedPort).toBe(8080);
    expect(catalog.services.find((s) => s.name === 'api')?.publishedPort).toBe(8081);
  });

  it('hard-disables merge in Conseiller and Excitator', () => {
    for (const name of ['conseiller', 'excitator']) {
      const k = configFor(catalog.services.find((s) => s.name === name)!).find((x) => x.key === 'STELLA_DISABLE_MERGE');
      expect(k).toMatchObject({ default: true, locked: true });
    }
  });

  it('rejects a duplicate name', () => {
    const c = withService((s) => ({ ...s, name: 'console' }));
    expect(validateCatalog(c)).toContain('duplicate service name "console"');
  });

  it('rejects a port used twice, naming both owners', () => {
    const c = withService((s) => ({ ...s, http: { ...s.http, port: 5432 } }));
    expect(validateCatalog(c)).toContain('port 5432 is used by both api and postgres/postgres');
  });

  it('rejects a published port used twice', () => {
    const c = withService((s) => ({ ...s, publishedPort: 9000 }), 2);
    expect(validateCatalog(c).join('\n')).toMatch(/published port 9000 is used by both/);
  });

  it('rejects a dependency that does not exist', () => {
    const c = withService((s) => ({ ...s, dependsOn: [...s.dependsOn, 'mongodb' as never] }));
    expect(validateCatalog(c)).toContain('api: depends on "mongodb", which is not in the catalog');
  });

  it('rejects a secret with a default, and a discoverable secret', () => {
    const c = withService((s) => ({
      ...s,
      config: [
        ...s.config,
        { key: 'STELLA_X_TOKEN', type: 'string', group: 'Auth', secret: true, default: 'changeme', description: 'a token with a default' },
        { key: 'STELLA_Y_TOKEN', type: 'string', group: 'Auth', secret: true, discoverable: true, description: 'a token shown to the console' },
      ],
    }));
    const problems = validateCatalog(c);
    expect(problems).toContain('api: STELLA_X_TOKEN: a secret must not have a default');
    expect(problems).toContain('api: STELLA_Y_TOKEN: a secret must not be discoverable');
  });

  it('rejects keys outside STELLA_*, enum defaults outside the choices and duplicate keys', () => {
    const c = withService((s) => ({
      ...s,
      config: [
        ...s.config,
        { key: 'DATABASE_URL', type: 'url', group: 'Storage', description: 'unprefixed key for the test' },
        { key: 'STELLA_MODE', type: 'enum', group: 'Runtime', choices: ['a', 'b'], default: 'c', description: 'enum with a bad default' },
        { key: 'STELLA_TOKEN_TTL', type: 'duration', group: 'Auth', default: '1h', description: 'declared a second time' },
      ],
    }));
    const problems = validateCatalog(c);
    expect(problems).toContain('api: DATABASE_URL: configuration keys must match STELLA_[A-Z0-9_]+');
    expect(problems).toContain('api: STELLA_MODE: default "c" is not one of a, b');
    expect(problems).toContain('api: configuration key STELLA_TOKEN_TTL is declared twice');
    expect(() => assertValidCatalog(c)).toThrow(/the service catalog is invalid/);
  });

  it('every secret in the real catalog has no default', () => {
    for (const s of catalog.services) for (const k of configFor(s)) if (k.secret) expect(k.default).toBeUndefined();
  });

  it('selects services by name in catalog order, and refuses unknown names', () => {
    expect(selectServices('policy,api').map((s) => s.name)).toEqual(['api', 'policy']);
    expect(selectServices('').length).toBe(11);
    expect(selectServices('all').length).toBe(11);
    expect(() => selectServices('api,nope')).toThrow(/unknown service "nope"; the catalog has: api, console/);
  });
});
