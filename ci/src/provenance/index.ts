/** SLSA v1 provenance (in-toto Statement v1) of a release, its validation, and the secret check of published documents. */
export {
  provenanceStatement, statementBytes, rfc3339, IN_TOTO_STATEMENT_V1, IN_TOTO_STATEMENT_V01, SLSA_PROVENANCE_V1, STELLA_BUILD_TYPE,
  type ProvenanceOptions, type ProvenanceStatement, type SlsaProvenanceV1, type ResourceDescriptor, type Subject, type DigestSet,
} from './statement.ts';
export { validateProvenance, provenanceProblems, type ProvenanceValidationOptions, type ExpectedSubject } from './validate.ts';
export { assertNoSecrets, findSecrets, MIN_SECRET_LENGTH, type SecretFinding } from './secrets.ts';
