/** Shared bits for the signing tests: the real cosign binary, run offline in a temp HOME. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { findTool } from '../helpers/tools.ts';

/** Found the one way every test finds tools (test/helpers/tools.ts). */
export const COSIGN_BIN = findTool('cosign') ?? 'cosign';

export function cosignAvailable(): boolean {
  return findTool('cosign') !== undefined;
}

export interface RunResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

const home = mkdtempSync(join(tmpdir(), 'stella-cosign-home-'));

/**
 * Runs cosign with a throwaway HOME (no ~/.sigstore cache) and no proxy to the
 * outside; `env` adds e.g. COSIGN_PASSWORD. Bounded by a timeout.
 */
export function cosign(args: readonly string[], env: Record<string, string> = {}, cwd?: string, timeoutMs = 90_000): RunResult {
  const r = spawnSync(COSIGN_BIN, args, {
    cwd,
    encoding: 'utf8',
    timeout: timeoutMs,
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: home, TUF_ROOT: join(home, '.sigstore', 'root'), ...env },
  });
  return { status: r.status, stdout: r.stdout ?? '', stderr: `${r.stderr ?? ''}${r.error ? `\n${r.error.message}` : ''}` };
}

export function show(r: RunResult): string {
  return `exit ${r.status}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
}
