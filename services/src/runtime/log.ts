/**
 * Structured JSON log lines on stdout: { ts, level, service, version, msg, fields }.
 * Everything logged goes through the shared redactor (ci/src/redact): known secrets of
 * at least MIN_SECRET_LENGTH characters by substring, and by structure whatever their
 * length — URL passwords, Authorization headers, secret-named keys (the catalog's secret
 * config keys included), also inside error messages coming from drivers.
 */
import { Redactor } from '../../../ci/src/redact/index.ts';

export { MIN_SECRET_LENGTH, REDACTED, Redactor } from '../../../ci/src/redact/index.ts';
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const ORDER: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

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
    // The serialized line once more, for known secrets only (structure was handled per string):
    // a known secret in a form JSON escaping produced cannot slip through.
    this.write(`${this.redactor.known(JSON.stringify(rec))}\n`);
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
