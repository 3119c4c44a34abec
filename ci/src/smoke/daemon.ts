/**
 * A fresh Docker daemon for the Compose smoke test: its own empty data-root, exec-root,
 * socket and pidfile, started here and stopped after. It shares the host's network
 * namespace, so it must not touch the host's networking:
 *
 *   --bridge=<own>           a default bridge of its own, created here and deleted at stop. NOT
 *                            --bridge=none: with it, dockerd deletes an existing docker0 at start
 *                            ("cleaning up" the default bridge) and cuts the host daemon's
 *                            containers off the network
 *   --iptables=false --ip6tables=false --ip-masq=false
 *                            no NAT or filter rules of its own; published ports go through
 *                            docker-proxy (userland), which needs no rules
 *   --containerd-namespace   its own namespaces in its own managed containerd (under exec-root)
 *
 * The compose network is a user-defined bridge with a name chosen here (compose override
 * `com.docker.network.bridge.name`). With br_netfilter loaded (bridge-nf-call-iptables=1) and
 * the host's FORWARD policy DROP, traffic between two containers on that bridge is filtered
 * by the host's FORWARD chain and dropped, so one rule accepts it — for that bridge only:
 *   iptables -I FORWARD -i <bridge> -o <bridge> -j ACCEPT
 * (removed at stop). Turning br_netfilter off instead would change the host's Docker too.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { StellaError } from '../errors.ts';

export interface FreshDaemon {
  /** DOCKER_HOST for clients: unix://<root>/docker.sock */
  readonly host: string;
  readonly pid: number;
  readonly root: string;
  /** The bridge the compose network must use (compose override), allowed through FORWARD. */
  readonly bridge: string;
  stop(): Promise<void>;
}

export interface FreshDaemonOptions {
  /** An empty directory of its own: data-root, exec-root, socket, pidfile, log. */
  readonly root: string;
  /** Bridge interface name for the compose network (≤ 15 characters). */
  readonly bridge: string;
  readonly dockerd?: string;
  readonly iptables?: string;
  readonly progress?: (line: string) => void;
}

function has(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

export function forwardRule(bridge: string): string[] {
  return ['FORWARD', '-i', bridge, '-o', bridge, '-j', 'ACCEPT'];
}

export async function startFreshDaemon(o: FreshDaemonOptions): Promise<FreshDaemon> {
  if (!/^[a-z][a-z0-9]{1,14}$/.test(o.bridge)) throw new StellaError('INVALID_ARGUMENT', `bridge name "${o.bridge}" must be 2-15 lowercase letters and digits`);
  const dockerd = o.dockerd ?? (existsSync('/usr/sbin/dockerd') ? '/usr/sbin/dockerd' : 'dockerd');
  const iptables = o.iptables ?? 'iptables';
  if (process.getuid?.() !== 0) throw new StellaError('INVALID_ARGUMENT', 'a fresh Docker daemon needs root (it mounts overlay filesystems); run as root or pass --docker-host');
  if (!has(iptables)) throw new StellaError('NOT_FOUND', `${iptables} not found: the fresh daemon's bridge needs one FORWARD rule`);
  const data = join(o.root, 'data');
  const exec = join(o.root, 'exec');
  mkdirSync(data, { recursive: true });
  mkdirSync(exec, { recursive: true });
  const sock = join(o.root, 'docker.sock');
  const log = openSync(join(o.root, 'dockerd.log'), 'a');
  // The daemon's own default bridge (see the header: never --bridge=none, never docker0).
  const defaultBridge = `${o.bridge.slice(0, 13)}d0`;
  const made = spawnSync('ip', ['link', 'add', defaultBridge, 'type', 'bridge'], { encoding: 'utf8' });
  if (made.status !== 0) throw new StellaError('BUILD_FAILED', `ip link add ${defaultBridge} type bridge failed: ${made.stderr.trim()}`);
  const args = [
    `--host=unix://${sock}`,
    `--data-root=${data}`,
    `--exec-root=${exec}`,
    `--pidfile=${join(o.root, 'docker.pid')}`,
    `--bridge=${defaultBridge}`,
    '--iptables=false',
    '--ip6tables=false',
    '--ip-masq=false',
    '--containerd-namespace=stella-smoke',
    '--containerd-plugins-namespace=stella-smoke-plugins',
    '--userland-proxy=true',
  ];
  const child = spawn(dockerd, args, { stdio: ['ignore', log, log], detached: true });
  child.unref();
  const pid = child.pid!;
  const host = `unix://${sock}`;
  const rule = forwardRule(o.bridge);
  const iptablesRun = (op: '-I' | '-D') => spawnSync(iptables, ['-w', op, ...rule], { encoding: 'utf8' });
  const stop = async () => {
    while (iptablesRun('-D').status === 0) {
      // remove every copy of the rule
    }
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
    for (let i = 0; i < 60 && alive(pid); i++) await new Promise((r) => setTimeout(r, 500));
    if (alive(pid)) process.kill(pid, 'SIGKILL');
    // Whatever is still mounted below the root (a daemon that had to be killed) is unmounted first.
    const mounts = readFileSync('/proc/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => m.startsWith(o.root)).reverse();
    for (const m of mounts) spawnSync('umount', ['-l', m]);
    // Its bridges outlive it (a daemon does not delete a network's bridge when it stops).
    for (const b of [defaultBridge, o.bridge]) spawnSync('ip', ['link', 'del', b], { stdio: 'ignore' });
    rmSync(o.root, { recursive: true, force: true });
  };
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (spawnSync('docker', ['-H', host, 'version', '--format', '{{.Server.Version}}'], { stdio: 'ignore', timeout: 10_000 }).status === 0) break;
    if (!alive(pid) || Date.now() > deadline) {
      const tail = existsSync(join(o.root, 'dockerd.log')) ? readFileSync(join(o.root, 'dockerd.log'), 'utf8').split('\n').slice(-10).join('\n') : '';
      await stop();
      throw new StellaError('BUILD_FAILED', `the fresh Docker daemon did not come up within 60 s:\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 300));
  }
  const r = iptablesRun('-I');
  if (r.status !== 0) {
    await stop();
    throw new StellaError('BUILD_FAILED', `iptables ${['-I', ...rule].join(' ')} failed: ${r.stderr.trim()}`);
  }
  o.progress?.(`fresh Docker daemon pid ${pid} at ${host} (bridge ${o.bridge} allowed through FORWARD)`);
  return { host, pid, root: o.root, bridge: o.bridge, stop };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The pids of processes whose parent is `pid` (docker-proxy children of a dockerd). */
export function childPids(pid: number): number[] {
  const r = spawnSync('ps', ['-o', 'pid=', '--ppid', String(pid)], { encoding: 'utf8' });
  return r.stdout.split('\n').map((x) => Number(x.trim())).filter((x) => x > 0);
}
