/**
 * A last check on every document we publish (SBOMs, provenance): no secret may appear
 * in it, neither as is nor in the encodings that carry secrets in practice
 * (base64 and base64url at any alignment, as in `Authorization: Basic` or a docker
 * config `auth`; percent-encoding, as in `https://user:token@registry`; hex).
 * Errors name the JSON path and which encoding matched, never the secret.
 */
import { StellaError } from '../errors.ts';

/** Secrets shorter than this are ignored: they would match by chance (and are not real secrets). */
export const MIN_SECRET_LENGTH = 6;

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
  /** 1-based position of the secret in the list given. */
  readonly secret: number;
  readonly encoding: string;
}

/** Every place where one of `secrets` appears in `value` (strings, numbers, and object keys). */
export function findSecrets(value: unknown, secrets: readonly string[]): SecretFinding[] {
  const needles = needlesFor(secrets);
  const found: SecretFinding[] = [];
  if (needles.length === 0) return found;
  const check = (text: string, path: string): void => {
    for (const n of needles) {
      // Encoded forms are matched case-insensitively where the encoding is (percent, hex).
      const hit = n.encoding === 'hex' || n.encoding === 'percent-encoded' ? text.toLowerCase().includes(n.text.toLowerCase()) : text.includes(n.text);
      if (hit) {
        found.push({ path, secret: n.index + 1, encoding: n.encoding });
        return;
      }
    }
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
 * Throws SECRET_LEAK naming every JSON path where a secret (or an encoding of it)
 * appears in `value`. `what` names the document in the message.
 */
export function assertNoSecrets(value: unknown, secrets: readonly string[], what = 'document'): void {
  const found = findSecrets(value, secrets);
  if (found.length === 0) return;
  const list = found.slice(0, 10).map((f) => `${f.path} (secret #${f.secret}${f.encoding === 'plain' ? '' : `, ${f.encoding}`})`).join('; ');
  throw new StellaError('SECRET_LEAK', `${what}: a secret appears at ${list}${found.length > 10 ? ` and ${found.length - 10} more places` : ''}; expected no secret in a published document (the values are not shown)`);
}
