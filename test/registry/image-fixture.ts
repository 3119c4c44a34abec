/**
 * Small but real multi-platform images for the registry tests, written into an
 * OCI layout with ci/src/oci/layout.ts: per platform a config, two layers
 * (pseudo-random bytes derived from `seed`, so each test can make unique
 * blobs), a manifest; and an index over the platforms.
 */
import { createHash } from 'node:crypto';
import { OciLayout } from '../../ci/src/oci/layout.ts';
import { MediaType, PLATFORMS, parsePlatform, sha256Digest, type Descriptor, type ImageIndex, type ImageManifest } from '../../ci/src/oci/types.ts';

/** Deterministic pseudo-random bytes. */
export function bytesFrom(seed: string, size: number): Uint8Array {
  const out = new Uint8Array(size);
  let off = 0;
  for (let i = 0; off < size; i++) {
    const block = createHash('sha256').update(`${seed}/${i}`).digest();
    out.set(block.subarray(0, Math.min(block.length, size - off)), off);
    off += block.length;
  }
  return out;
}

export interface TestImage {
  readonly layoutDir: string;
  readonly index: Descriptor;
  readonly indexBytes: Uint8Array;
  readonly manifests: readonly { descriptor: Descriptor; bytes: Uint8Array; manifest: ImageManifest }[];
  /** Config and layer blobs, each once. */
  readonly blobs: readonly Descriptor[];
}

export async function buildTestImage(layoutDir: string, seed: string, layerSize = 4096): Promise<TestImage> {
  const layout = await OciLayout.init(layoutDir);
  const manifests: { descriptor: Descriptor; bytes: Uint8Array; manifest: ImageManifest }[] = [];
  const blobs = new Map<string, Descriptor>();
  for (const p of PLATFORMS) {
    const platform = parsePlatform(p);
    const layers: Descriptor[] = [];
    for (const n of [1, 2]) {
      const bytes = bytesFrom(`${seed}/${p}/layer${n}`, n === 1 ? layerSize : 512);
      const { digest, size } = await layout.writeBlob(bytes);
      layers.push({ mediaType: MediaType.ociLayer, digest, size });
    }
    const config = await layout.writeJson(MediaType.ociConfig, {
      architecture: platform.architecture,
      os: platform.os,
      config: { Labels: { 'org.opencontainers.image.title': `test ${seed}` } },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
    });
    for (const b of [config, ...layers]) blobs.set(b.digest, b);
    const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaType.ociManifest, config, layers };
    const descriptor = await layout.writeManifest(manifest, { platform });
    manifests.push({ descriptor, bytes: await layout.readBlob(descriptor.digest), manifest });
  }
  const index: ImageIndex = { schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: manifests.map((m) => m.descriptor) };
  const desc = await layout.writeIndex(index);
  await layout.setIndexEntry(desc, seed);
  const indexBytes = await layout.readBlob(desc.digest);
  if (sha256Digest(indexBytes) !== desc.digest) throw new Error('fixture: index digest');
  return { layoutDir, index: desc, indexBytes, manifests, blobs: [...blobs.values()] };
}

/** An OCI 1.1 artifact manifest referring to `subject` (empty config, one layer). */
export function referrerManifest(subject: Descriptor, artifactType: string, layer: Descriptor, annotations?: Record<string, string>): Uint8Array {
  return new TextEncoder().encode(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.ociManifest,
      artifactType,
      config: { mediaType: MediaType.ociEmpty, digest: 'sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a', size: 2 },
      layers: [layer],
      subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
      ...(annotations ? { annotations } : {}),
    }),
  );
}
