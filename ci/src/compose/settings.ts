/**
 * How each service's configuration keys appear in the Compose quickstart.
 *
 * Each StellaOps container gets exactly the keys the catalog lists for it (`configFor`): the
 * services refuse unknown STELLA_* keys. A key is either
 *   - fixed by the compose file (the wiring: endpoints of the support services, secrets as
 *     `<KEY>_FILE` pointing into /run/stella/secrets, the locked AOC rule), or
 *   - a setting, read from .env through interpolation: `KEY: ${VAR:-default}`. An empty value
 *     counts as unset for the services, so `${VAR:-}` leaves the catalog default in force.
 * The .env variable of a setting is the key itself; a key that several services declare as their
 * own with different meanings (the feed settings of conseiller and excitator) is prefixed with
 * the service: CONSEILLER_STELLA_FEED_SOURCES.
 */
import { catalog, configFor } from '../catalog/index.ts';
import type { ConfigKey, ServiceSpec } from '../catalog/types.ts';

/** Where the init service writes the secrets, as each container sees the stella-state volume. */
export const SECRETS_DIR = '/run/stella/secrets';

/** Compose service name of each support service (the catalog's `queue` is NATS). */
export const SUPPORT_SERVICE: Readonly<Record<string, string>> = {
  postgres: 'postgres',
  redis: 'redis',
  'object-store': 'object-store',
  queue: 'nats',
  'otel-collector': 'otel-collector',
};

/** Files under .secrets/ (and /run/stella/secrets/) that hold a key's value. */
export const SECRET_FILES: Readonly<Record<string, string>> = {
  STELLA_DATABASE_URL: 'database-url',
  STELLA_REDIS_URL: 'redis-url',
  STELLA_OBJECT_STORE_ACCESS_KEY: 'object-store-access-key',
  STELLA_OBJECT_STORE_SECRET_KEY: 'object-store-secret-key',
  STELLA_ADMIN_PASSWORD: 'admin-password',
};

/** Values the compose file fixes: the wiring between the containers. */
const FIXED: Readonly<Record<string, string>> = {
  STELLA_QUEUE_URL: 'nats://nats:4222',
  STELLA_OBJECT_STORE_ENDPOINT: 'http://object-store:9000',
  STELLA_API_URL: 'http://api:8081',
};

/** Settings whose compose default differs from the catalog default (the quickstart's choices). */
export const QUICKSTART_DEFAULTS: Readonly<Record<string, string>> = {
  STELLA_QUICKSTART_MODE: 'true',
  STELLA_OTEL_EXPORTER_ENDPOINT: 'http://otel-collector:4318',
};

/** Keys the compose file leaves to the image (the listener port the health check also reads; the config dir). */
const LEFT_TO_IMAGE = new Set(['STELLA_HTTP_PORT', 'STELLA_CONFIG_DIR']);

/** Keys that mean the same thing in every service that declares them as its own. */
const SAME_MEANING = new Set(['STELLA_QUICKSTART_MODE']);

export type KeyWiring =
  | { readonly kind: 'fixed'; readonly key: ConfigKey; readonly value: string }
  | { readonly kind: 'secret-file'; readonly key: ConfigKey; readonly file: string }
  /** `env` is the container variable: the key, or `<KEY>_FILE` for a secret the user adds to .secrets/. */
  | { readonly kind: 'setting'; readonly key: ConfigKey; readonly env: string; readonly variable: string; readonly default: string }
  | { readonly kind: 'image'; readonly key: ConfigKey };

function ownedByOthers(key: string, s: ServiceSpec): boolean {
  return catalog.services.some((o) => o.name !== s.name && o.config.some((k) => k.key === key));
}

/** The .env variable of a setting. */
export function variableOf(k: ConfigKey, s: ServiceSpec): string {
  const own = s.config.some((x) => x.key === k.key);
  if (own && !SAME_MEANING.has(k.key) && ownedByOthers(k.key, s)) return `${s.name.toUpperCase().replaceAll('-', '_')}_${k.key}`;
  return k.key;
}

/** How each of the service's keys is given to it, in catalog order. */
export function wiring(s: ServiceSpec): KeyWiring[] {
  return configFor(s).map((k): KeyWiring => {
    if (LEFT_TO_IMAGE.has(k.key)) return { kind: 'image', key: k };
    if (FIXED[k.key] !== undefined) return { kind: 'fixed', key: k, value: FIXED[k.key]! };
    if (k.locked) return { kind: 'fixed', key: k, value: String(k.default) };
    if (SECRET_FILES[k.key]) return { kind: 'secret-file', key: k, file: SECRET_FILES[k.key]! };
    const def = QUICKSTART_DEFAULTS[k.key] ?? '';
    // A secret the quickstart does not generate (the AI backend's key) is a file the user adds to
    // .secrets/; the setting is its path inside the container.
    if (k.secret) return { kind: 'setting', key: k, env: `${k.key}_FILE`, variable: `${variableOf(k, s)}_FILE`, default: '' };
    return { kind: 'setting', key: k, env: k.key, variable: variableOf(k, s), default: def };
  });
}

/** Every .env setting once, with the services that read it (for .env.example). */
export interface Setting {
  readonly variable: string;
  readonly env: string;
  readonly key: ConfigKey;
  readonly default: string;
  readonly services: string[];
}

export function settings(): Setting[] {
  const out = new Map<string, Setting>();
  for (const s of catalog.services) {
    for (const w of wiring(s)) {
      if (w.kind !== 'setting') continue;
      const e = out.get(w.variable);
      if (e) e.services.push(s.name);
      else out.set(w.variable, { variable: w.variable, env: w.env, key: w.key, default: w.default, services: [s.name] });
    }
  }
  return [...out.values()];
}
