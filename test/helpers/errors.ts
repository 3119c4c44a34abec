import { expect } from 'vitest';
import { StellaError } from '../../ci/src/errors.ts';

/** Awaits `p`, which must reject with a StellaError, and returns that error. */
export async function errorOf(p: Promise<unknown>): Promise<StellaError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(StellaError);
    return e as StellaError;
  }
  throw new Error('expected an error');
}
