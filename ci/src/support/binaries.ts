/**
 * The Go binaries the support images carry (SeaweedFS's `weed`, the OpenTelemetry collector),
 * found where their builds cache them, for what runs them on the host (the chart's smoke, the
 * services' tests): the path an environment variable names, else the newest executable of that
 * name for this host's architecture under the support cache or /var/cache/stella-tools.
 */
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** Directories of modules, build caches and packages: never where a built binary is. */
const SKIP = ['debs', 'go', 'go-build', 'pkg', 'mod', 'kubernetes'];

export function findCachedBinary(envVar: string, pattern: RegExp): string | undefined {
  const fromEnv = process.env[envVar];
  if (fromEnv && existsSync(fromEnv)) return fromEnv;
  const other = process.arch === 'arm64' ? /amd64/ : /arm64/;
  const found: { path: string; mtime: number }[] = [];
  const walk = (dir: string, depth: number): void => {
    if (depth > 4 || !existsSync(dir)) return;
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      let st;
      try {
        st = statSync(p);
      } catch {
        continue;
      }
      if (st.isDirectory()) {
        if (!SKIP.includes(name)) walk(p, depth + 1);
      } else if (pattern.test(name) && st.mode & 0o111 && st.size > 1_000_000 && !other.test(p)) found.push({ path: p, mtime: st.mtimeMs });
    }
  };
  for (const r of [join(process.env.STELLA_CACHE || '/var/tmp/stella-cache', 'support'), '/var/cache/stella-tools']) walk(r, 0);
  return found.sort((a, b) => b.mtime - a.mtime)[0]?.path;
}

export const weedBinary = (): string | undefined => findCachedBinary('STELLA_WEED_BIN', /^weed(-(amd64|arm64))?$/);
export const otelcolBinary = (): string | undefined => findCachedBinary('STELLA_OTELCOL_BIN', /^otelcol[-a-z]*(-(amd64|arm64))?$/);
