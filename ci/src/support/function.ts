/**
 * The `support-images` function (CLI and Dagger): the arguments of its
 * definition in ci/src/functions.ts mapped onto buildSupportImages /
 * resolveSupportImages. Prints the lock it wrote.
 */
import { resolve } from 'node:path';
import { StellaError } from '../errors.ts';
import { DEFAULT_NAMESPACE, DEFAULT_REGISTRY, registryAccess } from '../release/pipeline.ts';
import { buildSupportImages, SUPPORT_LOCK_FILE } from './index.ts';
import { resolveSupportImages } from './resolve.ts';

type A = Readonly<Record<string, string | boolean | number | undefined>>;
const str = (a: A, k: string): string | undefined => (typeof a[k] === 'string' && a[k] !== '' ? (a[k] as string) : undefined);

/** `docker.io=127.0.0.1:5055,ghcr.io=mirror:5000` → a map. */
export function parseMirrors(s: string | undefined): Record<string, string> | undefined {
  if (!s) return undefined;
  const out: Record<string, string> = {};
  for (const part of s.split(',').map((x) => x.trim()).filter(Boolean)) {
    const i = part.indexOf('=');
    if (i <= 0) throw new StellaError('INVALID_ARGUMENT', `mirrors: "${part}" is not registry=host[:port] (e.g. docker.io=127.0.0.1:5055)`);
    out[part.slice(0, i)] = part.slice(i + 1);
  }
  return out;
}

export async function supportImagesFn(a: A, io: { source: string; progress(line: string): void }): Promise<string> {
  const names = str(a, 'services')?.split(',').map((s) => s.trim()).filter(Boolean);
  const lockFile = str(a, 'lockFile') ? resolve(io.source, str(a, 'lockFile')!) : SUPPORT_LOCK_FILE;
  const access = registryAccess({ registryUsername: str(a, 'registryUsername'), registryPassword: str(a, 'registryPassword'), dockerConfig: str(a, 'dockerConfig') });
  if (a.resolve === true) {
    const { lock } = await resolveSupportImages({ ...(names ? { names } : {}), ...(parseMirrors(str(a, 'mirrors')) ? { mirrors: parseMirrors(str(a, 'mirrors'))! } : {}), lockFile, registryOptions: access, progress: (l) => io.progress(l) });
    return JSON.stringify(lock, null, 2);
  }
  const { lock } = await buildSupportImages({
    source: io.source,
    ...(names ? { names } : {}),
    push: { registry: str(a, 'registry') ?? DEFAULT_REGISTRY, namespace: str(a, 'namespace') ?? DEFAULT_NAMESPACE },
    ...(str(a, 'ociLayout') ? { ociLayout: resolve(io.source, str(a, 'ociLayout')!) } : {}),
    ...(str(a, 'sbomDir') ? { sbomDir: resolve(io.source, str(a, 'sbomDir')!) } : {}),
    lockFile,
    updateLock: a.updateLock === true,
    ...(typeof a.sourceDateEpoch === 'number' ? { sourceDateEpoch: a.sourceDateEpoch } : {}),
    registryOptions: access,
    progress: (l) => io.progress(l),
  });
  return JSON.stringify(lock, null, 2);
}
