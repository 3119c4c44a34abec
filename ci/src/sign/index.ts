/**
 * Signing and verification that cosign accepts: keys (cosign's encrypted format
 * included), Sigstore bundle v0.3 (DSSE over in-toto) by key or keyless,
 * legacy cosign v2 `.sig` signatures, and the OCI manifests that store them.
 * Pure: documents and crypto only; storing them in a registry is
 * ci/src/release/attach.ts over ci/src/registry/referrers.ts.
 */
export * from './keys.ts';
export * from './statement.ts';
export * from './sign.ts';
export * from './legacy.ts';
export * from './manifests.ts';
export * from './verify.ts';
export * from './blob.ts';
