import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { errorOf } from '../helpers/errors.ts';
import { mkdtempSync, rmSync, readFileSync, writeFileSync, existsSync, readdirSync, statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { OciLayout, readBlob, writeBlob, REF_NAME_ANNOTATION } from '../../ci/src/oci/layout.ts';
import { createLayer, layerDescriptor } from '../../ci/src/oci/layer.ts';
import { MediaType, sha256Digest, type ImageManifest } from '../../ci/src/oci/types.ts';

let work: string;
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'stella-layout-'));
});
afterAll(() => rmSync(work, { recursive: true, force: true }));


/** A one-layer image for amd64 written into `layout`. */
async function writeImage(layout: OciLayout, text: string) {
  const layer = await createLayer({ sourceDateEpoch: 0, entries: [{ type: 'file', path: 'hello.txt', content: text }] });
  await layout.writeBlob(layer.blob, layer.digest);
  const config = await layout.writeJson(MediaType.ociConfig, {
    architecture: 'amd64',
    os: 'linux',
    config: {},
    rootfs: { type: 'layers', diff_ids: [layer.diffId] },
    history: [{ created: '1970-01-01T00:00:00Z', created_by: 'test' }],
  });
  const manifest: ImageManifest = { schemaVersion: 2, mediaType: MediaType.ociManifest, config, layers: [layerDescriptor(layer)] };
  return { layer, config, manifest: await layout.writeManifest(manifest, { platform: { os: 'linux', architecture: 'amd64' } }) };
}

describe('OciLayout', () => {
  it('round-trips blobs, manifests, an index and named index.json entries; skopeo reads it', async () => {
    const root = join(work, 'rt');
    const layout = await OciLayout.init(root);
    expect(JSON.parse(readFileSync(join(root, 'oci-layout'), 'utf8'))).toEqual({ imageLayoutVersion: '1.0.0' });
    const img = await writeImage(layout, 'hello');
    const index = await layout.writeIndex({ schemaVersion: 2, mediaType: MediaType.ociIndex, manifests: [img.manifest] });
    await layout.setIndexEntry(index, 'v1');
    await layout.setIndexEntry(index, 'v1'); // replaces, does not duplicate
    await layout.setIndexEntry(img.manifest, 'amd64');
    const top = await layout.readIndexJson();
    expect(top.manifests.map((d) => d.annotations?.[REF_NAME_ANNOTATION])).toEqual(['v1', 'amd64']);
    expect((await layout.resolveRef('v1'))?.digest).toBe(index.digest);

    const walked = await layout.walk(index.digest);
    expect(walked.root.mediaType).toBe(MediaType.ociIndex);
    expect(walked.images).toHaveLength(1);
    expect(walked.images[0]!.manifest.layers[0]!.digest).toBe(img.layer.digest);
    expect(walked.blobs.map((b) => b.digest)).toEqual([index.digest, img.manifest.digest, img.config.digest, img.layer.digest]);
    expect((await layout.readImageIndex(index.digest)).manifests[0]!.platform).toEqual({ os: 'linux', architecture: 'amd64' });

    // Re-opening an existing layout and writing the same blob again changes nothing.
    const again = await OciLayout.open(root);
    const before = statSync(again.blobPath(img.layer.digest)).mtimeMs;
    expect(await writeBlob(root, img.layer.blob, img.layer.digest)).toEqual({ digest: img.layer.digest, size: img.layer.size });
    expect(statSync(again.blobPath(img.layer.digest)).mtimeMs).toBe(before);
    expect(readdirSync(join(root, 'blobs', 'sha256')).filter((n) => n.includes('.tmp-'))).toEqual([]);

    // An independent reader: skopeo accepts the layout and sees our digests.
    const raw = execFileSync('skopeo', ['inspect', '--raw', `oci:${root}:v1`], { encoding: 'utf8' });
    expect(sha256Digest(raw)).toBe(index.digest);
    const cfg = JSON.parse(execFileSync('skopeo', ['inspect', '--config', `oci:${root}:amd64`], { encoding: 'utf8' }));
    expect(cfg.rootfs.diff_ids).toEqual([img.layer.diffId]);
  });

  it('refuses a digest that is not sha256:<64 hex> before touching the file system', async () => {
    const root = join(work, 'never-created');
    for (const bad of ['sha256:../../x', 'sha256:' + 'A'.repeat(64), '../../etc/passwd', 'sha512:' + 'a'.repeat(128)]) {
      expect((await errorOf(readBlob(root, bad))).code).toBe('DIGEST_INVALID');
      expect((await errorOf(new OciLayout(root).readBlob(bad))).code).toBe('DIGEST_INVALID');
      expect(() => new OciLayout(root).blobPath(bad)).toThrow(/is not a digest/);
      expect((await errorOf(new OciLayout(root).readManifest(bad))).code).toBe('DIGEST_INVALID');
      expect((await errorOf(new OciLayout(root).walk(bad))).code).toBe('DIGEST_INVALID');
      expect((await errorOf(new OciLayout(root).setIndexEntry({ mediaType: MediaType.ociManifest, digest: bad, size: 1 }))).code).toBe('DIGEST_INVALID');
    }
    expect(existsSync(root)).toBe(false);
    // writeBlob with an invalid expected digest creates nothing either.
    expect((await errorOf(new OciLayout(root).writeBlob(new Uint8Array([1]), 'sha256:../../x'))).code).toBe('DIGEST_INVALID');
    expect(existsSync(root)).toBe(false);
  });

  it('refuses to store content under the wrong digest', async () => {
    const layout = await OciLayout.init(join(work, 'wrong'));
    const err = await errorOf(layout.writeBlob(new TextEncoder().encode('a'), sha256Digest('b')));
    expect(err.code).toBe('DIGEST_MISMATCH');
    expect(err.message).toContain(`expected ${sha256Digest('b')}, got ${sha256Digest('a')}`);
    expect(readdirSync(join(work, 'wrong', 'blobs', 'sha256'))).toEqual([]);
  });

  it('detects one flipped byte on read and on walk, naming expected and got; rewriting repairs it', async () => {
    const root = join(work, 'corrupt');
    const layout = await OciLayout.init(root);
    const img = await writeImage(layout, 'payload');
    const path = layout.blobPath(img.layer.digest);
    const bytes = readFileSync(path);
    bytes[bytes.length - 10]! ^= 0x01;
    writeFileSync(path, bytes);
    const got = sha256Digest(bytes);

    const err = await errorOf(layout.readBlob(img.layer.digest));
    expect(err.code).toBe('DIGEST_MISMATCH');
    expect(err.message).toContain(`expected ${img.layer.digest}, got ${got}`);
    const walkErr = await errorOf(layout.walk(img.manifest));
    expect(walkErr.code).toBe('DIGEST_MISMATCH');
    expect(walkErr.message).toContain(img.layer.digest);

    // A size that disagrees with the descriptor is caught too.
    await layout.writeBlob(img.layer.blob, img.layer.digest); // replaces the corrupt copy
    expect(sha256Digest(await layout.readBlob(img.layer.digest))).toBe(img.layer.digest);
    expect((await errorOf(layout.readBlob(img.layer.digest, img.layer.size + 1))).message).toMatch(/expected \d+ from its descriptor/);
    // A missing blob is NOT_FOUND and names the digest.
    rmSync(layout.blobPath(img.config.digest));
    const missing = await errorOf(layout.walk(img.manifest));
    expect(missing.code).toBe('NOT_FOUND');
    expect(missing.message).toContain(img.config.digest);
  });

  it('open() refuses a directory that is not an OCI layout', async () => {
    expect((await errorOf(OciLayout.open(work))).code).toBe('NOT_FOUND');
  });
});
