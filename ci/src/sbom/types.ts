/**
 * SPDX 2.3 JSON document shapes (the subset this project writes) and the inputs
 * the SBOM generators take. Field names follow the SPDX 2.3 JSON schema exactly.
 */

export type SpdxChecksumAlgorithm = 'SHA1' | 'SHA256' | 'SHA384' | 'SHA512';

export interface SpdxChecksum {
  readonly algorithm: SpdxChecksumAlgorithm;
  /** Lower-case hex. */
  readonly checksumValue: string;
}

export interface SpdxExternalRef {
  readonly referenceCategory: 'PACKAGE-MANAGER' | 'SECURITY' | 'PERSISTENT-ID' | 'OTHER';
  /** `purl` (PACKAGE-MANAGER) or `cpe23Type` (SECURITY). */
  readonly referenceType: string;
  readonly referenceLocator: string;
}

export type SpdxPackagePurpose =
  | 'APPLICATION' | 'FRAMEWORK' | 'LIBRARY' | 'CONTAINER' | 'OPERATING_SYSTEM'
  | 'DEVICE' | 'FIRMWARE' | 'SOURCE' | 'ARCHIVE' | 'FILE' | 'INSTALL' | 'OTHER';

export interface SpdxPackage {
  readonly SPDXID: string;
  readonly name: string;
  readonly versionInfo?: string;
  readonly supplier?: string;
  readonly originator?: string;
  readonly downloadLocation: string;
  readonly filesAnalyzed: boolean;
  readonly checksums?: readonly SpdxChecksum[];
  readonly homepage?: string;
  readonly sourceInfo?: string;
  readonly licenseConcluded?: string;
  readonly licenseDeclared?: string;
  readonly copyrightText?: string;
  readonly description?: string;
  readonly comment?: string;
  readonly externalRefs?: readonly SpdxExternalRef[];
  readonly primaryPackagePurpose?: SpdxPackagePurpose;
}

export interface SpdxRelationship {
  readonly spdxElementId: string;
  readonly relationshipType: string;
  readonly relatedSpdxElement: string;
  readonly comment?: string;
}

export interface SpdxExternalDocumentRef {
  /** `DocumentRef-<idstring>`. */
  readonly externalDocumentId: string;
  /** The referenced document's documentNamespace. */
  readonly spdxDocument: string;
  readonly checksum: SpdxChecksum;
}

export interface SpdxExtractedLicense {
  readonly licenseId: string;
  readonly extractedText: string;
  readonly name?: string;
  readonly comment?: string;
}

export interface SpdxDocument {
  readonly spdxVersion: 'SPDX-2.3';
  readonly dataLicense: 'CC0-1.0';
  readonly SPDXID: 'SPDXRef-DOCUMENT';
  readonly name: string;
  readonly documentNamespace: string;
  readonly creationInfo: {
    readonly created: string;
    readonly creators: readonly string[];
    readonly comment?: string;
  };
  readonly comment?: string;
  readonly externalDocumentRefs?: readonly SpdxExternalDocumentRef[];
  readonly packages: readonly SpdxPackage[];
  readonly relationships: readonly SpdxRelationship[];
  readonly hasExtractedLicensingInfos?: readonly SpdxExtractedLicense[];
}

/** An npm package bundled into a service, as the JS build (services/build.ts) reports it. */
export interface NpmPackage {
  readonly name: string;
  readonly version: string;
  /** package.json `license` (an SPDX expression when well-formed); anything else becomes NOASSERTION. */
  readonly license?: unknown;
  /** npm Subresource Integrity string, e.g. `sha512-<base64>` (may list several hashes). */
  readonly integrity?: string;
  /** Where it sat in node_modules, e.g. `node_modules/pg`. Informational only. */
  readonly path?: string;
}

/** A license found in a Debian machine-readable (DEP-5) copyright file. */
export interface DebianLicense {
  /** SPDX license expression, or NOASSERTION when the copyright file is not machine-readable. */
  readonly expression: string;
  /** LicenseRef-* identifiers the expression uses, with the text that explains each. */
  readonly extracted: readonly SpdxExtractedLicense[];
}

/** An installed Debian package, from a dpkg status file or a distroless status.d file. */
export interface OsPackage {
  readonly name: string;
  readonly version: string;
  /** `amd64`, `arm64`, `all`, … (absent when the stanza has no Architecture field). */
  readonly architecture?: string;
  /** Source package name (the `Source` field without its version, else the package name). */
  readonly source: string;
  /** Version of the source package when the `Source` field names one that differs. */
  readonly sourceVersion?: string;
  readonly maintainer?: string;
  readonly homepage?: string;
  /** From /usr/share/doc/<package>/copyright when machine-readable; NOASSERTION otherwise. */
  readonly license?: DebianLicense;
}

/** When the document was made: a Date, ISO-8601 text, or SOURCE_DATE_EPOCH seconds (number or digits). */
export type CreatedAt = Date | string | number;
