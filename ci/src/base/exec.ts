/** Runs a program (no shell) with a time limit; failures name the command and show its stderr. */
import { execFile } from 'node:child_process';
import { StellaError, type ErrorCode } from '../errors.ts';

export interface RunOptions {
  readonly cwd?: string;
  readonly timeoutMs?: number;
  readonly env?: NodeJS.ProcessEnv;
  readonly code?: ErrorCode;
}

export function run(cmd: string, args: readonly string[], opts: RunOptions = {}): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    execFile(
      cmd,
      args,
      { cwd: opts.cwd, env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 300_000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err) {
          const tail = String(stderr || err.message).trim().split('\n').slice(-8).join('\n');
          reject(new StellaError(opts.code ?? 'FETCH_FAILED', `${cmd} ${args.join(' ')} failed (${err.killed ? 'timed out' : `exit ${String(err.code)}`}): ${tail}`, { cause: err }));
        } else resolve({ stdout, stderr });
      },
    );
  });
}
