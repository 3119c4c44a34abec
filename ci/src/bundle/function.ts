/**
 * The bundle functions as the front ends (CLI and Dagger) call them: plain arguments in,
 * JSON out. The work is in ./create.ts, ./verify.ts and ./load.ts.
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { StellaError } from '../errors.ts';
import { readBuildDocument } from '../build/document.ts';
import { flag } from '../dagger/names.ts';
import { Registries, identityTrust, signingWithKey, type StepIo } from '../release/context.ts';
import { DEFAULT_OUT, registryAccess, resolveRevision } from '../release/pipeline.ts';
import { loadPrivateKey, loadPublicKey, type BundleTrust } from '../sign/index.ts';
import { readSupportLock, SUPPORT_LOCK_FILE } from '../support/index.ts';
import { attestLockedSupportImages } from '../support/attest.ts';
import { createBundle, type SupportImageLock } from './create.ts';
import { DEFAULT_BUDGET, type ExtractBudget } from './format.ts';
import { loadBundle } from './load.ts';
import { verifyBundle } from './verify.ts';

type A = Readonly<Record<string, string | boolean | number | undefined>>;
type FnIo = StepIo & { readonly source: string };
const str = (a: A, k: string): string | undefined => (a[k] === undefined || a[k] === '' ? undefined : String(a[k]));
const req = (a: A, k: string, what: string): string => {
  const v = str(a, k);
  if (!v) throw new StellaError('INVALID_ARGUMENT', `${flag(k)} is required (${what})`);
  return v;
};
const access = (a: A) => registryAccess({ registryUsername: str(a, 'registryUsername'), registryPassword: str(a, 'registryPassword'), dockerConfig: str(a, 'dockerConfig') });
const json = (v: unknown) => JSON.stringify(v, null, 2);

async function readArg(a: A, k: string, source: string): Promise<string | undefined> {
  const p = str(a, k);
  if (!p) return undefined;
  return readFile(resolve(source, p), 'utf8').catch((e: Error) => {
    throw new StellaError('INVALID_ARGUMENT', `${flag(k)} ${p}: ${e.message}`);
  });
}

/** --public-key, or the keyless identity options; undefined: the bundle's own key. */
async function trustOf(a: A, source: string): Promise<{ publicKeyPem?: string; trust?: BundleTrust }> {
  const pem = await readArg(a, 'publicKey', source);
  const identity = identityTrust({ certificateIdentity: str(a, 'certificateIdentity'), certificateOidcIssuer: str(a, 'certificateOidcIssuer'), trustedRoot: await readArg(a, 'trustedRoot', source), insecureIgnoreSct: a.insecureIgnoreSct === true });
  if (pem && identity) throw new StellaError('INVALID_ARGUMENT', 'give --public-key or the keyless identity options, not both');
  if (pem) {
    loadPublicKey(pem, String(a.publicKey));
    return { publicKeyPem: pem };
  }
  return identity ? { trust: identity } : {};
}

function budgetOf(a: A): ExtractBudget {
  const gib = typeof a.maxGib === 'number' ? a.maxGib : undefined;
  if (gib !== undefined && (!Number.isInteger(gib) || gib <= 0)) throw new StellaError('INVALID_ARGUMENT', `--max-gib ${gib}: expected a positive whole number`);
  return gib ? { ...DEFAULT_BUDGET, maxBytes: gib * 1024 ** 3 } : DEFAULT_BUDGET;
}

async function supportLockOf(a: A, source: string): Promise<SupportImageLock> {
  const path = str(a, 'supportLock') ? resolve(source, str(a, 'supportLock')!) : SUPPORT_LOCK_FILE;
  if (!existsSync(path)) throw new StellaError('NOT_FOUND', `--support-lock ${path}: no such file (run support-images first)`);
  return (await readSupportLock(path)) as unknown as SupportImageLock;
}

export async function bundleFn(a: A, io: FnIo): Promise<string> {
  const version = req(a, 'version', 'the release version, e.g. v1.4.0');
  const images = await readBuildDocument(resolve(io.source, req(a, 'images', 'the build document of the release, e.g. dist/build.json')));
  const key = loadPrivateKey(req(a, 'key', 'the release signing key (env:NAME or file:PATH): it signs checksums.txt'), str(a, 'keyPassword') ?? '', 'signing key');
  const rev = resolveRevision(io.source, str(a, 'gitCommit'), a.sourceDateEpoch as number | undefined);
  const level = typeof a.zstdLevel === 'number' ? a.zstdLevel : undefined;
  if (level !== undefined && (!Number.isInteger(level) || level < 1 || level > 22)) throw new StellaError('INVALID_ARGUMENT', `--zstd-level ${level}: expected 1 … 22`);
  const result = await createBundle({
    source: io.source,
    version,
    images,
    supportLock: await supportLockOf(a, io.source),
    registries: new Registries(access(a)),
    signing: signingWithKey(key),
    sourceDateEpoch: rev.time,
    commit: rev.commit,
    outDir: resolve(io.source, str(a, 'out') ?? DEFAULT_OUT),
    ...(str(a, 'since') ? { since: resolve(io.source, str(a, 'since')!) } : {}),
    ...(level !== undefined ? { zstdLevel: level } : {}),
    progress: (l) => io.progress(l),
  });
  return json(result);
}

export async function bundleVerifyFn(a: A, io: FnIo): Promise<string> {
  const file = resolve(io.source, req(a, 'bundle', 'the bundle file, e.g. dist/stella-bundle-v1.4.0.tar.zst'));
  const t = await trustOf(a, io.source);
  const extractTo = str(a, 'extractTo') ? resolve(io.source, str(a, 'extractTo')!) : undefined;
  const v = await verifyBundle({ file, ...t, ...(extractTo ? { dest: extractTo, keep: true } : {}), budget: budgetOf(a), progress: (l) => io.progress(l) });
  if (v.key === 'bundled') io.progress('verified with the key inside the bundle: this proves the bundle is intact, not who made it; pass --public-key with the key from the release page');
  return json({ ok: true, version: v.manifest.version, files: v.files, bytes: v.bytes, key: v.key, fingerprint: v.fingerprint, images: v.lock.images.length, differentialSince: v.manifest.base?.version, checked: v.checked, ...(extractTo ? { extractedTo: extractTo } : {}) });
}

export async function bundleLoadFn(a: A, io: FnIo): Promise<string> {
  const file = resolve(io.source, req(a, 'bundle', 'the bundle file, e.g. stella-bundle-v1.4.0.tar.zst'));
  const to = req(a, 'to', 'the registry to load into, host:port, e.g. registry.local:5000');
  const t = await trustOf(a, io.source);
  const out = str(a, 'out') ? resolve(io.source, str(a, 'out')!) : join(dirname(file), `${basename(file).replace(/\.tar\.zst$/, '')}-${to.replace(/[^A-Za-z0-9.-]/g, '_')}`);
  const r = await loadBundle({ file, to, registries: new Registries(access(a)), ...t, out, tag: a.noTag !== true, budget: budgetOf(a), progress: (l) => io.progress(l) });
  return json(r);
}

/**
 * The support images, built reproducibly (the digests must be the lock's) and pushed to
 * their registry, then signed and attested there as the StellaOps images are.
 */
export async function attestSupportImagesFn(a: A, io: FnIo): Promise<string> {
  const version = req(a, 'version', 'the release these images ship with, e.g. v1.4.0');
  const lockPath = str(a, 'supportLock') ? resolve(io.source, str(a, 'supportLock')!) : SUPPORT_LOCK_FILE;
  const lock = await readSupportLock(lockPath);
  const key = loadPrivateKey(req(a, 'key', 'the release signing key: env:NAME or file:PATH'), str(a, 'keyPassword') ?? '', 'signing key');
  const rev = resolveRevision(io.source, str(a, 'gitCommit'), a.sourceDateEpoch as number | undefined);
  const signing = signingWithKey(key);
  const secrets = [str(a, 'keyPassword'), str(a, 'registryPassword')].filter((x): x is string => !!x && x.length >= 8);
  const sbomDir = str(a, 'sbomDir') ? resolve(io.source, str(a, 'sbomDir')!) : undefined;
  const attested = await attestLockedSupportImages(
    { source: io.source, lock, lockPath, ...(sbomDir ? { sbomDir } : {}), registries: new Registries(access(a)), registryOptions: access(a), signing, version, commit: rev.commit, sourceDateEpoch: rev.time, secrets },
    io,
  );
  return json({ attested });
}
