/**
 * Reading files out of layer blobs, without unpacking to disk: the SBOM step
 * reads `/app/sbom.spdx.json` from the image itself.
 */
import { gunzipSync } from 'node:zlib';
import tarStream from 'tar-stream';

/** Returns the content of `path` (no leading slash, e.g. `app/sbom.spdx.json`) in a gzip'd or plain tar layer, or undefined. */
export async function readLayerFile(blob: Uint8Array, path: string): Promise<Uint8Array | undefined> {
  const want = path.replace(/^\/+/, '').replace(/^\.\//, '');
  const tar = blob[0] === 0x1f && blob[1] === 0x8b ? gunzipSync(blob) : Buffer.from(blob);
  const extract = tarStream.extract();
  let found: Uint8Array | undefined;
  const done = new Promise<void>((resolve, reject) => {
    extract.on('entry', (h, stream, next) => {
      const name = h.name.replace(/^\.\//, '').replace(/^\/+/, '');
      if (name === want && (h.type ?? 'file') === 'file') {
        const chunks: Buffer[] = [];
        stream.on('data', (d: unknown) => chunks.push(d as Buffer));
        stream.on('end', () => {
          found = new Uint8Array(Buffer.concat(chunks));
          next();
        });
      } else {
        stream.on('end', () => next());
        stream.resume();
      }
    });
    extract.on('finish', () => resolve());
    extract.on('error', reject);
  });
  extract.end(tar);
  await done;
  return found;
}
