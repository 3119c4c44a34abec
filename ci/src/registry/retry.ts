/**
 * Retry policy: exponential backoff with jitter, bounded attempts, and
 * `Retry-After` (seconds or HTTP-date) honoured up to the cap.
 */
import { StellaError } from '../errors.ts';

export interface RetryPolicy {
  /** Total tries, including the first. */
  readonly attempts: number;
  readonly baseMs: number;
  readonly maxMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseMs: 250, maxMs: 10_000 };

/** Milliseconds to wait as asked by a `Retry-After` header, or undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - now);
}

/**
 * Delay before try number `attempt + 1` (attempt counts from 1): half fixed,
 * half random ("equal jitter"), doubling from `baseMs`, never above `maxMs`.
 * A server's `Retry-After` wins over the computed delay, capped at `maxMs`.
 */
export function backoffDelay(policy: RetryPolicy, attempt: number, retryAfterMs?: number, random: () => number = Math.random): number {
  if (retryAfterMs !== undefined) return Math.min(retryAfterMs, policy.maxMs);
  const exp = Math.min(policy.maxMs, policy.baseMs * 2 ** (attempt - 1));
  return Math.round(exp / 2 + random() * (exp / 2));
}

export function validateRetryPolicy(p: RetryPolicy): RetryPolicy {
  const ok = Number.isInteger(p.attempts) && p.attempts >= 1 && p.attempts <= 100 && p.baseMs >= 0 && p.maxMs >= p.baseMs;
  if (!ok) {
    throw new StellaError('INVALID_ARGUMENT', `registry client: retry policy ${JSON.stringify(p)} is invalid: expected 1 <= attempts <= 100 (integer) and 0 <= baseMs <= maxMs`);
  }
  return p;
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
