import { spawn, type ChildProcess } from 'node:child_process';

export interface CliRun {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Runs `node <argv>` asynchronously — servers the test runs in this process
 * (registry proxies, mock Sigstore) keep answering, which a spawnSync would
 * block. `watch` sees stderr as it grows (e.g. to kill the child at a point);
 * the child is killed after `timeoutMs`.
 */
export function runNode(argv: readonly string[], env: NodeJS.ProcessEnv, opts: { timeoutMs?: number; watch?: (stderr: string, child: ChildProcess) => void } = {}): Promise<CliRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, argv, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 480_000);
    child.stdout!.on('data', (d) => (stdout += String(d)));
    child.stderr!.on('data', (d) => {
      stderr += String(d);
      opts.watch?.(stderr, child);
    });
    child.on('error', reject);
    child.on('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
  });
}
