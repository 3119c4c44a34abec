/**
 * in-toto predicate types of our attestations, as cosign maps its `--type` flag.
 * Source: sigstore/cosign cmd/cosign/cli/options/predicate.go (PredicateTypeMap):
 *   spdxjson        -> in_toto.PredicateSPDX               = "https://spdx.dev/Document"
 *   slsaprovenance1 -> slsa_provenance/v1.PredicateSLSAProvenance = "https://slsa.dev/provenance/v1"
 * (the constants live in github.com/in-toto/in-toto-golang in_toto/attestations.go and
 * in_toto/slsa_provenance/v1/provenance.go). Note cosign wraps either predicate in an
 * in-toto Statement v0.1 (pkg/cosign/attestation/attestation.go).
 */
export const SPDX_PREDICATE_TYPE = 'https://spdx.dev/Document';
import { SLSA_PROVENANCE_V1 } from '../provenance/statement.ts';
export const SLSA_PROVENANCE_V1_PREDICATE_TYPE = SLSA_PROVENANCE_V1;
/** cosign `attest --type` values that produce the predicate types above. */
export const COSIGN_TYPE_SPDXJSON = 'spdxjson';
export const COSIGN_TYPE_SLSA1 = 'slsaprovenance1';
