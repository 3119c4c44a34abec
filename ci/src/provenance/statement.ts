/**
 * SLSA v1 provenance of a StellaOps release, as an in-toto Statement v1. Pure and
 * deterministic: everything comes from the options (no clock, no environment), so
 * the same release inputs give the same bytes. See BUILD_TYPE.md for the buildType.
 */
import { StellaError } from '../errors.ts';
import { assertDigest, digestHex, parsePlatform } from '../oci/types.ts';
import { assertNoSecrets } from './secrets.ts';

import { IN_TOTO_STATEMENT_V1 } from '../sign/statement.ts';
export { IN_TOTO_STATEMENT_V1 };
/** What cosign (`attest --type …`) wraps predicates in. Accepted when validating. */
export const IN_TOTO_STATEMENT_V01 = 'https://in-toto.io/Statement/v0.1';
export const SLSA_PROVENANCE_V1 = 'https://slsa.dev/provenance/v1';
/** Our buildType; its parameters are documented in ci/src/provenance/BUILD_TYPE.md. */
export const STELLA_BUILD_TYPE = 'https://stellaops.io/buildtypes/stella-release/v1';

export interface DigestSet {
  readonly sha256?: string;
  readonly sha512?: string;
  readonly gitCommit?: string;
  readonly [alg: string]: string | undefined;
}

export interface ResourceDescriptor {
  readonly uri?: string;
  readonly digest?: DigestSet;
  readonly name?: string;
  readonly downloadLocation?: string;
  readonly mediaType?: string;
  readonly annotations?: Readonly<Record<string, unknown>>;
}

export interface Subject {
  readonly name: string;
  readonly digest: { readonly sha256: string };
}

export interface SlsaProvenanceV1 {
  readonly buildDefinition: {
    readonly buildType: string;
    readonly externalParameters: Readonly<Record<string, unknown>>;
    readonly internalParameters?: Readonly<Record<string, unknown>>;
    readonly resolvedDependencies?: readonly ResourceDescriptor[];
  };
  readonly runDetails: {
    readonly builder: { readonly id: string; readonly version?: Readonly<Record<string, string>>; readonly builderDependencies?: readonly ResourceDescriptor[] };
    readonly metadata?: { readonly invocationId?: string; readonly startedOn?: string; readonly finishedOn?: string };
    readonly byproducts?: readonly ResourceDescriptor[];
  };
}

export interface ProvenanceStatement {
  readonly _type: typeof IN_TOTO_STATEMENT_V1;
  readonly subject: readonly Subject[];
  readonly predicateType: typeof SLSA_PROVENANCE_V1;
  readonly predicate: SlsaProvenanceV1;
}

export interface ProvenanceOptions {
  /** The index digest and each per-platform manifest digest, e.g. `{ name: 'registry/stellaops/stella-api', digest: 'sha256:…' }`. */
  readonly subjects: readonly { readonly name: string; readonly digest: string }[];
  readonly source: {
    /** e.g. `git+https://github.com/stellaops/stella`. */
    readonly repository: string;
    /** 40 hex. */
    readonly commit: string;
    /** e.g. `refs/tags/v1.4.0`. */
    readonly ref?: string;
  };
  readonly build: {
    readonly version: string;
    readonly services: readonly string[];
    readonly platforms: readonly string[];
    /** SOURCE_DATE_EPOCH, seconds. */
    readonly sourceDateEpoch: number;
    readonly baseImage: { readonly uri: string; readonly digest: string };
    /** Further user-controlled inputs of the release (registry, namespace, flags); recorded as they are. */
    readonly parameters?: Readonly<Record<string, string | number | boolean>>;
  };
  readonly builder: { readonly id: string };
  readonly invocation: { readonly id?: string; readonly startedOn: Date | string; readonly finishedOn: Date | string };
  /** Versions of the build platform's parts (node, docker, buildkit, cosign, stella-release, …). */
  readonly toolVersions: Readonly<Record<string, string>>;
  /** Strings that must not appear in the statement (checked with assertNoSecrets before returning). */
  readonly secrets?: readonly string[];
}

/** RFC 3339 UTC without fraction, as SLSA's examples write it. */
export function rfc3339(t: Date | string, what: string): string {
  const d = t instanceof Date ? t : new Date(t);
  if (Number.isNaN(d.getTime())) throw new StellaError('INVALID_ARGUMENT', `${what}: "${String(t)}" is not a time (expected RFC 3339, e.g. 2026-01-02T03:04:05Z)`);
  return d.toISOString().replace(/\.\d{3}Z$/, 'Z');
}

function sortedRecord<T>(r: Readonly<Record<string, T>>): Record<string, T> {
  return Object.fromEntries(Object.entries(r).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

function requireUri(s: string, what: string): string {
  try {
    new URL(s);
  } catch {
    throw new StellaError('INVALID_ARGUMENT', `${what}: "${s}" is not a URI (expected e.g. https://… or git+https://…)`);
  }
  return s;
}

/** The in-toto Statement v1 carrying the SLSA v1 provenance of a release. */
export function provenanceStatement(o: ProvenanceOptions): ProvenanceStatement {
  const what = `provenance of ${o.build.version}`;
  if (o.subjects.length === 0) throw new StellaError('INVALID_ARGUMENT', `${what}: no subjects (expected the index digest and each platform digest)`);
  const subjects = o.subjects.map((s, i) => {
    if (!s.name) throw new StellaError('INVALID_ARGUMENT', `${what}: subject #${i + 1} has no name`);
    return { name: s.name, digest: { sha256: digestHex(assertDigest(s.digest, `${what}: subject ${s.name}`)) } };
  });
  const keys = new Set<string>();
  for (const s of subjects) {
    const k = `${s.name}@${s.digest.sha256}`;
    if (keys.has(k)) throw new StellaError('INVALID_ARGUMENT', `${what}: subject ${s.name}@sha256:${s.digest.sha256} is listed twice`);
    keys.add(k);
  }
  subjects.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : a.digest.sha256 < b.digest.sha256 ? -1 : a.digest.sha256 > b.digest.sha256 ? 1 : 0));

  if (!/^[0-9a-f]{40}$/.test(o.source.commit)) throw new StellaError('INVALID_ARGUMENT', `${what}: source commit "${o.source.commit}" is not 40 lowercase hex`);
  requireUri(o.source.repository, `${what}: source repository`);
  requireUri(o.builder.id, `${what}: builder id`);
  if (!Number.isInteger(o.build.sourceDateEpoch) || o.build.sourceDateEpoch < 0) {
    throw new StellaError('INVALID_ARGUMENT', `${what}: sourceDateEpoch ${o.build.sourceDateEpoch} is not a non-negative integer (seconds)`);
  }
  for (const p of o.build.platforms) parsePlatform(p);
  const baseDigest = assertDigest(o.build.baseImage.digest, `${what}: base image ${o.build.baseImage.uri}`);
  const startedOn = rfc3339(o.invocation.startedOn, `${what}: startedOn`);
  const finishedOn = rfc3339(o.invocation.finishedOn, `${what}: finishedOn`);
  if (finishedOn < startedOn) throw new StellaError('INVALID_ARGUMENT', `${what}: finishedOn ${finishedOn} is before startedOn ${startedOn}`);

  const sourceUri = o.source.ref ? `${o.source.repository}@${o.source.ref}` : o.source.repository;
  const statement: ProvenanceStatement = {
    _type: IN_TOTO_STATEMENT_V1,
    subject: subjects,
    predicateType: SLSA_PROVENANCE_V1,
    predicate: {
      buildDefinition: {
        buildType: STELLA_BUILD_TYPE,
        externalParameters: {
          source: { repository: o.source.repository, ...(o.source.ref ? { ref: o.source.ref } : {}) },
          version: o.build.version,
          services: [...o.build.services],
          platforms: [...o.build.platforms],
          baseImage: o.build.baseImage.uri,
          ...(o.build.parameters ? { parameters: sortedRecord(o.build.parameters) } : {}),
        },
        internalParameters: {
          sourceDateEpoch: o.build.sourceDateEpoch,
        },
        resolvedDependencies: [
          { uri: sourceUri, digest: { gitCommit: o.source.commit }, name: 'source' },
          { uri: o.build.baseImage.uri, digest: { sha256: digestHex(baseDigest) }, name: 'base-image' },
        ],
      },
      runDetails: {
        builder: { id: o.builder.id, version: sortedRecord(o.toolVersions) },
        metadata: { ...(o.invocation.id ? { invocationId: o.invocation.id } : {}), startedOn, finishedOn },
      },
    },
  };
  assertNoSecrets(statement, o.secrets ?? [], what);
  return statement;
}

/** Canonical bytes of a statement (compact JSON, keys in the order built), e.g. as a DSSE payload. */
export function statementBytes(statement: ProvenanceStatement): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(statement));
}
