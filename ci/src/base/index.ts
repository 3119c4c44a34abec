/** The offline distroless-style Node 24 base image: fetch its inputs (locked), build it into an OCI layout. */
export { fetchBaseInputs, LOCK_POLICY_ENV, defaultBaseCacheDir, sha256File, DEFAULT_SOURCES_FILE, type FetchBaseOptions, type BaseInputs, type PlatformInputs } from './fetch.ts';
export { buildBase, NONROOT_UID, NODE_PATH_IN_IMAGE, BASE_REF_NAME, BASE_EQUIVALENT_OF, type BuildBaseOptions, type BaseBuildResult, type BaseImage } from './build.ts';
export { readLock, writeLock, DEFAULT_LOCK_FILE, BASE_DEBIAN_PACKAGES, type BaseLock, type LockedDeb, type LockedNode, type LockedPlatform } from './lock.ts';
export { readNodePin, BASE_PLATFORMS, ROOT_PACKAGE_JSON } from './pin.ts';
