/**
 * The build document: what the build step hands to the next steps (sign, SBOM,
 * chart, bundle). Digests only, never tags.
 *
 *   { "images": [ { "service": "api", "repository": "127.0.0.1:5000/stellaops/stella-api",
 *                   "digest": "sha256:…",                       // the multi-arch index
 *                   "platforms": { "linux/amd64": "sha256:…", "linux/arm64": "sha256:…" } } ] }
 */
import { readFile, writeFile } from 'node:fs/promises';
import { StellaError } from '../errors.ts';
import { isDigest } from '../oci/types.ts';
import { SERVICE_NAMES } from '../catalog/index.ts';

export interface BuiltImage {
  readonly service: string;
  /** `<registry>/<namespace>/stella-<service>` when pushed; `stella-<service>` (the OCI layout ref name) otherwise. */
  readonly repository: string;
  /** Digest of the image index. */
  readonly digest: string;
  /** Platform (`linux/amd64`) → digest of that platform's manifest, in index order. */
  readonly platforms: Readonly<Record<string, string>>;
}

export interface BuildDocument {
  readonly images: readonly BuiltImage[];
}

/** Checks an untrusted value against the build document's shape; returns it typed, or throws INVALID_ARGUMENT naming the field. */
export function validateBuildDocument(value: unknown, where = 'build document'): BuildDocument {
  const fail = (path: string, want: string, got: unknown): never => {
    throw new StellaError('INVALID_ARGUMENT', `${where}: ${path} is ${JSON.stringify(got)?.slice(0, 80) ?? String(got)} (expected ${want})`);
  };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('the document', 'an object { images: [...] }', value);
  const doc = value as Record<string, unknown>;
  for (const k of Object.keys(doc)) if (k !== 'images') fail(`field "${k}"`, 'no fields other than images', doc[k]);
  if (!Array.isArray(doc.images)) fail('images', 'an array', doc.images);
  const seen = new Set<string>();
  (doc.images as unknown[]).forEach((img, i) => {
    const at = `images[${i}]`;
    if (typeof img !== 'object' || img === null || Array.isArray(img)) fail(at, 'an object', img);
    const o = img as Record<string, unknown>;
    for (const k of Object.keys(o)) if (!['service', 'repository', 'digest', 'platforms'].includes(k)) fail(`${at}.${k}`, 'no such field (service, repository, digest, platforms)', o[k]);
    if (typeof o.service !== 'string' || !(SERVICE_NAMES as readonly string[]).includes(o.service)) fail(`${at}.service`, `one of ${SERVICE_NAMES.join(', ')}`, o.service);
    if (seen.has(o.service as string)) fail(`${at}.service`, 'each service once', o.service);
    seen.add(o.service as string);
    if (typeof o.repository !== 'string' || !/^[A-Za-z0-9.:[\]-]*\/?[a-z0-9._/-]+$/.test(o.repository)) fail(`${at}.repository`, 'a repository such as 127.0.0.1:5000/stellaops/stella-api', o.repository);
    if (!isDigest(o.digest)) fail(`${at}.digest`, 'sha256:<64 hex>', o.digest);
    if (typeof o.platforms !== 'object' || o.platforms === null || Array.isArray(o.platforms)) fail(`${at}.platforms`, 'an object platform → digest', o.platforms);
    const entries = Object.entries(o.platforms as Record<string, unknown>);
    if (entries.length === 0) fail(`${at}.platforms`, 'at least one platform', o.platforms);
    for (const [p, d] of entries) {
      if (!/^[a-z0-9]+\/[a-z0-9]+(\/[a-z0-9]+)?$/.test(p)) fail(`${at}.platforms key`, 'os/arch[/variant]', p);
      if (!isDigest(d)) fail(`${at}.platforms["${p}"]`, 'sha256:<64 hex>', d);
    }
  });
  return value as BuildDocument;
}

/** Writes the document as pretty JSON (after checking it), ending with a newline. */
export async function writeBuildDocument(path: string, doc: BuildDocument): Promise<void> {
  validateBuildDocument(doc, `build document for ${path}`);
  await writeFile(path, JSON.stringify(doc, null, 2) + '\n');
}

export async function readBuildDocument(path: string): Promise<BuildDocument> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new StellaError('NOT_FOUND', `build document ${path}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new StellaError('INVALID_ARGUMENT', `build document ${path} is not JSON: ${(e as Error).message}`);
  }
  return validateBuildDocument(value, `build document ${path}`);
}
