/**
 * Structured JSON log lines on stdout: { ts, level, service, version, msg, fields }.
 * Every secret value (configured secret keys, passwords inside URLs) is replaced by
 * `[REDACTED]` in everything logged, including error messages coming from drivers.
 */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };
export const REDACTED = '[REDACTED]';

/** Replaces every occurrence of any secret (raw, URL-encoded or JSON-escaped form). */
export class Redactor {
  private secrets: string[] = [];

  add(values: Iterable<string>): void {
    const all = new Set(this.secrets);
    for (const v of values) {
      if (!v) continue;
      all.add(v);
      all.add(encodeURIComponent(v));
      all.add(JSON.stringify(v).slice(1, -1));
    }
    // Longest first, so a URL holding a password is replaced whole.
    this.secrets = [...all].filter(Boolean).sort((a, b) => b.length - a.length);
  }

  text(s: string): string {
    let out = s;
    for (const secret of this.secrets) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
    return out;
  }

  /** A deep copy of `v` with every string redacted; errors become { name, message, code }. */
  value(v: unknown, depth = 0): unknown {
    if (depth > 8) return '[depth]';
    if (typeof v === 'string') return this.text(v);
    if (v instanceof Error) {
      const o: Record<string, unknown> = { name: v.name, message: this.text(v.message) };
      const code = (v as NodeJS.ErrnoException).code;
      if (code) o.code = this.text(String(code));
      if (v.cause !== undefined) o.cause = this.value(v.cause, depth + 1);
      return o;
    }
    if (Array.isArray(v)) return v.map((x) => this.value(x, depth + 1));
    if (v && typeof v === 'object') {
      const o: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) o[k] = this.value(x, depth + 1);
      return o;
    }
    return v;
  }
}

export interface LoggerOptions {
  readonly service: string;
  readonly version: string;
  readonly level?: LogLevel;
  readonly redactor?: Redactor;
  readonly write?: (line: string) => void;
}

export class Logger {
  readonly service: string;
  readonly version: string;
  level: LogLevel;
  readonly redactor: Redactor;
  private readonly write: (line: string) => void;

  constructor(o: LoggerOptions) {
    this.service = o.service;
    this.version = o.version;
    this.level = o.level ?? 'info';
    this.redactor = o.redactor ?? new Redactor();
    this.write = o.write ?? ((line) => process.stdout.write(line));
  }

  log(level: LogLevel, msg: string, fields?: Record<string, unknown>): void {
    if (ORDER[level] < ORDER[this.level]) return;
    const rec: Record<string, unknown> = { ts: new Date().toISOString(), level, service: this.service, version: this.version, msg: this.redactor.text(msg) };
    if (fields && Object.keys(fields).length) rec.fields = this.redactor.value(fields);
    // Redact the serialized line too: a secret split across fields cannot slip through JSON escaping.
    this.write(`${this.redactor.text(JSON.stringify(rec))}\n`);
  }

  debug(msg: string, fields?: Record<string, unknown>): void {
    this.log('debug', msg, fields);
  }
  info(msg: string, fields?: Record<string, unknown>): void {
    this.log('info', msg, fields);
  }
  warn(msg: string, fields?: Record<string, unknown>): void {
    this.log('warn', msg, fields);
  }
  error(msg: string, fields?: Record<string, unknown>): void {
    this.log('error', msg, fields);
  }
}

/** The message of any thrown value, for logs and readiness answers (redact before showing). */
export function errorMessage(e: unknown): string {
  if (e instanceof AggregateError && e.errors.length) return e.errors.map(errorMessage).join('; ');
  if (e instanceof Error) return e.message || e.name || String((e as NodeJS.ErrnoException).code ?? 'error');
  return String(e);
}
