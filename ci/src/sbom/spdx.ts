/**
 * Shared SPDX building blocks: content-derived SPDXIDs, timestamps, namespaces,
 * purls, deterministic ordering and the canonical bytes of a document.
 */
import { createHash } from 'node:crypto';
import { PackageURL } from 'packageurl-js';
import { StellaError } from '../errors.ts';
import { sha256Digest } from '../oci/types.ts';
import ciPackage from '../../package.json' with { type: 'json' };
import type { CreatedAt, SpdxDocument, SpdxPackage, SpdxRelationship } from './types.ts';

export const NOASSERTION = 'NOASSERTION';
export const DOCUMENT_ID = 'SPDXRef-DOCUMENT';
/** Base of every documentNamespace this project writes. */
export const NAMESPACE_BASE = 'https://stellaops.io/spdx';
export const SUPPLIER = 'Organization: StellaOps';
/** Version of the release tooling when a caller does not give one (ci/package.json). */
export const DEFAULT_TOOL_VERSION: string = ciPackage.version;

export function creators(toolVersion: string | undefined): string[] {
  return [`Tool: stella-release-${toolVersion ?? DEFAULT_TOOL_VERSION}`, SUPPLIER];
}

/**
 * SPDX wants `YYYY-MM-DDThh:mm:ssZ` (UTC, no fraction). Numbers and all-digit strings
 * are SOURCE_DATE_EPOCH seconds.
 */
export function spdxTimestamp(created: CreatedAt, what = 'created'): string {
  let date: Date;
  if (typeof created === 'number' || (typeof created === 'string' && /^\d+$/.test(created))) {
    date = new Date(Number(created) * 1000);
  } else if (typeof created === 'string') {
    date = new Date(created);
  } else {
    date = created;
  }
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) {
    throw new StellaError('INVALID_ARGUMENT', `${what}: "${String(created)}" is not a time (expected a Date, ISO-8601 text or SOURCE_DATE_EPOCH seconds)`);
  }
  return date.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** A readable, SPDXID-safe fragment: runs of characters outside [A-Za-z0-9.] become one `-`. */
export function idFragment(s: string): string {
  return s.replace(/[^A-Za-z0-9.]+/g, '-').replace(/^-+|-+$/g, '') || 'x';
}

/**
 * A package SPDXID derived from its content: kind, readable name and version, and
 * 8 hex of the sha256 of its purl, so two different packages never share an id and
 * the same package always gets the same one (appSbom and imageSbom agree).
 */
export function packageId(kind: string, name: string, version: string, purl: string): string {
  const h = createHash('sha256').update(purl).digest('hex').slice(0, 8);
  return `SPDXRef-Package-${idFragment(kind)}-${idFragment(name)}-${idFragment(version)}-${h}`;
}

/** The SPDXID of an image (per-platform manifest) package: the same in the image SBOM and the index SBOM. */
export function imagePackageId(manifestDigest: string): string {
  return `SPDXRef-Image-${manifestDigest.replace(':', '-')}`;
}

export function imageIndexPackageId(indexDigest: string): string {
  return `SPDXRef-ImageIndex-${indexDigest.replace(':', '-')}`;
}

/** `DocumentRef-linux-amd64` for `linux/amd64`. */
export function platformDocumentRef(platform: string): string {
  return `DocumentRef-${idFragment(platform)}`;
}

export function npmPurl(name: string, version: string): string {
  const slash = name.startsWith('@') ? name.indexOf('/') : -1;
  const namespace = slash > 0 ? name.slice(0, slash) : undefined;
  const bare = slash > 0 ? name.slice(slash + 1) : name;
  return new PackageURL('npm', namespace, bare, version, undefined, undefined).toString();
}

export function debPurl(name: string, version: string, arch: string | undefined, distro: string, upstream: string | undefined): string {
  const q: Record<string, string> = {};
  if (arch) q.arch = arch;
  q.distro = distro;
  if (upstream) q.upstream = upstream;
  return new PackageURL('deb', 'debian', name, version, q, undefined).toString();
}

/**
 * `pkg:oci/<name>@sha256%3A<hex>?arch=…&repository_url=…`. The colon of the digest is
 * percent-encoded as in the purl spec's oci examples and as syft/trivy write it
 * (packageurl-js leaves it bare; both parse to the same purl).
 */
export function ociPurl(name: string, digest: string, qualifiers: Record<string, string>): string {
  const s = new PackageURL('oci', undefined, name, digest, qualifiers, undefined).toString();
  return s.replace(`@${digest}`, `@${digest.replace(':', '%3A')}`);
}

export function genericPurl(namespace: string | undefined, name: string, version: string, qualifiers?: Record<string, string>): string {
  return new PackageURL('generic', namespace, name, version, qualifiers, undefined).toString();
}

/** Plain code-unit order: the same on every machine and locale. */
export function byCodeUnit(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** Root packages first (in the order given), then every other package by SPDXID. */
export function sortPackages(pkgs: readonly SpdxPackage[], roots: readonly string[]): SpdxPackage[] {
  const rank = (p: SpdxPackage): number => {
    const i = roots.indexOf(p.SPDXID);
    return i < 0 ? roots.length : i;
  };
  return [...pkgs].sort((a, b) => rank(a) - rank(b) || byCodeUnit(a.SPDXID, b.SPDXID));
}

/** DESCRIBES first, then by element, type, related; duplicates dropped. */
export function sortRelationships(rels: readonly SpdxRelationship[]): SpdxRelationship[] {
  const key = (r: SpdxRelationship): string => `${r.relationshipType === 'DESCRIBES' ? 0 : 1}\u0000${r.spdxElementId}\u0000${r.relationshipType}\u0000${r.relatedSpdxElement}`;
  const seen = new Set<string>();
  const out: SpdxRelationship[] = [];
  for (const r of [...rels].sort((a, b) => byCodeUnit(key(a), key(b)))) {
    const k = key(r);
    if (!seen.has(k)) {
      seen.add(k);
      out.push(r);
    }
  }
  return out;
}

/** The canonical bytes of a document: 2-space JSON plus a newline. Same document, same bytes. */
export function serializeSpdx(doc: SpdxDocument): Uint8Array {
  return new TextEncoder().encode(`${JSON.stringify(doc, null, 2)}\n`);
}

/** `sha256:<hex>` of the canonical bytes: the blob digest when the document is pushed as an OCI artifact. */
export function spdxDigest(doc: SpdxDocument): string {
  return sha256Digest(serializeSpdx(doc));
}
