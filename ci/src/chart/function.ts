/**
 * The `chart` function as the front ends (CLI and Dagger) call it: plain arguments in, the
 * result JSON out (`{ref, digest, version, …}`). The work is chartStep (./publish.ts).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { StellaError } from '../errors.ts';
import { readBuildDocument } from '../build/document.ts';
import { planTags } from '../tags/index.ts';
import { flag } from '../dagger/names.ts';
import { loadPrivateKey, loadPublicKey, type BundleTrust } from '../sign/index.ts';
import { Registries, identityTrust, signingKeyless, signingWithKey, type Signing, type StepIo } from '../release/context.ts';
import { DEFAULT_NAMESPACE, DEFAULT_OUT, DEFAULT_REGISTRY, registryAccess, resolveRevision } from '../release/pipeline.ts';
import { SUPPORT_LOCK_PATH_IN_REPO, type SupportLockLike, chartStep } from './publish.ts';

type A = Readonly<Record<string, string | boolean | number | undefined>>;
const str = (a: A, k: string): string | undefined => (a[k] === undefined || a[k] === '' ? undefined : String(a[k]));

/** Where the .tgz goes by default, relative to the checkout. */
export const DEFAULT_CHART_OUT = `${DEFAULT_OUT}/charts`;

async function readText(path: string, what: string): Promise<string> {
  return readFile(path, 'utf8').catch((e: Error) => {
    throw new StellaError('NOT_FOUND', `${what} ${path}: ${e.message}`);
  });
}

/** The support image lock: the given file (which must exist), else the committed one when present. */
export async function loadSupportLock(source: string, given?: string): Promise<SupportLockLike | undefined> {
  const path = given ? resolve(source, given) : join(source, SUPPORT_LOCK_PATH_IN_REPO);
  if (!given && !existsSync(path)) return undefined;
  let lock: unknown;
  try {
    lock = JSON.parse(await readText(path, '--support-lock'));
  } catch (e) {
    if (e instanceof StellaError) throw e;
    throw new StellaError('INVALID_ARGUMENT', `--support-lock ${path} is not JSON: ${(e as Error).message}`);
  }
  const l = lock as { lockVersion?: unknown; images?: unknown };
  if (l.lockVersion !== 1 || typeof l.images !== 'object' || l.images === null) throw new StellaError('LOCK_MISMATCH', `--support-lock ${path}: not a support image lock (expected {lockVersion: 1, images: {…}})`);
  return lock as SupportLockLike;
}

function signingOf(a: A): Signing | undefined {
  const token = str(a, 'identityToken');
  const key = str(a, 'key');
  if (token && key) throw new StellaError('INVALID_ARGUMENT', 'give --key or --identity-token, not both');
  if (token) return signingKeyless({ identityToken: token, fulcioUrl: str(a, 'fulcioUrl'), rekorUrl: str(a, 'rekorUrl') });
  if (key) return signingWithKey(loadPrivateKey(key, str(a, 'keyPassword') ?? '', 'signing key'));
  return undefined;
}

async function trustOf(a: A, source: string): Promise<BundleTrust | undefined> {
  const pemPath = str(a, 'publicKey');
  const rootPath = str(a, 'trustedRoot');
  const identity = identityTrust({
    certificateIdentity: str(a, 'certificateIdentity'),
    certificateOidcIssuer: str(a, 'certificateOidcIssuer'),
    trustedRoot: rootPath ? await readText(resolve(source, rootPath), flag('trustedRoot')) : undefined,
    insecureIgnoreSct: a.insecureIgnoreSct === true,
  });
  if (pemPath && identity) throw new StellaError('INVALID_ARGUMENT', 'give --public-key or the keyless identity options, not both');
  if (identity) return identity;
  if (!pemPath) return undefined;
  const pem = await readText(resolve(source, pemPath), flag('publicKey'));
  loadPublicKey(pem, pemPath);
  return { publicKeyPem: pem };
}

export async function chartFn(a: A, io: StepIo & { readonly source: string }): Promise<string> {
  const imagesPath = str(a, 'images');
  if (!imagesPath) throw new StellaError('INVALID_ARGUMENT', `${flag('images')} is required (the release's build document, e.g. dist/build.json)`);
  const version = str(a, 'version');
  if (!version) throw new StellaError('INVALID_ARGUMENT', `${flag('version')} is required (vX.Y.Z, vX.Y.Z-rc.N, edge or nightly)`);
  const plan = planTags({ version, date: str(a, 'date') });
  const images = await readBuildDocument(resolve(io.source, imagesPath));
  const supportLock = await loadSupportLock(io.source, str(a, 'supportLock'));
  const signing = signingOf(a);
  const dryRun = a.dryRun === true;
  if (!signing && !dryRun) throw new StellaError('INVALID_ARGUMENT', 'chart: publishing signs the chart: give --key env:NAME|file:PATH or --identity-token (or --dry-run to package only)');
  const trust = await trustOf(a, io.source);
  if (signing?.signer.kind === 'keyless' && !trust && !dryRun) io.progress('chart: keyless signing without --certificate-identity/--certificate-oidc-issuer/--trusted-root: the signature is not verified here');
  const epoch = a.sourceDateEpoch !== undefined ? Number(a.sourceDateEpoch) : resolveRevision(io.source, str(a, 'gitCommit')).time;
  const registries = new Registries(registryAccess({ registryUsername: str(a, 'registryUsername'), registryPassword: str(a, 'registryPassword'), dockerConfig: str(a, 'dockerConfig') }));
  const result = await chartStep(
    {
      source: io.source,
      images,
      supportLock,
      chartVersion: plan.chartVersion,
      appVersion: plan.imageVersion,
      registry: str(a, 'registry') ?? DEFAULT_REGISTRY,
      namespace: str(a, 'namespace') ?? DEFAULT_NAMESPACE,
      sourceDateEpoch: epoch,
      outDir: resolve(io.source, str(a, 'out') ?? DEFAULT_CHART_OUT),
      registries,
      signing,
      trust,
      dryRun,
    },
    io,
  );
  return JSON.stringify(result, null, 2);
}
