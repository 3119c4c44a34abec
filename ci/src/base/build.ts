/**
 * buildBase: the offline, distroless-style Node 24 runtime base
 * (equivalent of gcr.io/distroless/nodejs24-debian12:nonroot) for linux/amd64
 * and linux/arm64, from the inputs fetchBaseInputs verified, into an OCI layout.
 *
 * Per platform, one layer holding a rootfs of:
 *   - the Debian packages of the lock, unpacked with `dpkg-deb -x` (this needs
 *     dpkg-deb, i.e. a Debian/Ubuntu build host; nothing of the .deb's maintainer
 *     scripts runs, as in distroless), pruned to what a runtime needs: docs
 *     except copyright files, man, info, lintian, locale, gdb/gcc python helpers,
 *     shell profile snippets and the update-ca-certificates script are dropped;
 *   - /nodejs/bin/node and /nodejs/LICENSE from the npm `node-linux-<arch>` tarball;
 *   - /etc/passwd, /etc/group (root 0, nonroot 65532, nobody 65534), /etc/nsswitch.conf,
 *     /etc/os-release, /home/nonroot (0700, 65532:65532), /tmp (1777), /root (0700);
 *   - /etc/ssl/certs/ca-certificates.crt: the .crt files of ca-certificates
 *     concatenated in sorted order (what update-ca-certificates would produce);
 *   - /var/lib/dpkg/status.d/<package>: each package's control fields, the
 *     distroless convention SBOM scanners read.
 * Config: User 65532:65532, Entrypoint ["/nodejs/bin/node"], WorkingDir
 * /home/nonroot, Env PATH (+/nodejs/bin) and SSL_CERT_FILE, OCI labels; created
 * = SOURCE_DATE_EPOCH. Same inputs + same epoch → same digests.
 */
import { mkdir, mkdtemp, rm, writeFile, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { StellaError } from '../errors.ts';
import { createLayer, layerDescriptor } from '../oci/layer.ts';
import { OciLayout } from '../oci/layout.ts';
import { readTar } from '../oci/tar.ts';
import { MediaType, PLATFORMS, type Descriptor, type ImageManifest, type PlatformName } from '../oci/types.ts';
import { run } from './exec.ts';
import { fetchBaseInputs, defaultBaseCacheDir, type BaseInputs } from './fetch.ts';
import { DEFAULT_LOCK_FILE, type LockedPlatform } from './lock.ts';
import { BASE_PLATFORMS, readNodePin } from './pin.ts';

/** The runtime user, as in distroless ":nonroot". */
export const NONROOT_UID = 65532;
export const NODE_PATH_IN_IMAGE = '/nodejs/bin/node';
import { CA_BUNDLE_PATH, caBundle, pathExists, pruneDocs } from './rootfs.ts';
export const BASE_PATH_ENV = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/nodejs/bin';
/** The index.json ref name of the base in the output layout. */
export const BASE_REF_NAME = 'nodejs24-debian12';
/** What this base stands in for. */
export const BASE_EQUIVALENT_OF = 'gcr.io/distroless/nodejs24-debian12:nonroot';
import { SOURCE_URL } from '../catalog/index.ts';
export const BASE_SOURCE_URL = SOURCE_URL;

export interface BuildBaseOptions {
  /** The cache fetchBaseInputs filled; default defaultBaseCacheDir(). */
  readonly inputsDir?: string;
  /** The OCI layout directory to write (created if missing; blobs and an index.json entry are added). */
  readonly outLayout: string;
  /** Seconds since the epoch for every mtime and `created`; default $SOURCE_DATE_EPOCH, else 0 (as distroless). */
  readonly sourceDateEpoch?: number;
  /** Default both; the index always lists them in PLATFORMS order. */
  readonly platforms?: readonly PlatformName[];
  readonly lockFile?: string;
  /** The version being released: a versioned one (vX.Y.Z, vX.Y.Z-rc.N) never builds from a refreshed lock. */
  readonly releaseVersion?: string;
  /** index.json ref name; default BASE_REF_NAME. */
  readonly refName?: string;
  readonly compressionLevel?: number;
}

export interface BaseImage {
  readonly manifest: Descriptor;
  readonly config: Descriptor;
  readonly layer: { readonly digest: string; readonly size: number; readonly diffId: string };
}

export interface BaseBuildResult {
  /** Digest of the image index (the multi-arch base). */
  readonly indexDigest: string;
  /** Manifest digest per platform. */
  readonly platforms: Partial<Record<PlatformName, string>>;
  /** The layout directory written. */
  readonly layout: string;
  readonly refName: string;
  readonly nodeVersion: string;
  readonly images: Partial<Record<PlatformName, BaseImage>>;
}

// Paths (relative to the rootfs) dropped from the unpacked packages.
const PRUNE = [
  'usr/share/man',
  'usr/share/info',
  'usr/share/lintian',
  'usr/share/locale',
  'usr/share/gdb',
  'usr/share/gcc',
  'usr/share/base-files',
  'usr/share/dict',
  'usr/share/bug',
  'etc/update-motd.d',
  'etc/profile.d',
  'etc/skel',
  'etc/ca-certificates/update.d',
  'usr/sbin/update-ca-certificates',
];

function isoOf(epoch: number): string {
  return new Date(epoch * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

/** Extracts package/bin/node and package/LICENSE from the npm tarball into <root>/nodejs. */
async function unpackNode(tgz: string, root: string): Promise<void> {
  const wanted: Record<string, string> = { 'package/bin/node': 'nodejs/bin/node', 'package/LICENSE': 'nodejs/LICENSE' };
  const found = new Set<string>();
  await readTar({ file: tgz }, async (e) => {
    const dest = wanted[e.header.name];
    if (!dest || e.type !== 'file') return;
    const path = join(root, dest);
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, await e.content(), { mode: dest.endsWith('/node') ? 0o755 : 0o644 });
    found.add(e.header.name);
  });
  for (const name of Object.keys(wanted)) {
    if (!found.has(name)) throw new StellaError('BUILD_FAILED', `${tgz}: has no ${name} (expected the node-linux-<arch> npm package layout)`);
  }
}

const PASSWD = ['root:x:0:0:root:/root:/sbin/nologin', 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin', 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin', ''].join('\n');
const GROUP = ['root:x:0:', 'nobody:x:65534:', 'tty:x:5:', 'staff:x:50:', 'nonroot:x:65532:', ''].join('\n');
const NSSWITCH = ['passwd:         files', 'group:          files', 'shadow:         files', 'hosts:          files dns', 'networks:       files', 'protocols:      files', 'services:       files', ''].join('\n');

function osRelease(nodeVersion: string): string {
  return [
    `PRETTY_NAME="StellaOps Node ${nodeVersion} base (distroless-style, Debian GNU/Linux 12)"`,
    'NAME="Debian GNU/Linux"',
    'ID=debian',
    'VERSION_ID="12"',
    'VERSION="12 (bookworm)"',
    'VERSION_CODENAME=bookworm',
    'HOME_URL="https://www.debian.org/"',
    `SUPPORT_URL="${BASE_SOURCE_URL}"`,
    `BUG_REPORT_URL="${BASE_SOURCE_URL}/issues"`,
    '',
  ].join('\n');
}

async function buildRootfs(root: string, inputsDir: string, platform: PlatformName, locked: LockedPlatform, nodeVersion: string): Promise<void> {
  const { debArch } = BASE_PLATFORMS[platform];
  const statusDir = join(root, 'var/lib/dpkg/status.d');
  await mkdir(statusDir, { recursive: true });
  for (const deb of locked.debs) {
    const path = join(inputsDir, debArch, 'debs', deb.filename);
    await run('dpkg-deb', ['-x', path, root], { code: 'BUILD_FAILED' });
    const { stdout } = await run('dpkg-deb', ['-f', path], { code: 'BUILD_FAILED' });
    await writeFile(join(statusDir, deb.package), stdout.endsWith('\n') ? stdout : `${stdout}\n`);
  }
  for (const p of PRUNE) await rm(join(root, p), { recursive: true, force: true });
  await pruneDocs(root);

  await unpackNode(join(inputsDir, debArch, 'npm', locked.node.filename), root);

  await mkdir(join(root, 'etc/ssl/certs'), { recursive: true });
  await writeFile(join(root, CA_BUNDLE_PATH), await caBundle(root, 'base rootfs'));
  await writeFile(join(root, 'etc/passwd'), PASSWD);
  await writeFile(join(root, 'etc/group'), GROUP);
  await writeFile(join(root, 'etc/nsswitch.conf'), NSSWITCH);
  if (await pathExists(join(root, 'etc/os-release'))) await unlink(join(root, 'etc/os-release')); // base-files' symlink
  await writeFile(join(root, 'etc/os-release'), osRelease(nodeVersion));
  for (const d of ['home/nonroot', 'tmp', 'root']) await mkdir(join(root, d), { recursive: true });
}

/** Builds the base for each platform into `outLayout` and returns the index and per-platform digests. */
export async function buildBase(opts: BuildBaseOptions): Promise<BaseBuildResult> {
  const inputsDir = opts.inputsDir ?? defaultBaseCacheDir();
  const envEpoch = process.env.SOURCE_DATE_EPOCH;
  const epoch = opts.sourceDateEpoch ?? (envEpoch !== undefined && envEpoch !== '' ? Number(envEpoch) : 0);
  if (!Number.isInteger(epoch) || epoch < 0) {
    throw new StellaError('INVALID_ARGUMENT', `base sourceDateEpoch ${String(epoch)} is not whole seconds since 1970 (expected an integer >= 0)`);
  }
  const platforms = PLATFORMS.filter((p) => (opts.platforms ?? PLATFORMS).includes(p));
  if (platforms.length === 0) throw new StellaError('INVALID_ARGUMENT', `base platforms ${JSON.stringify(opts.platforms)} (expected some of ${PLATFORMS.join(', ')})`);
  const refName = opts.refName ?? BASE_REF_NAME;
  const nodeVersion = await readNodePin();

  // Verify every input against the lock again (no network when the cache is complete).
  const inputs: BaseInputs = await fetchBaseInputs({ cacheDir: inputsDir, platforms, lockFile: opts.lockFile ?? DEFAULT_LOCK_FILE, releaseVersion: opts.releaseVersion });
  const layout = await OciLayout.init(opts.outLayout);
  const created = isoOf(epoch);

  const buildOne = async (platform: PlatformName): Promise<BaseImage> => {
    const locked = inputs.platforms[platform]?.locked;
    if (!locked) throw new StellaError('BUILD_FAILED', `base ${platform}: no verified inputs`);
    const root = await mkdtemp(join(tmpdir(), `stella-base-${BASE_PLATFORMS[platform].debArch}-`));
    try {
      await buildRootfs(root, inputsDir, platform, locked, nodeVersion);
      const layer = await createLayer({
        sourceDateEpoch: epoch,
        dirs: [{ dir: root }],
        attributes: {
          'home/nonroot': { uid: NONROOT_UID, gid: NONROOT_UID, mode: 0o700 },
          tmp: { mode: 0o1777 },
          root: { mode: 0o700 },
        },
        ...(opts.compressionLevel !== undefined ? { compressionLevel: opts.compressionLevel } : {}),
      });
      await layout.writeBlob(layer.blob, layer.digest);
      const packages = locked.debs.map((d) => `${d.package}=${d.version}`).join(' ');
      const labels: Record<string, string> = {
        'org.opencontainers.image.title': 'stellaops-node-base',
        'org.opencontainers.image.description': `Distroless-style Node.js ${nodeVersion} runtime on Debian 12 (bookworm), built offline from Debian packages and npm; stands in for ${BASE_EQUIVALENT_OF}`,
        'org.opencontainers.image.source': BASE_SOURCE_URL,
        'org.opencontainers.image.licenses': 'MIT AND LGPL-2.1-or-later AND GPL-3.0-or-later WITH GCC-exception-3.1 AND MPL-2.0',
        'org.opencontainers.image.version': nodeVersion,
        'org.opencontainers.image.created': created,
        'org.opencontainers.image.base.name': 'scratch',
        'dev.stellaops.base.equivalent-of': BASE_EQUIVALENT_OF,
        'dev.stellaops.base.node': `${locked.node.package}@${locked.node.version}`,
        'dev.stellaops.base.debian': 'bookworm',
      };
      const config = {
        created,
        architecture: BASE_PLATFORMS[platform].ociArch,
        os: 'linux',
        config: {
          User: `${NONROOT_UID}:${NONROOT_UID}`,
          Env: [BASE_PATH_ENV, `SSL_CERT_FILE=${CA_BUNDLE_PATH}`],
          Entrypoint: [NODE_PATH_IN_IMAGE],
          WorkingDir: '/home/nonroot',
          Labels: labels,
        },
        rootfs: { type: 'layers', diff_ids: [layer.diffId] },
        history: [{ created, created_by: `stella base: debian bookworm (${packages}) + ${locked.node.package}@${locked.node.version}`, comment: 'buildBase (ci/src/base)' }],
      };
      const configDesc = await layout.writeJson(MediaType.ociConfig, config);
      const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaType.ociManifest, config: configDesc, layers: [layerDescriptor(layer)] };
      const manDesc = await layout.writeManifest(manifest, { platform: { architecture: BASE_PLATFORMS[platform].ociArch, os: 'linux' } });
      return { manifest: manDesc, config: configDesc, layer: { digest: layer.digest, size: layer.size, diffId: layer.diffId } };
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  };

  const built = await Promise.all(platforms.map(buildOne));
  const index = await layout.writeIndex({
    schemaVersion: 2,
    mediaType: MediaType.ociIndex,
    manifests: built.map((b) => b.manifest),
    annotations: { 'org.opencontainers.image.version': nodeVersion, 'org.opencontainers.image.created': created },
  });
  await layout.setIndexEntry(index, refName);
  const images: Partial<Record<PlatformName, BaseImage>> = {};
  const digests: Partial<Record<PlatformName, string>> = {};
  platforms.forEach((p, i) => {
    images[p] = built[i]!;
    digests[p] = built[i]!.manifest.digest;
  });
  return { indexDigest: index.digest, platforms: digests, layout: opts.outLayout, refName, nodeVersion, images };
}
