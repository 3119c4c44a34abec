/** Runs a program (no shell) with a time limit; failures name the command and show its stderr. */
import { execFile, spawn } from 'node:child_process';
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

export interface Exit {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs a program (no shell) and resolves with its exit status and output whatever the status (a
 * caller that reports each failure itself); killed after `timeoutMs`; `input` goes to its stdin.
 */
export function runForStatus(cmd: string, args: readonly string[], o: { readonly cwd?: string; readonly env?: NodeJS.ProcessEnv; readonly timeoutMs: number; readonly input?: string }): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: o.cwd, env: o.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), o.timeoutMs);
    child.stdout.on('data', (d) => (stdout += String(d)));
    child.stderr.on('data', (d) => (stderr += String(d)));
    child.on('error', reject);
    child.on('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
    child.stdin.end(o.input ?? '');
  });
}
