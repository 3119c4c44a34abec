/**
 * The one redaction module: the services' logs and answers, the pipeline's error
 * output, and the last check on every published document (SBOMs, provenance).
 *
 * Two layers, applied in this order:
 *
 * 1. Known secrets, by substring — only those of at least MIN_SECRET_LENGTH characters.
 *    A shorter secret (say a password `p`) would match ordinary words: replacing it
 *    everywhere corrupts the output and tells a reader what the secret is.
 * 2. Structure, whatever the secret's length: the password of any URL
 *    (`scheme://user:password@host`), `Authorization:` headers, `Bearer`/`Basic`
 *    credentials, and the values of secret-named keys — `password=…`, `"token": "…"`,
 *    `STELLA_DATABASE_URL=…` for the keys a caller marks secret (the catalog's
 *    secret config keys), and object properties of such names.
 *
 * `findSecrets` / `assertNoSecrets` are the document check: they search every string
 * of a JSON value for the known secrets (≥ MIN_SECRET_LENGTH) in the encodings that
 * carry them in practice, and for URLs carrying a password.
 */
import { StellaError } from '../errors.ts';

/** What replaces a secret. */
export const REDACTED = '[REDACTED]';

/**
 * Known secrets shorter than this are never matched as substrings (neither redacted
 * nor searched for in documents): they would match by chance. Structural redaction
 * still hides them where they are known to be (their key's value, a URL's password).
 */
export const MIN_SECRET_LENGTH = 8;

// ---------------------------------------------------------------------------------------------
// Key names

/** Words that make a key name secret when they are one of its segments (`db_password`, `apiToken`). */
const SECRET_WORDS = new Set(['password', 'passwd', 'pwd', 'pass', 'passphrase', 'secret', 'token', 'apikey', 'credential', 'credentials', 'authorization', 'auth', 'cookie', 'privatekey', 'accesskey', 'secretkey', 'sessionid']);
/** Adjacent segments that make a key name secret (`STELLA_AI_API_KEY`, `access-key`). */
const SECRET_PAIRS = new Set(['api key', 'access key', 'private key', 'secret key', 'session id', 'client secret', 'signing key']);

/**
 * Whether a key or field name names a secret: one of `extra` (exactly), or — unless it is
 * one of `publicKeys` (e.g. the catalog's `STELLA_TOKEN_TTL`) — a name with
 * a segment such as password, token, secret, auth, api key (`identitytoken`,
 * `STELLA_OBJECT_STORE_SECRET_KEY`, `x-api-key`). `max_tokens` or `authority` are not.
 */
export function isSecretKeyName(name: string, extra?: ReadonlySet<string>, publicKeys?: ReadonlySet<string>): boolean {
  if (extra?.has(name)) return true;
  if (publicKeys?.has(name)) return false;
  const segs = name.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase().split(/[^a-z0-9]+/).filter(Boolean);
  for (let i = 0; i < segs.length; i++) {
    const s = segs[i]!;
    if (SECRET_WORDS.has(s) || (s.length > 5 && (s.endsWith('token') || s.endsWith('password') || s.endsWith('secret')))) return true;
    if (i + 1 < segs.length && SECRET_PAIRS.has(`${s} ${segs[i + 1]}`)) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Free text: structure

/** `scheme://user:password@` — the password runs to the last `@` of the authority. */
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#@:"'<>`]*):([^\s/?#"'<>`]*)@/gi;
/** The same for a single value (a config setting), where quotes and backticks are part of the password. */
const URL_USERINFO_VALUE = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#@:]*):([^\s/?#]*)@/gi;
/** `Authorization: <anything to the end of the line>` (also `=`, quoted, Proxy-Authorization). */
const AUTH_HEADER = /\b((?:proxy-)?authorization)(["']?[ \t]*[:=][ \t]*["']?)([^\r\n"']+)/gi;
/** `Bearer <credential>`: 8+ characters with a digit or punctuation (not an English word). */
const AUTH_SCHEME = /\b(Basic|Bearer|Token)[ \t]+(?=[A-Za-z0-9+/=._~-]*[0-9+/=._~-])[A-Za-z0-9+/=._~-]{8,}/g;
/** `name=value`, `name: value`, `"name": "value"`, `name='value'`. */
const PAIR = /(["']?)\b([A-Za-z_][A-Za-z0-9_.-]*)\1([ \t]*[:=][ \t]*)(?:"((?:[^"\\\r\n]|\\.)*)"|'([^'\r\n]*)'|([^\s&;,"'<>(){}]+))/g;
/** `?name=value` / `&name=value` in a URL or a form body. */
const QUERY_PAIR = /([?&;])([A-Za-z_][A-Za-z0-9_.-]*)=([^&#\s"'<>]*)/g;

export interface TextOptions {
  /** Key names whose values are secret, in addition to the generic ones (e.g. the catalog's secret keys). */
  readonly secretKeys?: ReadonlySet<string>;
  /** Key names known not to be secret although their name says token, key, … (the catalog's other keys). */
  readonly publicKeys?: ReadonlySet<string>;
}

/**
 * Structural redaction of free text: URL passwords, Authorization headers, Bearer/Basic
 * credentials, values of secret-named `key=value` / `key: value` / `"key": "value"` pairs.
 * Every other character is kept.
 */
export function redactText(text: string, opts: TextOptions = {}): string {
  if (!text) return text;
  const secretValue = (name: string, value: string): boolean => value !== '' && !value.startsWith(REDACTED) && isSecretKeyName(name, opts.secretKeys, opts.publicKeys);
  // Headers first: their value is everything to the end of the line.
  let out = text.replace(AUTH_HEADER, (m, name: string, sep: string, value: string) => (value.startsWith(REDACTED) ? m : `${name}${sep}${REDACTED}`));
  out = out.replace(AUTH_SCHEME, (m, scheme: string) => (m.includes(REDACTED) ? m : `${scheme} ${REDACTED}`));
  // Query parameters (inside a URL, which the pairs below would take whole).
  out = out.replace(QUERY_PAIR, (m, lead: string, name: string, value: string) => (secretValue(name, value) ? `${lead}${name}=${REDACTED}` : m));
  // A secret key's value whole (a URL included), before the URL password is cut out of it.
  out = out.replace(PAIR, (m, q: string, name: string, sep: string, dq?: string, sq?: string, bare?: string) => {
    if (!secretValue(name, dq ?? sq ?? bare ?? '')) return m;
    const shown = dq !== undefined ? `"${REDACTED}"` : sq !== undefined ? `'${REDACTED}'` : REDACTED;
    return `${q}${name}${q}${sep}${shown}`;
  });
  return out.replace(URL_USERINFO, (_m, scheme: string, user: string) => `${scheme}${user}:${REDACTED}@`);
}

/**
 * The password of each `scheme://user:password@` in `text` (a value such as a config
 * setting), as written (percent-encoded or not) and decoded — also from a URL that does
 * not parse.
 */
export function urlPasswords(text: string): string[] {
  const out = new Set<string>();
  for (const m of text.matchAll(URL_USERINFO_VALUE)) {
    const pw = m[3] ?? '';
    if (!pw) continue;
    out.add(pw);
    try {
      out.add(decodeURIComponent(pw));
    } catch {
      // not valid percent-encoding: the raw form is all there is
    }
    try {
      const u = new URL(m[0] + 'x');
      if (u.password) out.add(u.password);
    } catch {
      // malformed: the raw form is registered
    }
  }
  return [...out];
}

// ---------------------------------------------------------------------------------------------
// Objects: by key name

export interface ValueOptions extends TextOptions {
  /** Applied to every string that is not a secret key's value (default: redactText). */
  readonly text?: (s: string) => string;
}

/**
 * A deep copy of a JSON-like value where the value of every secret-named key is
 * `[REDACTED]` (strings and numbers; everything inside an object or array under such a
 * key), and every other string goes through `opts.text` (default redactText).
 * Errors become `{ name, message, code, cause }`.
 */
export function redactObject(value: unknown, opts: ValueOptions = {}): unknown {
  const text = opts.text ?? ((s: string) => redactText(s, opts));
  const seen = new WeakSet<object>();
  const all = (v: unknown, depth: number): unknown => {
    if (typeof v === 'string') return v.startsWith(REDACTED) ? v : REDACTED;
    if (typeof v === 'number' || typeof v === 'bigint') return REDACTED;
    if (Array.isArray(v)) return depth > 8 ? '[depth]' : v.map((x) => all(x, depth + 1));
    if (v && typeof v === 'object') {
      if (depth > 8) return '[depth]';
      const o: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) o[k] = all(x, depth + 1);
      return o;
    }
    return v;
  };
  const walk = (v: unknown, depth: number): unknown => {
    if (depth > 8) return '[depth]';
    if (typeof v === 'string') return text(v);
    if (v instanceof Error) {
      const o: Record<string, unknown> = { name: v.name, message: text(v.message) };
      const code = (v as NodeJS.ErrnoException).code;
      if (code) o.code = text(String(code));
      if (v.cause !== undefined) o.cause = walk(v.cause, depth + 1);
      return o;
    }
    if (v && typeof v === 'object') {
      if (seen.has(v)) return '[circular]';
      seen.add(v);
      let out: unknown;
      if (Array.isArray(v)) out = v.map((x) => walk(x, depth + 1));
      else {
        const o: Record<string, unknown> = {};
        for (const [k, x] of Object.entries(v)) o[k] = isSecretKeyName(k, opts.secretKeys, opts.publicKeys) ? all(x, depth + 1) : walk(x, depth + 1);
        out = o;
      }
      seen.delete(v);
      return out;
    }
    return v;
  };
  return walk(value, 0);
}

// ---------------------------------------------------------------------------------------------
// Known secrets

/** The forms a secret travels in: as is, percent-encoded, form-encoded, JSON-escaped, base64. */
function formsOf(secret: string): string[] {
  const forms = new Set<string>([secret, encodeURIComponent(secret), new URLSearchParams({ x: secret }).toString().slice(2), JSON.stringify(secret).slice(1, -1), Buffer.from(secret).toString('base64')]);
  return [...forms].filter((f) => f.length >= MIN_SECRET_LENGTH);
}

/**
 * Redaction built from known secrets (config values, passwords, tokens) and the names
 * of secret keys. `text` and `value` apply both layers (known secrets ≥
 * MIN_SECRET_LENGTH by substring, then structure); `known` only the first, for text
 * already redacted structurally (e.g. a serialized log line).
 */
export class Redactor {
  #needles: string[] = [];
  readonly #secretKeys = new Set<string>();
  readonly #publicKeys = new Set<string>();

  constructor(secrets: Iterable<string | undefined> = [], opts: { secretKeys?: Iterable<string>; publicKeys?: Iterable<string> } = {}) {
    this.add(secrets);
    this.addKeys(opts.secretKeys ?? []);
    for (const k of opts.publicKeys ?? []) this.#publicKeys.add(k);
  }

  /** Registers secrets; those shorter than MIN_SECRET_LENGTH are only redacted structurally. */
  add(secrets: Iterable<string | undefined>): this {
    const all = new Set(this.#needles);
    for (const s of secrets) {
      if (typeof s !== 'string' || s.length < MIN_SECRET_LENGTH) continue;
      for (const f of formsOf(s)) all.add(f);
    }
    // Longest first, so a secret that contains another is replaced whole.
    this.#needles = [...all].sort((a, b) => b.length - a.length);
    return this;
  }

  /** Registers a Basic credential: the password, and `user:password` (whose base64 is the header's value). */
  addBasic(username: string, password: string): this {
    return this.add([password, `${username}:${password}`]);
  }

  /** Registers key names whose values are secret (beyond the generic password/token/… names). */
  addKeys(keys: Iterable<string>): this {
    for (const k of keys) this.#secretKeys.add(k);
    return this;
  }

  get secretKeys(): ReadonlySet<string> {
    return this.#secretKeys;
  }

  /** Known secrets only. */
  known(s: string): string {
    let out = s;
    for (const n of this.#needles) if (out.includes(n)) out = out.split(n).join(REDACTED);
    return out;
  }

  text(s: string): string {
    return redactText(this.known(s), { secretKeys: this.#secretKeys, publicKeys: this.#publicKeys });
  }

  /** A deep copy with secret keys' values replaced and every string redacted; errors become { name, message, code, cause }. */
  value(v: unknown): unknown {
    return redactObject(v, { secretKeys: this.#secretKeys, publicKeys: this.#publicKeys, text: (s) => this.text(s) });
  }
}

/** The message of a pipeline error as the CLI may print it: known secrets and structure redacted. */
export function redactError(message: string, secrets: readonly (string | undefined)[] = []): string {
  return new Redactor(secrets).text(message);
}

// ---------------------------------------------------------------------------------------------
// Published documents: the last check

interface Needle {
  readonly index: number;
  readonly encoding: string;
  readonly text: string;
}

/**
 * The base64 characters that depend only on the secret's bytes when it starts at byte
 * offset `shift` of a larger encoded value (shift 0, 1, 2 cover every alignment).
 */
function base64Cores(secret: Buffer): { shift: number; b64: string; b64url: string }[] {
  const out: { shift: number; b64: string; b64url: string }[] = [];
  for (let shift = 0; shift < 3; shift++) {
    const full = Buffer.concat([Buffer.alloc(shift), secret]).toString('base64');
    const from = Math.ceil((shift * 8) / 6);
    const to = Math.floor(((shift + secret.length) * 8) / 6);
    const b64 = full.slice(from, to);
    if (b64.length >= MIN_SECRET_LENGTH) out.push({ shift, b64, b64url: b64.replace(/\+/g, '-').replace(/\//g, '_') });
  }
  return out;
}

function needlesFor(secrets: readonly string[]): Needle[] {
  const out: Needle[] = [];
  secrets.forEach((s, index) => {
    if (typeof s !== 'string' || s.length < MIN_SECRET_LENGTH) return;
    const add = (encoding: string, text: string): void => {
      if (!out.some((n) => n.index === index && n.text === text)) out.push({ index, encoding, text });
    };
    add('plain', s);
    add('percent-encoded', encodeURIComponent(s));
    add('form-encoded', new URLSearchParams({ x: s }).toString().slice(2));
    add('hex', Buffer.from(s).toString('hex'));
    for (const c of base64Cores(Buffer.from(s))) {
      add('base64', c.b64);
      add('base64url', c.b64url);
    }
  });
  return out;
}

/** `$.a.b[0]["odd key"]` */
function child(path: string, key: string | number): string {
  if (typeof key === 'number') return `${path}[${key}]`;
  return /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? `${path}.${key}` : `${path}[${JSON.stringify(key)}]`;
}

export interface SecretFinding {
  /** JSON path of the value (or key) that holds the secret. */
  readonly path: string;
  /** 1-based position of the secret in the list given; absent for a URL password (any secret). */
  readonly secret?: number;
  /** How it appears: plain, percent-encoded, form-encoded, hex, base64, base64url, or url-password. */
  readonly encoding: string;
}

/**
 * Every place where one of `secrets` (≥ MIN_SECRET_LENGTH) appears in `value` (strings,
 * numbers, object keys), and every string holding a URL with a password.
 */
export function findSecrets(value: unknown, secrets: readonly string[]): SecretFinding[] {
  const needles = needlesFor(secrets);
  const found: SecretFinding[] = [];
  const check = (text: string, path: string): void => {
    for (const n of needles) {
      // Encoded forms are matched case-insensitively where the encoding is (percent, hex).
      const hit = n.encoding === 'hex' || n.encoding === 'percent-encoded' ? text.toLowerCase().includes(n.text.toLowerCase()) : text.includes(n.text);
      if (hit) {
        found.push({ path, secret: n.index + 1, encoding: n.encoding });
        return;
      }
    }
    // Whatever the secret, a URL's password is never published (short ones included).
    if (text.includes('://') && urlPasswords(text).length > 0) found.push({ path, encoding: 'url-password' });
  };
  const seen = new Set<object>();
  const walk = (v: unknown, path: string, depth: number): void => {
    if (depth > 200) return;
    if (typeof v === 'string') check(v, path);
    else if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') check(String(v), path);
    else if (v instanceof Uint8Array) check(Buffer.from(v).toString('latin1'), path);
    else if (Array.isArray(v)) {
      if (seen.has(v)) return;
      seen.add(v);
      v.forEach((x, i) => walk(x, child(path, i), depth + 1));
    } else if (v && typeof v === 'object') {
      if (seen.has(v)) return;
      seen.add(v);
      for (const [k, x] of Object.entries(v)) {
        check(k, `${child(path, k)} (key)`);
        walk(x, child(path, k), depth + 1);
      }
    }
  };
  walk(value, '$', 0);
  return found;
}

/**
 * Throws SECRET_LEAK naming every JSON path where a secret (or an encoding of it), or a
 * URL with a password, appears in `value`. `what` names the document in the message.
 */
export function assertNoSecrets(value: unknown, secrets: readonly string[], what = 'document'): void {
  const found = findSecrets(value, secrets);
  if (found.length === 0) return;
  const describe = (f: SecretFinding): string =>
    f.secret === undefined ? `${f.path} (a password in a URL)` : `${f.path} (secret #${f.secret}${f.encoding === 'plain' ? '' : `, ${f.encoding}`})`;
  const list = found.slice(0, 10).map(describe).join('; ');
  throw new StellaError('SECRET_LEAK', `${what}: a secret appears at ${list}${found.length > 10 ? ` and ${found.length - 10} more places` : ''}; expected no secret in a published document (the values are not shown)`);
}
