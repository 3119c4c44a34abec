/** SPDX 2.3 SBOMs of the service images: dpkg/DEP-5 readers, the app, image and index documents, validation. */
export * from './types.ts';
export { readDpkgStatus, readOsPackagesFromRootfs, readOsPackagesFromLayer } from './dpkg.ts';
export { dep5License, debianLicenseToSpdx, npmLicenseExpression, isSpdxExpression } from './license.ts';
export {
  appSbom, imageSbom, indexSbom, npmSpdxPackage, integrityToChecksums, npmTarballUrl, NPM_REGISTRY,
  type AppSbomOptions, type ImageSbomOptions, type IndexSbomOptions, type IndexSbomPlatform,
} from './documents.ts';
export { serializeSpdx, spdxDigest, spdxTimestamp, imagePackageId, imageIndexPackageId, NAMESPACE_BASE, NOASSERTION } from './spdx.ts';
export { validateSpdx, spdxReport, locateSpdxSchema, DEFAULT_SPDX_SCHEMA, type SpdxValidationOptions, type SpdxValidationReport } from './validate.ts';
export * from './predicates.ts';
