/**
 * Keeps secrets out of everything the client says: error messages, body
 * excerpts, events. Every credential the client is given or obtains (passwords,
 * static and issued tokens, their base64 and URL-encoded forms) is registered
 * here and replaced by `***` wherever it appears.
 */
export const REDACTED = '***';

export class Redactor {
  readonly #secrets = new Set<string>();

  /** Registers a secret and the encodings it might travel in. Values shorter than 4 characters are too common to replace safely and are ignored. */
  add(secret: string | undefined): void {
    if (!secret || secret.length < 4) return;
    for (const form of [secret, encodeURIComponent(secret), Buffer.from(secret).toString('base64'), JSON.stringify(secret).slice(1, -1)]) {
      if (form.length >= 4) this.#secrets.add(form);
    }
  }

  /** Registers `user:password` as it appears in a Basic header, plus each part. */
  addBasic(username: string, password: string): void {
    this.add(password);
    this.add(`${username}:${password}`);
  }

  redact(text: string): string {
    let out = text;
    // Longest first, so a secret that contains another is replaced whole.
    for (const s of [...this.#secrets].sort((a, b) => b.length - a.length)) {
      if (out.includes(s)) out = out.split(s).join(REDACTED);
    }
    // Whatever follows an auth scheme in text we did not produce is never shown either.
    // (16+ characters with a digit or punctuation: base64 and JWTs, not English words.)
    return out.replace(/\b(Basic|Bearer)\s+(?=[A-Za-z0-9+/=._~-]*[0-9+/=._~-])[A-Za-z0-9+/=._~-]{16,}/g, `$1 ${REDACTED}`);
  }

  /** Deep copy of a JSON-like value with every string redacted. */
  redactValue<T>(value: T): T {
    if (typeof value === 'string') return this.redact(value) as T;
    if (Array.isArray(value)) return value.map((v) => this.redactValue(v)) as T;
    if (value && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = this.redactValue(v);
      return out as T;
    }
    return value;
  }
}
