/** Realistic inputs for the SBOM and provenance tests: this repo's lockfile and this host's dpkg database. */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NpmPackage } from '../../ci/src/sbom/index.ts';

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const FIXTURES = resolve(dirname(fileURLToPath(import.meta.url)), 'fixtures');

interface LockEntry { version?: string; license?: string; integrity?: string; dependencies?: Record<string, string>; dev?: boolean }

/**
 * The npm packages the services bundle: pg, nats, ioredis, prom-client and their
 * runtime dependencies, as package-lock.json pins them (what services/build.ts reports).
 */
export function serviceNpmPackages(roots: readonly string[] = ['pg', 'nats', 'ioredis', 'prom-client']): NpmPackage[] {
  const lock = JSON.parse(readFileSync(resolve(REPO_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const out = new Map<string, NpmPackage>();
  const queue = [...roots];
  while (queue.length > 0) {
    const name = queue.shift()!;
    if (out.has(name)) continue;
    const path = [`services/node_modules/${name}`, `node_modules/${name}`].find((p) => lock.packages[p]);
    if (!path) throw new Error(`package-lock.json has no entry for ${name}`);
    const e = lock.packages[path]!;
    out.set(name, { name, version: e.version!, license: e.license, ...(e.integrity ? { integrity: e.integrity } : {}), path });
    queue.push(...Object.keys(e.dependencies ?? {}));
  }
  return [...out.values()];
}

export const BASE_PACKAGES = ['libc6', 'libgcc-s1', 'libstdc++6', 'ca-certificates', 'tzdata'] as const;

export const DIGESTS = {
  index: `sha256:${'1a'.repeat(32)}`,
  amd64: `sha256:${'2b'.repeat(32)}`,
  arm64: `sha256:${'3c'.repeat(32)}`,
  base: `sha256:${'4d'.repeat(32)}`,
} as const;

export const COMMIT = '0123456789abcdef0123456789abcdef01234567';
export const REPOSITORY = 'registry.example.com/stellaops/stella-api';
/** 2026-01-02T03:04:05Z */
export const SOURCE_DATE_EPOCH = 1767323045;
