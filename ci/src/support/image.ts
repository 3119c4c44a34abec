/**
 * One support image for one platform: a rootfs from the locked .debs
 * (`dpkg-deb -x`, no maintainer scripts, pruned like the Node base) and/or a Go
 * binary, plus passwd/group with the image's fixed user, its files, its volume
 * directory (owned by the user; the only writable path), one deterministic
 * layer (ci/src/oci), an OCI config and manifest written to an OCI layout.
 */
import { copyFile, mkdir, mkdtemp, rm, symlink, unlink, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { run } from '../base/exec.ts';
import { CA_BUNDLE_PATH, caBundle, pathExists, pruneDocs } from '../base/rootfs.ts';
import { BASE_PLATFORMS } from '../base/pin.ts';
import type { LockedDeb } from '../base/lock.ts';
import { SOURCE_URL } from '../catalog/index.ts';
import { createLayer, layerDescriptor } from '../oci/layer.ts';
import type { OciLayout } from '../oci/layout.ts';
import { MediaType, type Descriptor, type ImageManifest, type PlatformName } from '../oci/types.ts';
import { readOsPackagesFromRootfs } from '../sbom/dpkg.ts';
import type { OsPackage } from '../sbom/types.ts';
import type { BuiltGoBinary } from './go.ts';
import type { GoBinary, SupportRecipe } from './recipes.ts';

/** Dropped from unpacked packages (what the Node base drops). */
const PRUNE = [
  'usr/share/man', 'usr/share/info', 'usr/share/lintian', 'usr/share/locale', 'usr/share/gdb', 'usr/share/gcc', 'usr/share/base-files',
  'usr/share/dict', 'usr/share/bug', 'usr/share/menu', 'etc/update-motd.d', 'etc/profile.d', 'etc/skel', 'etc/ca-certificates/update.d',
  'usr/sbin/update-ca-certificates', 'etc/cron.daily', 'etc/logrotate.d', 'usr/share/bash-completion',
];


function isoOf(epoch: number): string {
  return new Date(epoch * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

export interface PlatformImage {
  readonly platform: PlatformName;
  readonly manifest: Descriptor;
  readonly config: Descriptor;
  readonly layer: { readonly digest: string; readonly size: number; readonly diffId: string };
  readonly osPackages: readonly OsPackage[];
}

export interface AssembleOptions {
  readonly recipe: SupportRecipe;
  readonly platform: PlatformName;
  readonly debs: readonly { readonly path: string; readonly locked: LockedDeb }[];
  /** The Go binaries (the recipe's own, then the probe), built for this platform. */
  readonly go?: readonly { readonly binary: GoBinary; readonly built: BuiltGoBinary }[];
  readonly version: string;
  readonly upstream: string;
  readonly sourceDateEpoch: number;
  readonly layout: OciLayout;
}

export async function assemblePlatformImage(o: AssembleOptions): Promise<PlatformImage> {
  const { recipe, platform } = o;
  const root = await mkdtemp(join(tmpdir(), `stella-support-${recipe.name}-${BASE_PLATFORMS[platform].debArch}-`));
  try {
    const statusDir = join(root, 'var/lib/dpkg/status.d');
    await mkdir(statusDir, { recursive: true });
    for (const d of o.debs) {
      await run('dpkg-deb', ['-x', d.path, root], { code: 'BUILD_FAILED' });
      const { stdout } = await run('dpkg-deb', ['-f', d.path], { code: 'BUILD_FAILED' });
      await writeFile(join(statusDir, d.locked.package), stdout.endsWith('\n') ? stdout : `${stdout}\n`);
    }
    for (const p of [...PRUNE, ...recipe.prune]) await rm(join(root, p), { recursive: true, force: true });
    await pruneDocs(root);
    // dash's postinst would make /bin/sh; do it here when dash is in the image.
    if ((await pathExists(join(root, 'bin/dash'))) && !(await pathExists(join(root, 'bin/sh')))) await symlink('dash', join(root, 'bin/sh'));

    await mkdir(join(root, 'etc/ssl/certs'), { recursive: true });
    await writeFile(join(root, CA_BUNDLE_PATH), await caBundle(root, 'support rootfs'));
    const u = recipe.user;
    await writeFile(join(root, 'etc/passwd'), [`root:x:0:0:root:/root:/sbin/nologin`, `${u.name}:x:${u.uid}:${u.uid}:${u.name}:${u.home}:/sbin/nologin`, 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin', ''].join('\n'));
    await writeFile(join(root, 'etc/group'), [`root:x:0:`, `${u.name}:x:${u.uid}:`, 'nogroup:x:65534:', ''].join('\n'));
    await writeFile(join(root, 'etc/nsswitch.conf'), ['passwd:         files', 'group:          files', 'hosts:          files dns', 'networks:       files', 'protocols:      files', 'services:       files', ''].join('\n'));
    if (await pathExists(join(root, 'etc/os-release'))) await unlink(join(root, 'etc/os-release'));
    await writeFile(join(root, 'etc/os-release'), [`PRETTY_NAME="StellaOps support image ${recipe.title} (Debian GNU/Linux 12 packages)"`, 'NAME="Debian GNU/Linux"', 'ID=debian', 'VERSION_ID="12"', 'VERSION_CODENAME=bookworm', `SUPPORT_URL="${SOURCE_URL}"`, ''].join('\n'));
    for (const f of recipe.files) {
      const p = join(root, f.path.replace(/^\//, ''));
      await mkdir(dirname(p), { recursive: true });
      await writeFile(p, f.content);
      await chmod(p, f.mode ?? 0o644);
    }
    const gos = o.go ?? [];
    for (const g of gos) {
      const p = join(root, g.binary.pathInImage.replace(/^\//, ''));
      await mkdir(dirname(p), { recursive: true });
      await copyFile(g.built.file, p);
      await chmod(p, 0o755);
    }
    const vol = recipe.volume.replace(/^\//, '');
    const home = u.home.replace(/^\//, '');
    for (const d of [vol, home, 'tmp', 'root']) await mkdir(join(root, d), { recursive: true });

    const osPackages = await readOsPackagesFromRootfs(root);
    const attributes: Record<string, { uid?: number; gid?: number; mode?: number }> = { tmp: { mode: 0o1777 }, root: { mode: 0o700 } };
    attributes[home] = { uid: u.uid, gid: u.uid, mode: home === vol ? recipe.volumeMode : 0o755 };
    attributes[vol] = { uid: u.uid, gid: u.uid, mode: recipe.volumeMode };
    const layer = await createLayer({ sourceDateEpoch: o.sourceDateEpoch, dirs: [{ dir: root }], attributes, compressionLevel: 6 });
    await o.layout.writeBlob(layer.blob, layer.digest);

    const created = isoOf(o.sourceDateEpoch);
    const labels: Record<string, string> = {
      'org.opencontainers.image.title': recipe.image,
      'org.opencontainers.image.description': recipe.description,
      'org.opencontainers.image.source': SOURCE_URL,
      'org.opencontainers.image.version': o.version,
      'org.opencontainers.image.licenses': recipe.licenses,
      'org.opencontainers.image.created': created,
      'org.opencontainers.image.vendor': 'StellaOps',
      'org.opencontainers.image.base.name': 'scratch',
      'dev.stellaops.support.name': recipe.name,
      'dev.stellaops.support.equivalent-of': o.upstream,
      'dev.stellaops.support.user': `${u.name} (${u.uid}:${u.uid})`,
      'dev.stellaops.support.volume': recipe.volume,
      ...(recipe.scratch ? { 'dev.stellaops.support.scratch': `${recipe.scratch.path}: ${recipe.scratch.why}` } : {}),
      'dev.stellaops.support.shell': recipe.shell ?? 'none',
      ...(o.debs.length > 0 ? { 'dev.stellaops.support.debian': 'bookworm' } : {}),
      ...(gos.length ? { 'dev.stellaops.support.go-module': gos.map((g) => `${g.binary.upstreamModule}@${g.binary.upstreamVersion}`).join(' '), 'dev.stellaops.support.go': gos[0]!.built.info.goVersion } : {}),
    };
    const config = {
      created,
      architecture: BASE_PLATFORMS[platform].ociArch,
      os: 'linux',
      config: {
        User: `${u.uid}:${u.uid}`,
        Env: [...recipe.env, `SSL_CERT_FILE=${CA_BUNDLE_PATH}`],
        Entrypoint: [...recipe.entrypoint],
        ...(recipe.cmd ? { Cmd: [...recipe.cmd] } : {}),
        WorkingDir: recipe.workingDir,
        ExposedPorts: Object.fromEntries(recipe.exposedPorts.map((p) => [`${p}/tcp`, {}])),
        Volumes: { [recipe.volume]: {}, ...(recipe.scratch ? { [recipe.scratch.path]: {} } : {}) },
        Labels: labels,
        ...(recipe.stopSignal ? { StopSignal: recipe.stopSignal } : {}),
        ...(recipe.healthcheck ? { Healthcheck: { Test: [...recipe.healthcheck], Interval: 10_000_000_000, Timeout: 5_000_000_000, Retries: 5 } } : {}),
      },
      rootfs: { type: 'layers', diff_ids: [layer.diffId] },
      history: [
        {
          created,
          created_by: `stella support-images: ${o.debs.length > 0 ? `debian bookworm (${o.debs.map((d) => `${d.locked.package}=${d.locked.version}`).join(' ')})` : 'debian bookworm (none)'}${gos.map((g) => ` + ${g.binary.upstreamModule}@${g.binary.upstreamVersion} (${g.built.info.goVersion}, CGO_ENABLED=0, -trimpath)`).join('')}`,
          comment: 'buildSupportImages (ci/src/support)',
        },
      ],
    };
    const configDesc = await o.layout.writeJson(MediaType.ociConfig, config);
    const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaType.ociManifest, config: configDesc, layers: [layerDescriptor(layer)] };
    const manDesc = await o.layout.writeManifest(manifest, { platform: { architecture: BASE_PLATFORMS[platform].ociArch, os: 'linux' } });
    return { platform, manifest: manDesc, config: configDesc, layer: { digest: layer.digest, size: layer.size, diffId: layer.diffId }, osPackages };
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}
