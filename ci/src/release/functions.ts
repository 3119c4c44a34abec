/**
 * The publishing functions as the front ends (CLI and Dagger) call them: each
 * takes plain arguments (paths, strings, resolved secrets) and returns the
 * JSON document it prints.
 */
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { StellaError } from '../errors.ts';
import { readBuildDocument, build, writeBuildDocument } from '../build/index.ts';
import { buildBase, fetchBaseInputs } from '../base/index.ts';
import { pushLayout } from '../registry/index.ts';
import { loadPrivateKey, loadPublicKey } from '../sign/index.ts';
import { planTags } from '../tags/index.ts';
import { selectServices } from '../catalog/index.ts';
import { Registries, signingWithKey, type Signing, type StepIo } from './context.ts';
import { sourceRevision } from './git.ts';
import { sbomStep } from './sbom.ts';
import { signStep } from './signatures.ts';
import { provenanceStep } from './provenance.ts';
import { verifyStep } from './verify.ts';
import { publishStep } from './publish.ts';
import { BASE_REPOSITORY, DEFAULT_NAMESPACE, DEFAULT_REGISTRY, SOURCE_REPOSITORY, registryCredentials, release } from './pipeline.ts';

type A = Readonly<Record<string, string | boolean | number | undefined>>;
const str = (a: A, k: string): string | undefined => (a[k] === undefined ? undefined : String(a[k]));
const req = (a: A, k: string, what: string): string => {
  const v = str(a, k);
  if (!v) throw new StellaError('INVALID_ARGUMENT', `--${k.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} is required (${what})`);
  return v;
};

function registries(a: A): Registries {
  const credentials = registryCredentials(str(a, 'registryUsername'), str(a, 'registryPassword'));
  return new Registries(credentials ? { credentials } : {});
}

function keySigning(a: A): Signing {
  return signingWithKey(loadPrivateKey(req(a, 'key', 'the signing key: env:NAME or file:PATH'), str(a, 'keyPassword') ?? '', 'signing key'));
}

async function trust(a: A, source: string): Promise<{ publicKeyPem: string }> {
  const path = req(a, 'publicKey', 'the public key to trust, e.g. dist/keys/cosign.pub');
  const pem = await readFile(resolve(source, path), 'utf8').catch((e: Error) => {
    throw new StellaError('INVALID_ARGUMENT', `--public-key ${path}: ${e.message}`);
  });
  loadPublicKey(pem, path);
  return { publicKeyPem: pem };
}

async function images(a: A, source: string) {
  return readBuildDocument(resolve(source, req(a, 'images', 'the build document written by `build --output`, e.g. dist/build.json')));
}

function revision(a: A, source: string): { commit: string; time: number } {
  const commit = str(a, 'gitCommit');
  const time = a.sourceDateEpoch as number | undefined;
  if (commit && time !== undefined) return { commit, time };
  const rev = sourceRevision(source);
  return { commit: commit ?? rev.commit, time: time ?? rev.time };
}

const secretsOf = (a: A) => [a.keyPassword, a.registryPassword].filter((s): s is string => typeof s === 'string' && s.length > 0);
const json = (v: unknown) => JSON.stringify(v, null, 2);

export async function buildBaseFn(a: A, io: StepIo & { source: string }): Promise<string> {
  const registry = str(a, 'registry') ?? DEFAULT_REGISTRY;
  const namespace = str(a, 'namespace') ?? DEFAULT_NAMESPACE;
  const layout = resolve(io.source, str(a, 'ociLayout') ?? 'dist/base-layout');
  await fetchBaseInputs({ updateLock: a.updateLock === true, log: (l) => io.progress(l) });
  const { time } = revision(a, io.source);
  const base = await buildBase({ outLayout: layout, sourceDateEpoch: time });
  const repo = `${namespace}/${BASE_REPOSITORY}`;
  await pushLayout(registries(a).client(registry), layout, repo, base.indexDigest);
  return json({ ref: `${registry}/${repo}@${base.indexDigest}`, digest: base.indexDigest, platforms: base.platforms, layout, nodeVersion: base.nodeVersion });
}

export async function buildFn(a: A, io: StepIo & { source: string }): Promise<string> {
  const { commit, time } = revision(a, io.source);
  const layout = str(a, 'ociLayout');
  const registry = str(a, 'registry');
  const doc = await build({
    source: io.source,
    services: selectServices(str(a, 'services')).map((s) => s.name),
    version: req(a, 'version', 'the version baked into the images'),
    gitCommit: commit,
    sourceDateEpoch: time,
    base: req(a, 'base', 'the base image by digest: host/repo@sha256:… or oci:<dir>'),
    push: registry || !layout ? { registry: registry ?? DEFAULT_REGISTRY, namespace: str(a, 'namespace') ?? DEFAULT_NAMESPACE } : undefined,
    ociLayout: layout ? resolve(io.source, layout) : undefined,
    platforms: str(a, 'platforms')?.split(',').map((p) => p.trim()),
    registryOptions: (() => {
      const credentials = registryCredentials(str(a, 'registryUsername'), str(a, 'registryPassword'));
      return credentials ? { credentials } : undefined;
    })(),
    progress: (l) => io.progress(l),
  });
  return json(doc);
}

export async function sbomFn(a: A, io: StepIo & { source: string }): Promise<string> {
  const { time } = revision(a, io.source);
  const r = await sbomStep({ images: await images(a, io.source), registries: registries(a), signing: keySigning(a), sourceDateEpoch: time, toolVersion: 'stella-release', secrets: secretsOf(a), outDir: str(a, 'outDir') }, io);
  return json({ sboms: r });
}

export async function signFn(a: A, io: StepIo & { source: string }): Promise<string> {
  return json({ signatures: await signStep({ images: await images(a, io.source), registries: registries(a), signing: keySigning(a) }, io) });
}

export async function provenanceFn(a: A, io: StepIo & { source: string }): Promise<string> {
  const { commit, time } = revision(a, io.source);
  const plan = planTags({ version: req(a, 'version', 'the version being released'), ref: str(a, 'ref') });
  const base = req(a, 'base', 'the base image the build used, by digest');
  const doc = await images(a, io.source);
  const now = new Date();
  const r = await provenanceStep(
    {
      images: doc,
      registries: registries(a),
      signing: keySigning(a),
      version: plan.imageVersion,
      source: { repository: SOURCE_REPOSITORY, commit, ref: str(a, 'ref') },
      sourceDateEpoch: time,
      baseImage: { uri: base.slice(0, base.lastIndexOf('@')), digest: base.slice(base.lastIndexOf('@') + 1) },
      builderId: 'https://stellaops.io/builders/stella-release/local',
      invocation: { startedOn: now, finishedOn: now },
      toolVersions: { node: process.version },
      secrets: secretsOf(a),
    },
    io,
  );
  return json({ provenance: r });
}

export async function verifyFn(a: A, io: StepIo & { source: string }): Promise<string> {
  const r = await verifyStep({ images: await images(a, io.source), registries: registries(a), trust: await trust(a, io.source), spdxSchema: str(a, 'spdxSchema') }, io);
  return json({ verified: r });
}

export async function publishFn(a: A, io: StepIo & { source: string }): Promise<string> {
  const plan = planTags({ version: req(a, 'version', 'the version whose tags to publish'), ref: str(a, 'ref'), date: str(a, 'date') });
  const r = await publishStep({ images: await images(a, io.source), registries: registries(a), trust: await trust(a, io.source), plan, dryRun: a.dryRun === true }, io);
  return json({ tags: r });
}

export async function releaseFn(a: A, io: StepIo & { source: string }): Promise<string> {
  const record = await release(
    {
      source: io.source,
      version: req(a, 'version', 'vX.Y.Z, vX.Y.Z-rc.N, edge or nightly'),
      ref: str(a, 'ref'),
      date: str(a, 'date'),
      registry: str(a, 'registry'),
      namespace: str(a, 'namespace'),
      services: str(a, 'services'),
      base: str(a, 'base'),
      key: str(a, 'key'),
      keyPassword: str(a, 'keyPassword'),
      registryUsername: str(a, 'registryUsername'),
      registryPassword: str(a, 'registryPassword'),
      out: str(a, 'out') ? resolve(io.source, str(a, 'out')!) : join(io.source, 'dist'),
      dryRun: a.dryRun === true,
    },
    io,
  );
  return json(record);
}

export { writeBuildDocument };
