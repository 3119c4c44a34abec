/**
 * Configuration: exactly the keys the catalog lists for a service (`configFor`).
 *
 * Sources, highest precedence first:
 *   1. env `KEY`
 *   2. env `KEY_FILE` (the file's content, one trailing newline stripped)
 *   3. file `${STELLA_CONFIG_DIR:-/etc/stella}/KEY` (a mounted config directory)
 *   4. the catalog default
 *
 * An empty environment value counts as unset (compose's `KEY=` or `${KEY:-}`); an empty
 * file is an empty value (an empty list or string; unset for the other types).
 *
 * An unknown `STELLA_*` variable, an invalid value or a changed `locked` key is a
 * start-up error (the caller exits 2) with one message naming every bad key. The
 * message never shows a secret's value.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { configFor, serviceByName } from '../../../ci/src/catalog/config.ts';
import { REDACTED, isSecretKeyName, redactText, urlPasswords } from '../../../ci/src/redact/index.ts';
import type { ConfigKey, ServiceName, ServiceSpec } from '../../../ci/src/catalog/types.ts';

export type ConfigValue = string | number | boolean | readonly string[];

/** Where an effective value came from (shown in start-up logs, never with a secret's value). */
export type ConfigSource = 'env' | 'env-file' | 'config-dir' | 'default' | 'unset';

export interface ConfigEntry {
  readonly key: ConfigKey;
  readonly value: ConfigValue | undefined;
  readonly source: ConfigSource;
  /** The path of the file it was read from, for `env-file` and `config-dir`. */
  readonly path?: string;
}

export class ConfigError extends Error {
  readonly problems: readonly string[];
  /** The secrets read before the error (secret keys' values, URL passwords): redact them before showing the message. */
  readonly secrets: readonly string[];
  constructor(problems: readonly string[], secrets: readonly string[] = []) {
    super(problems.length === 1 ? `config: ${problems[0]}` : `config: ${problems.length} problems: ${problems.join('; ')}`);
    this.name = 'ConfigError';
    this.problems = problems;
    this.secrets = secrets;
  }
}

/**
 * The secrets a raw value of `k` holds: a secret key's value (for a URL, its password,
 * or the whole value when there is none to find), and the password of any URL in it.
 */
export function secretsOfValue(k: ConfigKey, raw: string): string[] {
  const passwords = urlPasswords(raw);
  if (!k.secret) return passwords;
  if (k.type === 'url') {
    let u: URL | undefined;
    try {
      u = new URL(raw.trim());
    } catch {
      // malformed: nothing to take apart
    }
    if (u) {
      // A well-formed URL: its password and secret-named query parameters (?password=…) are the secret.
      const params = [...u.searchParams].filter(([name, v]) => v && isSecretKeyName(name)).map(([, v]) => v);
      return [...passwords, ...params];
    }
    if (passwords.length > 0) return passwords;
  }
  return [raw, raw.trim()];
}

export const DEFAULT_CONFIG_DIR = '/etc/stella';

/**
 * Kubernetes injects "service link" variables for every Service of the namespace; a Service
 * named `stella-api` yields STELLA_API_SERVICE_HOST, STELLA_API_PORT=tcp://…,
 * STELLA_API_PORT_8081_TCP_ADDR and so on. They are not settings, so they are not "unknown
 * keys" either (the chart also sets enableServiceLinks: false).
 */
export function isServiceLinkVariable(name: string, value: string | undefined): boolean {
  const v = value ?? '';
  if (/^STELLA_[A-Z0-9_]+_PORT_\d+_(TCP|UDP|SCTP)(_(ADDR|PORT|PROTO))?$/.test(name)) return true;
  if (/^STELLA_[A-Z0-9_]+_SERVICE_HOST$/.test(name)) return /^[0-9a-fA-F.:]+$/.test(v);
  if (/^STELLA_[A-Z0-9_]+_SERVICE_PORT(_[A-Z0-9_]+)?$/.test(name)) return /^\d+$/.test(v);
  if (/^STELLA_[A-Z0-9_]+_PORT$/.test(name)) return /^(tcp|udp|sctp):\/\//.test(v);
  return false;
}
const DURATION = /^(\d+)(ms|s|m|h)$/;

/** Milliseconds of a duration value such as `30s`, `5m`, `72h`, `250ms`. */
export function durationMs(text: string): number {
  const m = DURATION.exec(text);
  if (!m) throw new Error(`"${text}" is not a duration (expected <integer>ms|s|m|h)`);
  const n = Number(m[1]);
  const unit = m[2] === 'ms' ? 1 : m[2] === 's' ? 1000 : m[2] === 'm' ? 60_000 : 3_600_000;
  return n * unit;
}

export interface LoadOptions {
  readonly env?: NodeJS.ProcessEnv;
  /** Reads a file as UTF-8; injectable for tests. */
  readonly readFile?: (path: string) => string;
}

/** The effective configuration of one service. */
export class Config {
  readonly service: ServiceSpec;
  readonly entries: ReadonlyMap<string, ConfigEntry>;

  constructor(service: ServiceSpec, entries: ReadonlyMap<string, ConfigEntry>) {
    this.service = service;
    this.entries = entries;
  }

  private entry(key: string): ConfigEntry {
    const e = this.entries.get(key);
    if (!e) throw new Error(`config: ${key} is not a setting of ${this.service.name} (programming error)`);
    return e;
  }

  has(key: string): boolean {
    return this.entries.has(key) && this.entries.get(key)!.value !== undefined;
  }

  /** The value as text, or undefined when unset. */
  optional(key: string): string | undefined {
    const v = this.entry(key).value;
    if (v === undefined) return undefined;
    return Array.isArray(v) ? v.join(',') : String(v);
  }

  str(key: string): string {
    const v = this.optional(key);
    if (v === undefined) throw new ConfigError([`${key} is required by ${this.service.name} but is not set`]);
    return v;
  }

  int(key: string): number {
    const v = this.entry(key).value;
    if (typeof v !== 'number') throw new ConfigError([`${key} is required by ${this.service.name} but is not set`]);
    return v;
  }

  bool(key: string): boolean {
    const v = this.entry(key).value;
    return v === true;
  }

  list(key: string): readonly string[] {
    const v = this.entry(key).value;
    return Array.isArray(v) ? v : [];
  }

  ms(key: string): number {
    return durationMs(this.str(key));
  }

  /** Secret keys' values and URL passwords of every key that is set (for the log redactor). */
  secretValues(): string[] {
    const out: string[] = [];
    for (const e of this.entries.values()) {
      if (e.value === undefined) continue;
      const text = Array.isArray(e.value) ? e.value.join(',') : String(e.value);
      out.push(...secretsOfValue(e.key, text));
    }
    return [...new Set(out)];
  }

  /** The console's config discovery view: discoverable keys only, never a secret. */
  discoverable(): Record<string, ConfigValue | null> {
    const out: Record<string, ConfigValue | null> = {};
    for (const e of this.entries.values()) {
      if (!e.key.discoverable || e.key.secret) continue;
      out[e.key.key] = e.value === undefined ? null : e.key.type === 'url' && typeof e.value === 'string' ? stripUrlCredentials(e.value) : e.value;
    }
    return out;
  }

  /** Keys, sources and (for non-secrets) values, for the start-up log line. */
  describe(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const e of this.entries.values()) {
      if (e.value === undefined) continue;
      out[e.key.key] = e.key.secret ? `${REDACTED} (${e.source})` : `${redactText(Array.isArray(e.value) ? e.value.join(',') : String(e.value))} (${e.source})`;
    }
    return out;
  }
}

/** The decoded password of a URL (`scheme://user:password@host`), if any. */
export function urlPassword(text: string): string | undefined {
  try {
    const u = new URL(text);
    if (!u.password) return undefined;
    return decodeURIComponent(u.password);
  } catch {
    return undefined;
  }
}

export function stripUrlCredentials(text: string): string {
  try {
    const u = new URL(text);
    if (!u.username && !u.password) return text;
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return text;
  }
}

function stripNewline(s: string): string {
  if (s.endsWith('\r\n')) return s.slice(0, -2);
  if (s.endsWith('\n')) return s.slice(0, -1);
  return s;
}

function editDistance(a: string, b: string): number {
  const d: number[] = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length]!;
}

function shown(k: ConfigKey, raw: string, origin: string): string {
  return k.secret ? `${k.key} (secret, value hidden${origin})` : `${k.key}=${JSON.stringify(redactText(raw))}${origin ? ` (${origin.slice(2)})` : ''}`;
}

/** Parses one raw value of `k`; returns the value or a problem description. */
export function parseValue(k: ConfigKey, raw: string, origin = ''): { value: ConfigValue } | { problem: string } {
  const what = shown(k, raw, origin);
  switch (k.type) {
    case 'string':
      return { value: raw };
    case 'list':
      return { value: raw.split(',').map((x) => x.trim()).filter(Boolean) };
    case 'integer': {
      if (!/^-?\d+$/.test(raw.trim())) return { problem: `${what} is not an integer` };
      const n = Number(raw.trim());
      if (k.min !== undefined && n < k.min) return { problem: `${what} is below the minimum ${k.min}` };
      if (k.max !== undefined && n > k.max) return { problem: `${what} is above the maximum ${k.max}` };
      return { value: n };
    }
    case 'boolean': {
      const t = raw.trim();
      if (t === 'true') return { value: true };
      if (t === 'false') return { value: false };
      return { problem: `${what} is not a boolean (expected true or false)` };
    }
    case 'enum': {
      const t = raw.trim();
      if (!(k.choices ?? []).includes(t)) return { problem: `${what} is not one of ${(k.choices ?? []).join(', ')}` };
      return { value: t };
    }
    case 'url': {
      const t = raw.trim();
      try {
        const u = new URL(t);
        if (!u.protocol || !u.host) throw new Error('no host');
      } catch {
        return { problem: `${what} is not a valid URL (expected scheme://host[:port][/path])` };
      }
      return { value: t };
    }
    case 'duration': {
      const t = raw.trim();
      if (!DURATION.test(t)) return { problem: `${what} is not a duration (expected <integer>ms|s|m|h, e.g. 30s)` };
      return { value: t };
    }
  }
}

/** Loads and validates the configuration of `serviceName`; throws ConfigError. */
export function loadConfig(serviceName: ServiceName, opts: LoadOptions = {}): Config {
  const env = opts.env ?? process.env;
  const readFile = opts.readFile ?? ((p: string) => readFileSync(p, 'utf8'));
  const service = serviceByName(serviceName);
  const keys = configFor(service);
  // A service may list a key twice only through the catalog's shared + own lists; keep the last.
  const byName = new Map<string, ConfigKey>();
  for (const k of keys) byName.set(k.key, k);
  const problems: string[] = [];
  const secrets: string[] = [];

  // Unknown STELLA_* variables.
  for (const name of Object.keys(env).sort()) {
    if (!name.startsWith('STELLA_')) continue;
    const base = name.endsWith('_FILE') ? name.slice(0, -5) : name;
    if (byName.has(name) || byName.has(base)) continue;
    if (isServiceLinkVariable(name, env[name])) continue;
    let best: string | undefined;
    let bestD = Infinity;
    for (const k of byName.keys()) {
      const d = editDistance(base, k);
      if (d < bestD) {
        bestD = d;
        best = k;
      }
    }
    const hint = best && bestD <= 3 ? ` (did you mean ${best}${name.endsWith('_FILE') ? '_FILE' : ''}?)` : '';
    problems.push(`${name} is not a setting of ${service.name}${hint}; see docs/install/configuration for the keys it reads`);
  }

  // The config directory is itself a key, resolved from env / env file / default only.
  const dirKey = byName.get('STELLA_CONFIG_DIR');
  let configDir = DEFAULT_CONFIG_DIR;
  if (env.STELLA_CONFIG_DIR) configDir = env.STELLA_CONFIG_DIR;
  else if (env.STELLA_CONFIG_DIR_FILE) {
    try {
      configDir = stripNewline(readFile(env.STELLA_CONFIG_DIR_FILE));
    } catch (e) {
      problems.push(`STELLA_CONFIG_DIR_FILE=${env.STELLA_CONFIG_DIR_FILE} cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  } else if (dirKey?.default !== undefined) configDir = String(dirKey.default);

  const entries = new Map<string, ConfigEntry>();
  for (const k of byName.values()) {
    let raw: string | undefined;
    let source: ConfigSource = 'unset';
    let path: string | undefined;
    const direct = env[k.key];
    const fileVar = env[`${k.key}_FILE`];
    if (direct !== undefined && direct !== '') {
      raw = direct;
      source = 'env';
    } else if (fileVar !== undefined && fileVar !== '') {
      path = fileVar;
      try {
        raw = stripNewline(readFile(fileVar));
        source = 'env-file';
      } catch (e) {
        problems.push(`${k.key}_FILE=${fileVar} cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
        continue;
      }
    } else if (k.key !== 'STELLA_CONFIG_DIR') {
      const p = join(configDir, k.key);
      try {
        raw = stripNewline(readFile(p));
        source = 'config-dir';
        path = p;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT' && code !== 'ENOTDIR') {
          problems.push(`${p} (for ${k.key}) cannot be read: ${code ?? (e as Error).message}`);
          continue;
        }
      }
    }
    if (raw !== undefined && raw === '' && k.type !== 'string' && k.type !== 'list') {
      // An empty file for a typed key means "unset".
      raw = undefined;
      source = 'unset';
    }
    if (raw !== undefined) secrets.push(...secretsOfValue(k, raw));
    let value: ConfigValue | undefined;
    if (raw !== undefined) {
      const origin = source === 'env' ? '' : `, from ${path}`;
      const parsed = parseValue(k, raw, origin);
      if ('problem' in parsed) {
        problems.push(parsed.problem);
        continue;
      }
      value = parsed.value;
    } else if (k.default !== undefined) {
      const parsed = parseValue(k, String(k.default));
      value = 'value' in parsed ? parsed.value : undefined;
      source = 'default';
    }
    if (k.locked && value !== undefined && k.default !== undefined) {
      const def = parseValue(k, String(k.default));
      if ('value' in def && JSON.stringify(def.value) !== JSON.stringify(value)) {
        problems.push(`${k.secret ? `${k.key} (secret)` : `${k.key}=${JSON.stringify(redactText(raw ?? ''))}`} is locked to ${JSON.stringify(String(k.default))} (${k.description})`);
        continue;
      }
    }
    if (k.required && value === undefined) {
      problems.push(`${k.key} is required by ${service.name} but is not set (set ${k.key} or ${k.key}_FILE)`);
      continue;
    }
    entries.set(k.key, path !== undefined ? { key: k, value, source, path } : { key: k, value, source });
  }
  if (entries.has('STELLA_CONFIG_DIR')) {
    const e = entries.get('STELLA_CONFIG_DIR')!;
    entries.set('STELLA_CONFIG_DIR', { ...e, value: configDir });
  }
  if (problems.length) throw new ConfigError(problems, [...new Set(secrets)]);
  return new Config(service, entries);
}
