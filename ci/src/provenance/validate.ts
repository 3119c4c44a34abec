/**
 * Structural checks of an in-toto statement carrying SLSA v1 provenance, ours or one
 * read back from a registry: types, well-formed digests, the SLSA fields a verifier
 * relies on, and (when given) that the subjects are exactly the expected digests.
 * Every problem is collected; the error lists them all.
 */
import { StellaError } from '../errors.ts';
import { isDigest } from '../oci/types.ts';
import { IN_TOTO_STATEMENT_V01, IN_TOTO_STATEMENT_V1, SLSA_PROVENANCE_V1 } from './statement.ts';

export interface ExpectedSubject {
  readonly digest: string;
  /** When given, the subject with this digest must also carry this name. */
  readonly name?: string;
}

export interface ProvenanceValidationOptions {
  /** Exactly these digests (`sha256:<hex>`) must be the subjects: none missing, none extra. */
  readonly expectedSubjects?: readonly (ExpectedSubject | string)[];
  /** Also accept `https://in-toto.io/Statement/v0.1`, which cosign attest writes (default true). */
  readonly allowStatementV01?: boolean;
  /** Names the statement in messages. */
  readonly what?: string;
}

const DIGEST_FORMS: Readonly<Record<string, RegExp>> = {
  sha256: /^[0-9a-f]{64}$/,
  sha384: /^[0-9a-f]{96}$/,
  sha512: /^[0-9a-f]{128}$/,
  sha1: /^[0-9a-f]{40}$/,
  gitCommit: /^(?:[0-9a-f]{40}|[0-9a-f]{64})$/,
};

const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2})$/;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isUri(v: unknown): v is string {
  if (typeof v !== 'string' || v === '') return false;
  try {
    new URL(v);
    return true;
  } catch {
    return false;
  }
}

function checkDigestSet(d: unknown, path: string, problems: string[]): void {
  if (!isObject(d) || Object.keys(d).length === 0) {
    problems.push(`${path}: expected a non-empty digest set ({ "sha256": "<hex>" }), got ${JSON.stringify(d)}`);
    return;
  }
  for (const [alg, value] of Object.entries(d)) {
    const form = DIGEST_FORMS[alg];
    if (typeof value !== 'string') problems.push(`${path}.${alg}: expected a hex string, got ${JSON.stringify(value)}`);
    else if (form && !form.test(value)) problems.push(`${path}.${alg}: "${value.slice(0, 80)}" is not a well-formed ${alg} (expected ${form.source.replace(/[\^$]/g, '')})`);
    else if (!form && !/^[0-9a-f]+$/i.test(value)) problems.push(`${path}.${alg}: "${value.slice(0, 80)}" is not hex`);
  }
}

function checkResourceDescriptors(list: unknown, path: string, problems: string[]): void {
  if (list === undefined) return;
  if (!Array.isArray(list)) {
    problems.push(`${path}: expected an array of resource descriptors`);
    return;
  }
  list.forEach((r, i) => {
    const p = `${path}[${i}]`;
    if (!isObject(r)) return void problems.push(`${p}: expected an object`);
    if (r.uri === undefined && r.digest === undefined && r.content === undefined) problems.push(`${p}: expected at least one of uri, digest, content`);
    if (r.uri !== undefined && typeof r.uri !== 'string') problems.push(`${p}.uri: expected a string`);
    if (r.digest !== undefined) checkDigestSet(r.digest, `${p}.digest`, problems);
  });
}

/** The problems of a statement; empty when it is valid. */
export function provenanceProblems(statement: unknown, o: ProvenanceValidationOptions = {}): string[] {
  const problems: string[] = [];
  if (!isObject(statement)) return ['$: expected an in-toto statement object'];
  const types = o.allowStatementV01 === false ? [IN_TOTO_STATEMENT_V1] : [IN_TOTO_STATEMENT_V1, IN_TOTO_STATEMENT_V01];
  if (!types.includes(statement._type as string)) problems.push(`$._type: expected ${types.join(' or ')}, got ${JSON.stringify(statement._type)}`);
  if (statement.predicateType !== SLSA_PROVENANCE_V1) problems.push(`$.predicateType: expected ${SLSA_PROVENANCE_V1}, got ${JSON.stringify(statement.predicateType)}`);

  const subjects: { name: string; sha256: string }[] = [];
  if (!Array.isArray(statement.subject) || statement.subject.length === 0) {
    problems.push('$.subject: expected a non-empty array of { name, digest: { sha256 } }');
  } else {
    statement.subject.forEach((s, i) => {
      const p = `$.subject[${i}]`;
      if (!isObject(s)) return void problems.push(`${p}: expected an object`);
      if (typeof s.name !== 'string' || s.name === '') problems.push(`${p}.name: expected a non-empty string`);
      checkDigestSet(s.digest, `${p}.digest`, problems);
      const sha = isObject(s.digest) ? s.digest.sha256 : undefined;
      if (typeof sha !== 'string') problems.push(`${p}.digest.sha256: expected the sha256 of the image manifest or index`);
      else subjects.push({ name: String(s.name), sha256: sha });
    });
  }

  const pred = statement.predicate;
  if (!isObject(pred)) {
    problems.push('$.predicate: expected an object');
  } else {
    const bd = pred.buildDefinition;
    if (!isObject(bd)) problems.push('$.predicate.buildDefinition: expected an object');
    else {
      if (!isUri(bd.buildType)) problems.push(`$.predicate.buildDefinition.buildType: expected a URI, got ${JSON.stringify(bd.buildType)}`);
      if (!isObject(bd.externalParameters)) problems.push('$.predicate.buildDefinition.externalParameters: expected an object');
      if (bd.internalParameters !== undefined && !isObject(bd.internalParameters)) problems.push('$.predicate.buildDefinition.internalParameters: expected an object');
      checkResourceDescriptors(bd.resolvedDependencies, '$.predicate.buildDefinition.resolvedDependencies', problems);
    }
    const rd = pred.runDetails;
    if (!isObject(rd)) problems.push('$.predicate.runDetails: expected an object');
    else {
      if (!isObject(rd.builder) || !isUri(rd.builder.id)) problems.push(`$.predicate.runDetails.builder.id: expected a URI, got ${JSON.stringify(isObject(rd.builder) ? rd.builder.id : rd.builder)}`);
      else if (rd.builder.version !== undefined && (!isObject(rd.builder.version) || Object.values(rd.builder.version).some((v) => typeof v !== 'string'))) {
        problems.push('$.predicate.runDetails.builder.version: expected a map of component name to version string');
      }
      if (rd.metadata !== undefined) {
        if (!isObject(rd.metadata)) problems.push('$.predicate.runDetails.metadata: expected an object');
        else {
          for (const k of ['startedOn', 'finishedOn'] as const) {
            const v = rd.metadata[k];
            if (v !== undefined && (typeof v !== 'string' || !TIMESTAMP.test(v) || Number.isNaN(Date.parse(v)))) problems.push(`$.predicate.runDetails.metadata.${k}: expected an RFC 3339 timestamp, got ${JSON.stringify(v)}`);
          }
          const s = rd.metadata.startedOn;
          const f = rd.metadata.finishedOn;
          if (typeof s === 'string' && typeof f === 'string' && Date.parse(f) < Date.parse(s)) problems.push(`$.predicate.runDetails.metadata: finishedOn ${f} is before startedOn ${s}`);
        }
      }
      checkResourceDescriptors(rd.byproducts, '$.predicate.runDetails.byproducts', problems);
    }
  }

  if (o.expectedSubjects) {
    const expected = o.expectedSubjects.map((e) => (typeof e === 'string' ? { digest: e } : e));
    for (const e of expected) {
      if (!isDigest(e.digest)) problems.push(`expectedSubjects: "${e.digest}" is not a digest (expected sha256:<64 hex>)`);
    }
    const got = new Set(subjects.map((s) => `sha256:${s.sha256}`));
    const want = new Set(expected.map((e) => e.digest));
    for (const e of expected) {
      if (!got.has(e.digest)) {
        problems.push(`$.subject: expected a subject with digest ${e.digest}${e.name ? ` (${e.name})` : ''}, got ${[...got].join(', ') || 'none'}`);
      } else if (e.name && !subjects.some((s) => `sha256:${s.sha256}` === e.digest && s.name === e.name)) {
        problems.push(`$.subject: the subject with digest ${e.digest} is named ${subjects.filter((s) => `sha256:${s.sha256}` === e.digest).map((s) => JSON.stringify(s.name)).join(', ')}, expected ${JSON.stringify(e.name)}`);
      }
    }
    for (const s of subjects) {
      const d = `sha256:${s.sha256}`;
      if (!want.has(d)) problems.push(`$.subject: ${s.name}@${d} is not one of the expected digests (expected ${[...want].join(', ')}; got this extra one)`);
    }
  }
  return problems;
}

/** Throws ATTESTATION_INVALID listing every problem of the statement. */
export function validateProvenance(statement: unknown, o: ProvenanceValidationOptions = {}): void {
  const problems = provenanceProblems(statement, o);
  if (problems.length > 0) {
    throw new StellaError('ATTESTATION_INVALID', `${o.what ?? 'provenance statement'} is invalid (${problems.length} problem${problems.length === 1 ? '' : 's'}): ${problems.join('; ')}`);
  }
}
