/**
 * The pipeline's functions as the CLI exposes them. The Dagger module (index.ts)
 * exposes the same functions, with the same names and arguments; a test reads
 * index.ts and fails when the two drift apart.
 *
 * Names are camelCase here, as in TypeScript; both front ends show them in
 * kebab-case (`dagger call build-base`, `stella-release build-base`).
 */
import { catalog, assertValidCatalog } from './catalog/index.ts';
import { planTags } from './tags/index.ts';
import { checkGenerated, writeGenerated } from './generate/index.ts';
import { StellaError } from './errors.ts';
import { buildBaseFn, buildFn, provenanceFn, publishFn, releaseFn, sbomFn, signFn, verifyFn } from './release/functions.ts';

export type ArgType = 'string' | 'boolean' | 'integer' | 'directory' | 'file' | 'secret';

export interface ArgSpec {
  readonly name: string;
  readonly type: ArgType;
  readonly description: string;
  readonly required?: boolean;
  /** Only in the CLI (e.g. `--output FILE`): Dagger returns the value instead. */
  readonly cliOnly?: boolean;
}

/** Values of parsed arguments; secrets arrive already resolved, never printed. */
export type Args = Readonly<Record<string, string | boolean | number | undefined>>;

export interface Io {
  /** The repository checkout the function works on (CLI: --source or the current directory; Dagger: the module's source Directory). */
  readonly source: string;
  /** Progress for humans; goes to stderr so that stdout stays machine-readable. */
  progress(line: string): void;
}

export interface FunctionSpec {
  readonly name: string;
  readonly description: string;
  readonly args: readonly ArgSpec[];
  /** Returns what the function prints on stdout (JSON for documents). */
  run(args: Args, io: Io): Promise<string>;
}

const registryArgs: readonly ArgSpec[] = [
  { name: 'registryUsername', type: 'string', description: 'registry user (with --registry-password); default: the Docker config, else anonymous' },
  { name: 'registryPassword', type: 'secret', description: 'registry password or token: env:NAME or file:PATH' },
  { name: 'dockerConfig', type: 'file', description: 'Docker config.json to take registry credentials from (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json when present)' },
];
const keyArgs: readonly ArgSpec[] = [
  { name: 'key', type: 'secret', description: 'signing key PEM (PKCS#8, SEC1 or cosign encrypted): env:NAME or file:PATH; or use --identity-token' },
  { name: 'keyPassword', type: 'secret', description: 'password of the signing key: env:NAME or file:PATH' },
  { name: 'identityToken', type: 'secret', description: 'keyless signing: an OIDC identity token for Fulcio (env:NAME or file:PATH), instead of --key' },
  { name: 'fulcioUrl', type: 'string', description: 'Fulcio for keyless signing (default https://fulcio.sigstore.dev)' },
  { name: 'rekorUrl', type: 'string', description: 'Rekor for keyless signing (default https://rekor.sigstore.dev)' },
];
/** What verification trusts: a public key, or (keyless) an identity with a trusted root. */
const trustArgs: readonly ArgSpec[] = [
  { name: 'certificateIdentity', type: 'string', description: 'keyless: the identity (certificate SAN, e.g. an email) that must have signed' },
  { name: 'certificateOidcIssuer', type: 'string', description: 'keyless: the OIDC issuer of that identity' },
  { name: 'trustedRoot', type: 'file', description: 'keyless: Sigstore trusted root JSON (Fulcio CAs, Rekor keys)' },
  { name: 'insecureIgnoreSct', type: 'boolean', description: 'keyless: accept certificates without an SCT (a private Fulcio without CT log)' },
];
const imagesArg: ArgSpec = { name: 'images', type: 'file', required: true, description: 'build document (from build --output), e.g. dist/build.json' };
const publicKeyArg: ArgSpec = { name: 'publicKey', type: 'file', description: 'public key to trust (PEM), e.g. dist/keys/cosign.pub; or the keyless identity options' };
const revisionArgs: readonly ArgSpec[] = [
  { name: 'gitCommit', type: 'string', description: 'commit the images are built from (default: git rev-parse HEAD)' },
  { name: 'sourceDateEpoch', type: 'integer', description: 'timestamp of everything built, seconds (default: the commit time)' },
];

export const functions: readonly FunctionSpec[] = [
  {
    name: 'catalog',
    description: 'Print the service catalog (services, support services, every configuration key) as JSON.',
    args: [],
    async run() {
      assertValidCatalog(catalog);
      return JSON.stringify(catalog, null, 2);
    },
  },
  {
    name: 'tags',
    description: 'Print the tags a version publishes, as JSON; refuses versions outside the tag scheme.',
    args: [
      { name: 'version', type: 'string', required: true, description: 'vX.Y.Z, vX.Y.Z-rc.N, edge or nightly' },
      { name: 'ref', type: 'string', description: 'git ref of the build (refs/tags/vX.Y.Z, refs/heads/main); must agree with the version' },
      { name: 'date', type: 'string', description: 'build date for nightly tags (YYYY-MM-DD or ISO-8601, UTC); defaults to now' },
    ],
    async run(a) {
      const plan = planTags({ version: String(a.version), ref: a.ref as string | undefined, date: a.date as string | undefined });
      return JSON.stringify(plan, null, 2);
    },
  },
  {
    name: 'generate',
    description: 'Regenerate every file derived from the catalog (docs tables, Dockerfiles, compose, chart values); with --check, only report drift and fail on it.',
    args: [{ name: 'check', type: 'boolean', description: 'fail, listing the files, when a generated file differs from what the catalog gives' }],
    async run(a, io) {
      if (a.check) {
        const drift = checkGenerated(io.source);
        if (drift.length) {
          throw new StellaError('CATALOG_INVALID', `generated files differ from the catalog (run \`npm run generate\`):\n  - ${drift.join('\n  - ')}`);
        }
        return JSON.stringify({ upToDate: true }, null, 2);
      }
      return JSON.stringify({ written: writeGenerated(io.source) }, null, 2);
    },
  },
  {
    name: 'buildBase',
    description: 'Build the offline distroless-style Node 24 base (Debian packages + Node from npm, pinned by ci/src/base/base.lock.json) for linux/amd64 and linux/arm64, reproducibly, and push it by digest.',
    args: [
      { name: 'registry', type: 'string', description: 'registry to push to (default 127.0.0.1:5000)' },
      { name: 'namespace', type: 'string', description: 'repository namespace (default stellaops)' },
      { name: 'ociLayout', type: 'string', description: 'OCI layout directory to write (default dist/base-layout)' },
      { name: 'updateLock', type: 'boolean', description: 'resolve the newest package versions and rewrite the lock file' },
      ...revisionArgs,
      ...registryArgs,
    ],
    run: (a, io) => buildBaseFn(a, io),
  },
  {
    name: 'build',
    description: 'Build the service images (all 11 or --services) for linux/amd64 and linux/arm64 as one OCI index each, reproducibly and without emulation; push them by digest. Prints {images:[{service,repository,digest,platforms}]}.',
    args: [
      { name: 'version', type: 'string', required: true, description: 'version baked into the images (vX.Y.Z, vX.Y.Z-rc.N, edge, nightly-YYYYMMDD)' },
      { name: 'base', type: 'string', required: true, description: 'base image by digest: host/repo@sha256:… or oci:<dir>[@sha256:…]' },
      { name: 'services', type: 'string', description: 'comma-separated services (default: all)' },
      { name: 'registry', type: 'string', description: 'registry to push to (default 127.0.0.1:5000)' },
      { name: 'namespace', type: 'string', description: 'repository namespace (default stellaops)' },
      { name: 'ociLayout', type: 'string', description: 'also (or, without --registry, only) write the images into this OCI layout' },
      { name: 'platforms', type: 'string', description: 'comma-separated platforms (default linux/amd64,linux/arm64)' },
      ...revisionArgs,
      ...registryArgs,
    ],
    run: (a, io) => buildFn(a, io),
  },
  {
    name: 'sbom',
    description: 'Generate SPDX 2.3 SBOMs (per platform and per index) from the images in the registry and attach each as a signed attestation and a plain application/spdx+json referrer.',
    args: [imagesArg, ...keyArgs, { name: 'outDir', type: 'string', description: 'also write the documents here' }, { name: 'sourceDateEpoch', type: 'integer', description: 'creation time of the documents (default: the commit time)' }, ...registryArgs],
    run: (a, io) => sbomFn(a, io),
  },
  {
    name: 'sign',
    description: 'Sign each image index digest as cosign v3 does (Sigstore bundle referrer) and as cosign v2 does (legacy .sig).',
    args: [imagesArg, ...keyArgs, ...registryArgs],
    run: (a, io) => signFn(a, io),
  },
  {
    name: 'provenance',
    description: 'Attach a signed in-toto SLSA v1 provenance to each image index (subjects: index and platform digests).',
    args: [imagesArg, ...keyArgs, { name: 'version', type: 'string', required: true, description: 'the version being released' }, { name: 'base', type: 'string', required: true, description: 'the base image the build used, by digest' }, { name: 'ref', type: 'string', description: 'git ref of the build' }, ...revisionArgs, ...registryArgs],
    run: (a, io) => provenanceFn(a, io),
  },
  {
    name: 'verify',
    description: 'Verify every image of a build: signatures (bundle and legacy), signed schema-valid SBOMs, signed provenance naming the right digests. Fails naming each image and missing or bad piece.',
    args: [imagesArg, publicKeyArg, ...trustArgs, { name: 'spdxSchema', type: 'string', description: 'SPDX 2.3 JSON schema for full validation (default: $SPDX_SCHEMA or ../shared/schemas)' }, ...registryArgs],
    run: (a, io) => verifyFn(a, io),
  },
  {
    name: 'publish',
    description: 'Set the version\'s tags on each image index, last: everything is verified first; an immutable release tag that points elsewhere is refused before any tag moves.',
    args: [imagesArg, publicKeyArg, ...trustArgs, { name: 'version', type: 'string', required: true, description: 'vX.Y.Z, vX.Y.Z-rc.N, edge or nightly' }, { name: 'ref', type: 'string', description: 'git ref of the build' }, { name: 'date', type: 'string', description: 'build date for nightly tags' }, { name: 'dryRun', type: 'boolean', description: 'decide and report; write no tag' }, ...registryArgs],
    run: (a, io) => publishFn(a, io),
  },
  {
    name: 'release',
    description: 'The whole release: base, build, sbom, sign, provenance, verify, publish; records everything in dist/ (build.json, release.json, SBOMs, provenance, public key, image catalog).',
    args: [
      { name: 'version', type: 'string', required: true, description: 'vX.Y.Z, vX.Y.Z-rc.N, edge or nightly' },
      { name: 'ref', type: 'string', description: 'git ref of the build; must agree with the version' },
      { name: 'date', type: 'string', description: 'build date for nightly tags' },
      { name: 'registry', type: 'string', description: 'registry (default 127.0.0.1:5000, the embedded local one)' },
      { name: 'namespace', type: 'string', description: 'repository namespace (default stellaops)' },
      { name: 'services', type: 'string', description: 'comma-separated services (default: all)' },
      { name: 'base', type: 'string', description: 'base image by digest (default: build the offline base and push it)' },
      { name: 'key', type: 'secret', description: 'signing key PEM: env:NAME or file:PATH (default: generate dist/keys/cosign.key, unless --identity-token)' },
      { name: 'keyPassword', type: 'secret', description: 'password of the signing key' },
      ...keyArgs.slice(2),
      ...trustArgs,
      { name: 'out', type: 'string', description: 'output directory (default dist)' },
      { name: 'dryRun', type: 'boolean', description: 'everything but the tags' },
      ...registryArgs,
    ],
    run: (a, io) => releaseFn(a, io),
  },
];

export function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
}
