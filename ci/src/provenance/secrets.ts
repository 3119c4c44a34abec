/**
 * The last check on every document we publish (SBOMs, provenance): no secret may appear
 * in it. It lives in the shared redaction module (ci/src/redact), with the redaction of
 * logs and error output; this file keeps the provenance package's names.
 */
export { assertNoSecrets, findSecrets, MIN_SECRET_LENGTH, type SecretFinding } from '../redact/index.ts';
