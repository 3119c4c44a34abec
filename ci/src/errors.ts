/**
 * The pipeline's error type. Every failure a user can see carries a stable `code`
 * (for scripts and tests) and a message that stands alone: it names the artifact
 * and, where it applies, what was expected and what was found. The Dagger runtime
 * shows only `error.message`, so nothing essential may live only in `cause`.
 */
export type ErrorCode =
  | 'INVALID_ARGUMENT'
  | 'INVALID_VERSION'
  | 'IMMUTABLE_TAG'
  | 'CATALOG_INVALID'
  | 'CONFIG_INVALID'
  | 'BUILD_FAILED'
  | 'DOCKERFILE_UNSUPPORTED'
  | 'DIGEST_INVALID'
  | 'DIGEST_MISMATCH'
  | 'UNSAFE_PATH' | 'LOCK_MISMATCH' | 'LOCK_STALE' | 'FETCH_FAILED' // oci/layer, oci/layout, base
  | 'REGISTRY_ERROR'
  | 'REGISTRY_AUTH'
  | 'NOT_FOUND'
  | 'SIGNATURE_INVALID' | 'KEY_INVALID' | 'SIGNING_FAILED' // sign/
  | 'ATTESTATION_INVALID'
  | 'SBOM_INVALID' | 'SECRET_LEAK' // sbom/, provenance/
  | 'VERIFY_FAILED'
  | 'TOOLCHAIN_DRIFT'
  | 'BUNDLE_INVALID' | 'BUNDLE_UNSAFE'; // bundle/: a bundle that does not verify; an archive entry refused before extraction

export class StellaError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StellaError';
    this.code = code;
  }
}

/** Wraps an error with the name of the step that failed, keeping its code. */
export function inStep(step: string, err: unknown): StellaError {
  if (err instanceof StellaError) {
    return new StellaError(err.code, `${step}: ${err.message}`, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new StellaError('BUILD_FAILED', `${step}: ${message}`, { cause: err });
}
