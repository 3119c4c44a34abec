/**
 * The three SPDX 2.3 documents of a StellaOps image:
 *
 * - appSbom: the application content (/app), baked into the image at /app/sbom.spdx.json,
 *   so it cannot know any image digest;
 * - imageSbom: one per platform manifest: OS packages, Node.js and the app part, the
 *   latter with the same SPDXIDs, versions and checksums as appSbom;
 * - indexSbom: one for the multi-arch index, whose image packages point at the
 *   per-platform documents (externalDocumentRefs + DESCRIBED_BY), in the shape of
 *   spdx/spdx-examples semantics/oci-multiarch-index.md and apko's index SBOM
 *   (index package VARIANT_OF each image package).
 *
 * Everything is derived from the inputs: no random ids, no clock. Same inputs, same bytes.
 */
import { StellaError } from '../errors.ts';
import { assertDigest, digestHex, parsePlatform } from '../oci/types.ts';
import { serviceByName } from '../catalog/index.ts';
import { assertNoSecrets } from '../redact/index.ts';
import { licenseRefsIn, npmLicenseExpression } from './license.ts';
import {
  DOCUMENT_ID, NAMESPACE_BASE, NOASSERTION, SUPPLIER, byCodeUnit, creators, debPurl, genericPurl, imageIndexPackageId,
  imagePackageId, npmPurl, ociPurl, packageId, platformDocumentRef, sortPackages, sortRelationships, spdxDigest, spdxTimestamp,
} from './spdx.ts';
import type {
  CreatedAt, NpmPackage, OsPackage, SpdxChecksum, SpdxChecksumAlgorithm, SpdxDocument, SpdxExternalDocumentRef,
  SpdxExtractedLicense, SpdxPackage, SpdxRelationship,
} from './types.ts';

export const NPM_REGISTRY = 'https://registry.npmjs.org';

const SRI_ALGORITHMS: Readonly<Record<string, { algorithm: SpdxChecksumAlgorithm; bytes: number }>> = {
  sha512: { algorithm: 'SHA512', bytes: 64 },
  sha384: { algorithm: 'SHA384', bytes: 48 },
  sha256: { algorithm: 'SHA256', bytes: 32 },
  sha1: { algorithm: 'SHA1', bytes: 20 },
};

/** npm `integrity` (SRI, e.g. `sha512-<base64>`, possibly several) → SPDX checksums in hex. */
export function integrityToChecksums(integrity: string, what: string): SpdxChecksum[] {
  const out: SpdxChecksum[] = [];
  for (const token of integrity.trim().split(/\s+/).filter(Boolean)) {
    const m = /^(sha\d+)-([A-Za-z0-9+/]+={0,2})(?:\?.*)?$/.exec(token);
    const alg = m ? SRI_ALGORITHMS[m[1]!] : undefined;
    const bytes = m ? Buffer.from(m[2]!, 'base64') : undefined;
    if (!m || !alg || !bytes || bytes.length !== alg.bytes) {
      throw new StellaError('SBOM_INVALID', `${what}: integrity "${token.slice(0, 24)}…" is not a Subresource Integrity hash (expected sha512-<base64 of 64 bytes>, as in package-lock.json)`);
    }
    out.push({ algorithm: alg.algorithm, checksumValue: bytes.toString('hex') });
  }
  return out.sort((a, b) => byCodeUnit(a.algorithm, b.algorithm));
}

/** The registry tarball URL npm uses: `<registry>/<name>/-/<basename>-<version>.tgz`. */
export function npmTarballUrl(name: string, version: string, registry = NPM_REGISTRY): string {
  const base = name.startsWith('@') ? name.slice(name.indexOf('/') + 1) : name;
  return `${registry.replace(/\/+$/, '')}/${name}/-/${base}-${version}.tgz`;
}

/** One npm package as an SPDX package; the same function serves appSbom and imageSbom. */
export function npmSpdxPackage(p: NpmPackage, registry: string | null = NPM_REGISTRY): SpdxPackage {
  const what = `npm package ${p.name}@${p.version}`;
  if (!p.name || !p.version || typeof p.name !== 'string' || typeof p.version !== 'string') {
    throw new StellaError('SBOM_INVALID', `${what}${p.path ? ` at ${p.path}` : ''}: name and version are required (got name "${String(p.name)}", version "${String(p.version)}")`);
  }
  const purl = npmPurl(p.name, p.version);
  const checksums = p.integrity ? integrityToChecksums(p.integrity, what) : undefined;
  return {
    SPDXID: packageId('npm', p.name, p.version, purl),
    name: p.name,
    versionInfo: p.version,
    supplier: NOASSERTION,
    downloadLocation: registry ? npmTarballUrl(p.name, p.version, registry) : NOASSERTION,
    filesAnalyzed: false,
    ...(checksums ? { checksums } : {}),
    licenseConcluded: NOASSERTION,
    licenseDeclared: npmLicenseExpression(p.license),
    copyrightText: NOASSERTION,
    externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: purl }],
    primaryPackagePurpose: 'LIBRARY',
  };
}

/** npm packages → SPDX packages, one per purl; the same purl with two different integrities is an error. */
function npmSpdxPackages(pkgs: readonly NpmPackage[], registry: string | null, what: string): SpdxPackage[] {
  const byId = new Map<string, SpdxPackage>();
  for (const p of pkgs) {
    const sp = npmSpdxPackage(p, registry);
    const prev = byId.get(sp.SPDXID);
    if (prev && JSON.stringify(prev) !== JSON.stringify(sp)) {
      throw new StellaError('SBOM_INVALID', `${what}: npm package ${p.name}@${p.version} is listed twice with different metadata (integrity or license); expected one entry per name@version`);
    }
    byId.set(sp.SPDXID, sp);
  }
  return [...byId.values()];
}

function describes(id: string): SpdxRelationship {
  return { spdxElementId: DOCUMENT_ID, relationshipType: 'DESCRIBES', relatedSpdxElement: id };
}

function rel(a: string, type: string, b: string): SpdxRelationship {
  return { spdxElementId: a, relationshipType: type, relatedSpdxElement: b };
}

/** The last check (ci/src/redact): the known secrets in any encoding, and any URL carrying a password. */
function checkSecrets(doc: SpdxDocument, secrets: readonly string[] | undefined, what: string): SpdxDocument {
  assertNoSecrets(doc, secrets ?? [], what);
  return doc;
}

function imageName(service: string): string {
  return serviceByName(service).image;
}

function assertRepository(repository: string, what: string): string {
  if (!/^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)+$|^[a-z0-9]+(?:[._-][a-z0-9]+)*$/.test(repository)) {
    throw new StellaError('INVALID_ARGUMENT', `${what}: repository "${repository}" is not a repository reference without tag or digest (expected e.g. registry.example.com/stellaops/stella-api)`);
  }
  return repository;
}

// ---------------------------------------------------------------------------------------------

export interface AppSbomOptions {
  /** Catalog service name, e.g. `api`. */
  readonly service: string;
  /** The release version, e.g. `v1.4.0`. */
  readonly version: string;
  /** 40-hex git commit the service was built from. */
  readonly gitCommit: string;
  /** What the JS build bundled into /app/main.js. */
  readonly npmPackages: readonly NpmPackage[];
  readonly created: CreatedAt;
  /** e.g. `git+https://github.com/stellaops/stella`; gives the service a VCS downloadLocation. */
  readonly sourceRepository?: string;
  /** npm registry for the tarball downloadLocation; null writes NOASSERTION. */
  readonly npmRegistry?: string | null;
  /** Version in `Tool: stella-release-<v>`; defaults to `version`. */
  readonly toolVersion?: string;
  /** Strings that must not appear in the document (checked with assertNoSecrets). */
  readonly secrets?: readonly string[];
}

/** The SPDX document of the application content of one service image (/app/sbom.spdx.json). */

/** The SPDX package of a container image (one platform's manifest), with its OCI purl. */
export function containerSpdxPackage(o: { readonly name: string; readonly manifestDigest: string; readonly platform: string; readonly repository: string; readonly description: string }): SpdxPackage {
  const platform = parsePlatform(o.platform);
  const qualifiers: Record<string, string> = { arch: platform.architecture, repository_url: o.repository };
  if (platform.variant) qualifiers.variant = platform.variant;
  return {
    SPDXID: imagePackageId(o.manifestDigest),
    name: o.name,
    versionInfo: o.manifestDigest,
    supplier: SUPPLIER,
    downloadLocation: NOASSERTION,
    filesAnalyzed: false,
    checksums: [{ algorithm: 'SHA256', checksumValue: digestHex(o.manifestDigest) }],
    licenseConcluded: NOASSERTION,
    licenseDeclared: NOASSERTION,
    copyrightText: NOASSERTION,
    description: o.description,
    externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: ociPurl(o.name, o.manifestDigest, qualifiers) }],
    primaryPackagePurpose: 'CONTAINER',
  };
}

/** The SPDX package of the operating system the Debian packages belong to. */
export function operatingSystemSpdxPackage(distro: { readonly id: string; readonly versionId: string }, description: string): SpdxPackage {
  return {
    SPDXID: `SPDXRef-OperatingSystem-${distro.id}-${distro.versionId}`.replace(/[^A-Za-z0-9.-]/g, '-'),
    name: distro.id,
    versionInfo: distro.versionId,
    supplier: NOASSERTION,
    downloadLocation: NOASSERTION,
    filesAnalyzed: false,
    licenseConcluded: NOASSERTION,
    licenseDeclared: NOASSERTION,
    copyrightText: NOASSERTION,
    description,
    primaryPackagePurpose: 'OPERATING_SYSTEM',
  };
}

export function appSbom(o: AppSbomOptions): SpdxDocument {
  const image = imageName(o.service);
  const what = `app SBOM of ${image} ${o.version}`;
  if (!/^[0-9a-f]{40}$/.test(o.gitCommit)) {
    throw new StellaError('INVALID_ARGUMENT', `${what}: gitCommit "${o.gitCommit}" is not a commit id (expected 40 lowercase hex)`);
  }
  if (!o.version) throw new StellaError('INVALID_ARGUMENT', `${what}: version is empty`);
  const qualifiers = o.sourceRepository ? { vcs_url: `${o.sourceRepository}@${o.gitCommit}` } : undefined;
  const purl = genericPurl('stellaops', image, o.version, qualifiers);
  const serviceId = packageId('app', image, o.version, purl);
  const service: SpdxPackage = {
    SPDXID: serviceId,
    name: image,
    versionInfo: o.version,
    supplier: SUPPLIER,
    downloadLocation: o.sourceRepository ? `${o.sourceRepository}@${o.gitCommit}` : NOASSERTION,
    filesAnalyzed: false,
    sourceInfo: `built from git commit ${o.gitCommit}`,
    licenseConcluded: 'Apache-2.0',
    licenseDeclared: 'Apache-2.0',
    copyrightText: NOASSERTION,
    description: `The StellaOps ${o.service} service: /app/main.js (esbuild bundle), build-info.json and healthcheck.js.`,
    externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: purl }],
    primaryPackagePurpose: 'APPLICATION',
  };
  const npm = npmSpdxPackages(o.npmPackages, o.npmRegistry === undefined ? NPM_REGISTRY : o.npmRegistry, what);
  const doc: SpdxDocument = {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: DOCUMENT_ID,
    name: `${image}-${o.version}-app`,
    documentNamespace: `${NAMESPACE_BASE}/app/${image}/${encodeURIComponent(o.version)}/${o.gitCommit}`,
    creationInfo: { created: spdxTimestamp(o.created, `${what}: created`), creators: creators(o.toolVersion ?? o.version) },
    packages: sortPackages([service, ...npm], [serviceId]),
    // The bundle contains each npm package's code (esbuild inlines it).
    relationships: sortRelationships([describes(serviceId), ...npm.map((p) => rel(serviceId, 'CONTAINS', p.SPDXID))]),
  };
  return checkSecrets(doc, o.secrets, what);
}

// ---------------------------------------------------------------------------------------------

export interface ImageSbomOptions {
  readonly service: string;
  /** Repository without tag or digest, e.g. `registry.example.com/stellaops/stella-api`. */
  readonly repository: string;
  /** `linux/amd64` or `linux/arm64`. */
  readonly platform: string;
  /** Digest of this platform's image manifest. */
  readonly manifestDigest: string;
  /** From readOsPackagesFromRootfs / readOsPackagesFromLayer of the base. */
  readonly osPackages: readonly OsPackage[];
  /** The Node.js runtime at /nodejs/bin/node. */
  readonly node: { readonly version: string; readonly downloadLocation?: string };
  /** The npm packages of the app; when appSbom is given too, they must agree with it. */
  readonly npmPackages?: readonly NpmPackage[];
  /** The document baked at /app/sbom.spdx.json; its packages and relationships are merged in unchanged. */
  readonly appSbom?: SpdxDocument;
  readonly created: CreatedAt;
  /** Distribution of the base, for the OS package and the deb purls; default Debian 12. */
  readonly distro?: { readonly id: string; readonly versionId: string };
  readonly npmRegistry?: string | null;
  readonly toolVersion?: string;
  readonly secrets?: readonly string[];
}

export function osSpdxPackage(p: OsPackage, distro: string): SpdxPackage {
  const purl = debPurl(p.name, p.version, p.architecture, distro, p.source !== p.name || p.sourceVersion ? (p.sourceVersion ? `${p.source}@${p.sourceVersion}` : p.source) : undefined);
  const maint = p.maintainer ? /^(.*?)\s*<([^>]+)>\s*$/.exec(p.maintainer) : null;
  const supplier = p.maintainer ? `Organization: ${maint ? `${maint[1]} (${maint[2]})` : p.maintainer}` : NOASSERTION;
  return {
    SPDXID: packageId('deb', p.name, `${p.version}-${p.architecture ?? ''}`, purl),
    name: p.name,
    versionInfo: p.version,
    supplier,
    downloadLocation: NOASSERTION,
    filesAnalyzed: false,
    ...(p.homepage ? { homepage: p.homepage } : {}),
    sourceInfo: `built package from: ${p.source} ${p.sourceVersion ?? p.version}`,
    licenseConcluded: NOASSERTION,
    licenseDeclared: p.license?.expression ?? NOASSERTION,
    copyrightText: NOASSERTION,
    externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: purl }],
    primaryPackagePurpose: 'LIBRARY',
  };
}

function nodeSpdxPackage(version: string, downloadLocation: string | undefined): SpdxPackage {
  const v = version.replace(/^v/, '');
  if (!/^\d+\.\d+\.\d+$/.test(v)) throw new StellaError('INVALID_ARGUMENT', `Node.js version "${version}" is not X.Y.Z`);
  const purl = genericPurl(undefined, 'node', v);
  return {
    SPDXID: packageId('generic', 'node', v, purl),
    name: 'node',
    versionInfo: v,
    supplier: 'Organization: OpenJS Foundation',
    downloadLocation: downloadLocation ?? NOASSERTION,
    filesAnalyzed: false,
    homepage: 'https://nodejs.org',
    licenseConcluded: NOASSERTION,
    licenseDeclared: 'MIT',
    copyrightText: NOASSERTION,
    description: 'The Node.js runtime at /nodejs/bin/node.',
    externalRefs: [
      { referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: purl },
      // Scanners (grype, trivy) match Node.js advisories by this CPE.
      { referenceCategory: 'SECURITY', referenceType: 'cpe23Type', referenceLocator: `cpe:2.3:a:nodejs:node.js:${v}:*:*:*:*:*:*:*` },
    ],
    primaryPackagePurpose: 'APPLICATION',
  };
}

function mergeExtracted(into: Map<string, SpdxExtractedLicense>, list: readonly SpdxExtractedLicense[] | undefined, what: string): void {
  for (const e of list ?? []) {
    const prev = into.get(e.licenseId);
    if (prev && prev.extractedText !== e.extractedText) {
      throw new StellaError('SBOM_INVALID', `${what}: ${e.licenseId} has two different texts; expected one text per LicenseRef`);
    }
    into.set(e.licenseId, e);
  }
}

/** The app part of the app SBOM: its described root and every package and relationship but DESCRIBES. */
function appPart(app: SpdxDocument, what: string): { root: string; packages: SpdxPackage[]; relationships: SpdxRelationship[] } {
  const roots = app.relationships.filter((r) => r.spdxElementId === DOCUMENT_ID && r.relationshipType === 'DESCRIBES').map((r) => r.relatedSpdxElement);
  if (roots.length !== 1) throw new StellaError('SBOM_INVALID', `${what}: the app SBOM describes ${roots.length} elements (expected exactly one: the service)`);
  return {
    root: roots[0]!,
    packages: [...app.packages],
    relationships: app.relationships.filter((r) => r.relationshipType !== 'DESCRIBES'),
  };
}

/** The SPDX document of one platform image of a service. */
export function imageSbom(o: ImageSbomOptions): SpdxDocument {
  const image = imageName(o.service);
  const what = `image SBOM of ${image} ${o.platform}`;
  assertDigest(o.manifestDigest, `${what}: manifestDigest`);
  assertRepository(o.repository, what);
  const distroId = o.distro ?? { id: 'debian', versionId: '12' };
  const distro = `${distroId.id}-${distroId.versionId}`;

  const imageId = imagePackageId(o.manifestDigest);
  const imagePkg = containerSpdxPackage({ name: image, manifestDigest: o.manifestDigest, platform: o.platform, repository: o.repository, description: `StellaOps ${o.service} image for ${o.platform}` });
  const osPkg = operatingSystemSpdxPackage(distroId, 'Operating system of the base layer (distroless-style: packages only, no shell or package manager).');
  const extracted = new Map<string, SpdxExtractedLicense>();
  const debs = o.osPackages.map((p) => {
    mergeExtracted(extracted, p.license?.extracted, what);
    return osSpdxPackage(p, distro);
  });
  const node = nodeSpdxPackage(o.node.version, o.node.downloadLocation);

  const packages: SpdxPackage[] = [imagePkg, osPkg, ...debs, node];
  const relationships: SpdxRelationship[] = [
    describes(imageId),
    rel(imageId, 'CONTAINS', osPkg.SPDXID),
    ...debs.map((d) => rel(imageId, 'CONTAINS', d.SPDXID)),
    rel(imageId, 'CONTAINS', node.SPDXID),
  ];

  const registry = o.npmRegistry === undefined ? NPM_REGISTRY : o.npmRegistry;
  const npm = o.npmPackages ? npmSpdxPackages(o.npmPackages, registry, what) : undefined;
  if (o.appSbom) {
    const app = appPart(o.appSbom, what);
    if (npm) {
      // The app part must be the one baked into the image: same ids, versions, checksums.
      const inApp = new Map(app.packages.map((p) => [p.SPDXID, p]));
      for (const p of npm) {
        const a = inApp.get(p.SPDXID);
        if (!a) throw new StellaError('SBOM_INVALID', `${what}: npm package ${p.name}@${p.versionInfo} (${p.SPDXID}) is not in the app SBOM ${o.appSbom.documentNamespace}; expected the same npm packages in both`);
        if (JSON.stringify(a) !== JSON.stringify(p)) {
          throw new StellaError('SBOM_INVALID', `${what}: npm package ${p.name}@${p.versionInfo} differs from the app SBOM ${o.appSbom.documentNamespace}: expected ${JSON.stringify(a)}, got ${JSON.stringify(p)}`);
        }
      }
      const npmIds = new Set(npm.map((p) => p.SPDXID));
      const extra = app.packages.filter((p) => p.SPDXID.startsWith('SPDXRef-Package-npm-') && !npmIds.has(p.SPDXID));
      if (extra.length > 0) {
        throw new StellaError('SBOM_INVALID', `${what}: the app SBOM lists npm packages the build did not report: ${extra.map((p) => `${p.name}@${p.versionInfo}`).join(', ')}`);
      }
    }
    mergeExtracted(extracted, o.appSbom.hasExtractedLicensingInfos, what);
    packages.push(...app.packages);
    relationships.push(rel(imageId, 'CONTAINS', app.root), ...app.relationships);
  } else if (npm) {
    packages.push(...npm);
    relationships.push(...npm.map((p) => rel(imageId, 'CONTAINS', p.SPDXID)));
  }

  const seen = new Map<string, SpdxPackage>();
  for (const p of packages) {
    const prev = seen.get(p.SPDXID);
    if (prev && JSON.stringify(prev) !== JSON.stringify(p)) throw new StellaError('SBOM_INVALID', `${what}: two different packages share the SPDXID ${p.SPDXID} (${prev.name} and ${p.name})`);
    seen.set(p.SPDXID, p);
  }
  const usedRefs = new Set([...seen.values()].flatMap((p) => [...licenseRefsIn(p.licenseDeclared ?? ''), ...licenseRefsIn(p.licenseConcluded ?? '')]));
  const licenses = [...extracted.values()].filter((e) => usedRefs.has(e.licenseId)).sort((a, b) => byCodeUnit(a.licenseId, b.licenseId));

  const doc: SpdxDocument = {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: DOCUMENT_ID,
    name: `${image}-${o.platform.replace(/\//g, '-')}-${o.manifestDigest}`,
    documentNamespace: `${NAMESPACE_BASE}/${o.repository}/${o.manifestDigest}`,
    creationInfo: { created: spdxTimestamp(o.created, `${what}: created`), creators: creators(o.toolVersion) },
    packages: sortPackages([...seen.values()], [imageId]),
    relationships: sortRelationships(relationships),
    ...(licenses.length > 0 ? { hasExtractedLicensingInfos: licenses } : {}),
  };
  return checkSecrets(doc, o.secrets, what);
}

// ---------------------------------------------------------------------------------------------

export interface IndexSbomPlatform {
  readonly platform: string;
  readonly manifestDigest: string;
  /** The platform's image SBOM; gives sbomNamespace and sbomDigest and is checked against manifestDigest. */
  readonly sbom?: SpdxDocument;
  /** documentNamespace of the platform's image SBOM (when `sbom` is not given). */
  readonly sbomNamespace?: string;
  /** sha256 of its canonical bytes (serializeSpdx), i.e. its OCI blob digest; SPDX requires a checksum per external document. */
  readonly sbomDigest?: string;
}

export interface IndexSbomOptions {
  readonly service: string;
  readonly repository: string;
  readonly indexDigest: string;
  readonly platforms: readonly IndexSbomPlatform[];
  readonly created: CreatedAt;
  readonly toolVersion?: string;
  readonly secrets?: readonly string[];
}

/** The SPDX document of a service's multi-arch image index. */
export function indexSbom(o: IndexSbomOptions): SpdxDocument {
  const image = imageName(o.service);
  const what = `index SBOM of ${image}`;
  assertDigest(o.indexDigest, `${what}: indexDigest`);
  assertRepository(o.repository, what);
  if (o.platforms.length === 0) throw new StellaError('INVALID_ARGUMENT', `${what}: no platforms (expected one entry per platform manifest of the index)`);
  const indexId = imageIndexPackageId(o.indexDigest);
  const indexPkg: SpdxPackage = {
    SPDXID: indexId,
    name: image,
    versionInfo: o.indexDigest,
    supplier: SUPPLIER,
    downloadLocation: NOASSERTION,
    filesAnalyzed: false,
    checksums: [{ algorithm: 'SHA256', checksumValue: digestHex(o.indexDigest) }],
    licenseConcluded: NOASSERTION,
    licenseDeclared: NOASSERTION,
    copyrightText: NOASSERTION,
    description: `StellaOps ${o.service} multi-arch image index (${o.platforms.map((p) => p.platform).join(', ')})`,
    externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: ociPurl(image, o.indexDigest, { repository_url: o.repository }) }],
    primaryPackagePurpose: 'CONTAINER',
  };
  const packages: SpdxPackage[] = [indexPkg];
  const relationships: SpdxRelationship[] = [describes(indexId)];
  const refs: SpdxExternalDocumentRef[] = [];
  const seenPlatforms = new Set<string>();
  for (const p of o.platforms) {
    const pw = `${what}: platform ${p.platform}`;
    const plat = parsePlatform(p.platform);
    if (seenPlatforms.has(p.platform)) throw new StellaError('INVALID_ARGUMENT', `${pw} is listed twice`);
    seenPlatforms.add(p.platform);
    assertDigest(p.manifestDigest, `${pw}: manifestDigest`);
    const imageId = imagePackageId(p.manifestDigest);
    let namespace = p.sbomNamespace;
    let sbomDigest = p.sbomDigest;
    if (p.sbom) {
      const root = p.sbom.relationships.find((r) => r.spdxElementId === DOCUMENT_ID && r.relationshipType === 'DESCRIBES')?.relatedSpdxElement;
      if (root !== imageId) throw new StellaError('SBOM_INVALID', `${pw}: its image SBOM describes ${root ?? 'nothing'}; expected ${imageId} (manifest ${p.manifestDigest})`);
      const d = spdxDigest(p.sbom);
      if (sbomDigest && sbomDigest !== d) throw new StellaError('DIGEST_MISMATCH', `${pw}: sbomDigest ${sbomDigest} does not match the given image SBOM: expected ${d}`);
      if (namespace && namespace !== p.sbom.documentNamespace) throw new StellaError('SBOM_INVALID', `${pw}: sbomNamespace ${namespace} does not match the given image SBOM's ${p.sbom.documentNamespace}`);
      namespace = p.sbom.documentNamespace;
      sbomDigest = d;
    }
    if (!namespace || !sbomDigest) throw new StellaError('INVALID_ARGUMENT', `${pw}: give the image SBOM (sbom) or both sbomNamespace and sbomDigest`);
    assertDigest(sbomDigest, `${pw}: sbomDigest`);
    const docRef = platformDocumentRef(p.platform);
    const qualifiers: Record<string, string> = { arch: plat.architecture, repository_url: o.repository };
    if (plat.variant) qualifiers.variant = plat.variant;
    packages.push({
      SPDXID: imageId,
      name: image,
      versionInfo: p.manifestDigest,
      supplier: SUPPLIER,
      downloadLocation: NOASSERTION,
      filesAnalyzed: false,
      checksums: [{ algorithm: 'SHA256', checksumValue: digestHex(p.manifestDigest) }],
      licenseConcluded: NOASSERTION,
      licenseDeclared: NOASSERTION,
      copyrightText: NOASSERTION,
      description: `StellaOps ${o.service} image for ${p.platform}`,
      externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: ociPurl(image, p.manifestDigest, qualifiers) }],
      primaryPackagePurpose: 'CONTAINER',
    });
    refs.push({ externalDocumentId: docRef, spdxDocument: namespace, checksum: { algorithm: 'SHA256', checksumValue: digestHex(sbomDigest) } });
    relationships.push(rel(indexId, 'VARIANT_OF', imageId), rel(imageId, 'DESCRIBED_BY', `${docRef}:${DOCUMENT_ID}`));
  }
  const doc: SpdxDocument = {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: DOCUMENT_ID,
    name: `${image}-index-${o.indexDigest}`,
    documentNamespace: `${NAMESPACE_BASE}/${o.repository}/${o.indexDigest}`,
    creationInfo: { created: spdxTimestamp(o.created, `${what}: created`), creators: creators(o.toolVersion) },
    externalDocumentRefs: refs.sort((a, b) => byCodeUnit(a.externalDocumentId, b.externalDocumentId)),
    packages: sortPackages(packages, [indexId]),
    relationships: sortRelationships(relationships),
  };
  return checkSecrets(doc, o.secrets, what);
}
