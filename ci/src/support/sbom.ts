/**
 * SPDX 2.3 documents of the support images: per platform, the image, the
 * Debian packages read from its rootfs (ci/src/sbom's dpkg reader and package
 * mapping) and, for Go binaries, the binary and every module version from
 * `go version -m`; per index, the same index document as the service images.
 */
import { PackageURL } from 'packageurl-js';
import { StellaError } from '../errors.ts';
import { digestHex, parsePlatform } from '../oci/types.ts';
import { containerSpdxPackage, operatingSystemSpdxPackage, osSpdxPackage } from '../sbom/documents.ts';
import { creators, DOCUMENT_ID, imageIndexPackageId, imagePackageId, NAMESPACE_BASE, NOASSERTION, ociPurl, packageId, platformDocumentRef, sortPackages, sortRelationships, spdxDigest, spdxTimestamp, SUPPLIER, byCodeUnit } from '../sbom/spdx.ts';
import { licenseRefsIn } from '../sbom/license.ts';
import type { CreatedAt, OsPackage, SpdxDocument, SpdxExtractedLicense, SpdxPackage, SpdxRelationship } from '../sbom/types.ts';
import type { GoBuildInfo } from './go.ts';
import type { GoBinary } from './recipes.ts';
import { SUPPORT_DEBIAN } from './recipes.ts';

function rel(a: string, type: string, b: string): SpdxRelationship {
  return { spdxElementId: a, relationshipType: type, relatedSpdxElement: b };
}

export function golangPurl(path: string, version: string): string {
  const i = path.lastIndexOf('/');
  const ns = i > 0 ? path.slice(0, i) : undefined;
  const name = i > 0 ? path.slice(i + 1) : path;
  return new PackageURL('golang', ns, name, version, undefined, undefined).toString();
}

function goModulePackage(path: string, version: string, sum: string | undefined): SpdxPackage {
  const purl = golangPurl(path, version);
  return {
    SPDXID: packageId('golang', path, version, purl),
    name: path,
    versionInfo: version,
    supplier: NOASSERTION,
    downloadLocation: `https://proxy.golang.org/${path.replace(/[A-Z]/g, (c) => `!${c.toLowerCase()}`)}/@v/${version}.zip`,
    filesAnalyzed: false,
    licenseConcluded: NOASSERTION,
    licenseDeclared: NOASSERTION,
    copyrightText: NOASSERTION,
    ...(sum ? { comment: `go.sum ${sum}` } : {}),
    externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: purl }],
    primaryPackagePurpose: 'LIBRARY',
  };
}

export interface SupportImageSbomOptions {
  /** Repository name, e.g. `support-postgres`. */
  readonly image: string;
  readonly title: string;
  readonly repository: string;
  readonly platform: string;
  readonly manifestDigest: string;
  readonly osPackages: readonly OsPackage[];
  /** The Go binaries in the image (the software's own, the probe). */
  readonly go?: readonly { readonly binary: GoBinary; readonly info: GoBuildInfo; readonly sha256: string }[];
  readonly created: CreatedAt;
}

export function supportImageSbom(o: SupportImageSbomOptions): SpdxDocument {
  const what = `SBOM of ${o.image} ${o.platform}`;
  const distro = `${SUPPORT_DEBIAN.id}-${SUPPORT_DEBIAN.versionId}`;
  const imageId = imagePackageId(o.manifestDigest);
  const imagePkg = containerSpdxPackage({ name: o.image, manifestDigest: o.manifestDigest, platform: o.platform, repository: o.repository, description: `StellaOps support image ${o.title} for ${o.platform}` });
  const osPkg = operatingSystemSpdxPackage(SUPPORT_DEBIAN, 'Debian packages unpacked with dpkg-deb (no maintainer scripts, no package manager).');
  const extracted = new Map<string, SpdxExtractedLicense>();
  const packages: SpdxPackage[] = [imagePkg, osPkg];
  const relationships: SpdxRelationship[] = [rel(DOCUMENT_ID, 'DESCRIBES', imageId), rel(imageId, 'CONTAINS', osPkg.SPDXID)];
  for (const p of o.osPackages) {
    for (const e of p.license?.extracted ?? []) extracted.set(e.licenseId, e);
    const s = osSpdxPackage(p, distro);
    packages.push(s);
    relationships.push(rel(imageId, 'CONTAINS', s.SPDXID));
  }
  const seen = new Set<string>();
  for (const g of o.go ?? []) {
    const { binary, info } = g;
    const purl = golangPurl(binary.upstreamModule, binary.upstreamVersion);
    const binId = packageId('golang-binary', binary.id, binary.version, purl);
    packages.push({
      SPDXID: binId,
      name: binary.pathInImage.split('/').pop()!,
      versionInfo: binary.version,
      supplier: NOASSERTION,
      downloadLocation: NOASSERTION,
      filesAnalyzed: false,
      homepage: binary.homepage,
      checksums: [{ algorithm: 'SHA256', checksumValue: g.sha256 }],
      licenseConcluded: NOASSERTION,
      licenseDeclared: binary.license,
      copyrightText: NOASSERTION,
      description: `${binary.pathInImage}: built with ${info.goVersion} from ${info.main.path} (${Object.entries(info.settings).filter(([k]) => ['GOARCH', 'CGO_ENABLED', '-trimpath', '-ldflags'].includes(k)).map(([k, v]) => `${k}=${v}`).join(' ')})`,
      externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: purl }],
      primaryPackagePurpose: 'APPLICATION',
    });
    relationships.push(rel(imageId, 'CONTAINS', binId));
    seen.add(binId);
    const stdlib = goModulePackage('stdlib', info.goVersion.replace(/^go/, 'v'), undefined);
    if (!seen.has(stdlib.SPDXID)) {
      seen.add(stdlib.SPDXID);
      packages.push({ ...stdlib, downloadLocation: NOASSERTION, licenseDeclared: 'BSD-3-Clause', description: 'The Go standard library and runtime.' });
    }
    relationships.push(rel(binId, 'CONTAINS', stdlib.SPDXID));
    const mine = new Set<string>();
    for (const d of [info.main, ...info.deps]) {
      if (d.version === '(devel)') continue;
      const p = goModulePackage(d.path, d.version, d.sum);
      if (mine.has(p.SPDXID)) continue;
      mine.add(p.SPDXID);
      if (!seen.has(p.SPDXID)) {
        seen.add(p.SPDXID);
        packages.push(p);
      }
      relationships.push(rel(binId, 'CONTAINS', p.SPDXID));
    }
  }
  const ids = new Set<string>();
  for (const p of packages) {
    if (ids.has(p.SPDXID)) throw new StellaError('SBOM_INVALID', `${what}: SPDXID ${p.SPDXID} twice`);
    ids.add(p.SPDXID);
  }
  const used = new Set(packages.flatMap((p) => [...licenseRefsIn(p.licenseDeclared ?? ''), ...licenseRefsIn(p.licenseConcluded ?? '')]));
  const licenses = [...extracted.values()].filter((e) => used.has(e.licenseId)).sort((a, b) => byCodeUnit(a.licenseId, b.licenseId));
  return {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: DOCUMENT_ID,
    name: `${o.image}-${o.platform.replace(/\//g, '-')}-${o.manifestDigest}`,
    documentNamespace: `${NAMESPACE_BASE}/${o.repository}/${o.manifestDigest}`,
    creationInfo: { created: spdxTimestamp(o.created, `${what}: created`), creators: creators(undefined) },
    packages: sortPackages(packages, [imageId]),
    relationships: sortRelationships(relationships),
    ...(licenses.length > 0 ? { hasExtractedLicensingInfos: licenses } : {}),
  };
}

/** The index document: the index, VARIANT_OF each platform image, each DESCRIBED_BY its platform document. */
export function supportIndexSbom(o: { image: string; title: string; repository: string; indexDigest: string; platforms: readonly { platform: string; manifestDigest: string; sbom: SpdxDocument }[]; created: CreatedAt }): SpdxDocument {
  const indexId = imageIndexPackageId(o.indexDigest);
  const base = (id: string, version: string, description: string, purl: string): SpdxPackage => ({
    SPDXID: id,
    name: o.image,
    versionInfo: version,
    supplier: SUPPLIER,
    downloadLocation: NOASSERTION,
    filesAnalyzed: false,
    checksums: [{ algorithm: 'SHA256', checksumValue: digestHex(version) }],
    licenseConcluded: NOASSERTION,
    licenseDeclared: NOASSERTION,
    copyrightText: NOASSERTION,
    description,
    externalRefs: [{ referenceCategory: 'PACKAGE-MANAGER', referenceType: 'purl', referenceLocator: purl }],
    primaryPackagePurpose: 'CONTAINER',
  });
  const packages: SpdxPackage[] = [base(indexId, o.indexDigest, `StellaOps support image ${o.title} (${o.platforms.map((p) => p.platform).join(', ')})`, ociPurl(o.image, o.indexDigest, { repository_url: o.repository }))];
  const relationships: SpdxRelationship[] = [rel(DOCUMENT_ID, 'DESCRIBES', indexId)];
  const refs = [];
  for (const p of o.platforms) {
    const id = imagePackageId(p.manifestDigest);
    const arch = parsePlatform(p.platform).architecture;
    packages.push(base(id, p.manifestDigest, `StellaOps support image ${o.title} for ${p.platform}`, ociPurl(o.image, p.manifestDigest, { arch, repository_url: o.repository })));
    const docRef = platformDocumentRef(p.platform);
    refs.push({ externalDocumentId: docRef, spdxDocument: p.sbom.documentNamespace, checksum: { algorithm: 'SHA256' as const, checksumValue: digestHex(spdxDigest(p.sbom)) } });
    relationships.push(rel(indexId, 'VARIANT_OF', id), rel(id, 'DESCRIBED_BY', `${docRef}:${DOCUMENT_ID}`));
  }
  return {
    spdxVersion: 'SPDX-2.3',
    dataLicense: 'CC0-1.0',
    SPDXID: DOCUMENT_ID,
    name: `${o.image}-index-${o.indexDigest}`,
    documentNamespace: `${NAMESPACE_BASE}/${o.repository}/${o.indexDigest}`,
    creationInfo: { created: spdxTimestamp(o.created), creators: creators(undefined) },
    externalDocumentRefs: refs.sort((a, b) => byCodeUnit(a.externalDocumentId, b.externalDocumentId)),
    packages: sortPackages(packages, [indexId]),
    relationships: sortRelationships(relationships),
  };
}
