import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  STELLA_BUILD_TYPE, assertNoSecrets, findSecrets, provenanceStatement, statementBytes,
  validateProvenance, type ProvenanceOptions,
} from '../../ci/src/provenance/index.ts';
import { SLSA_PROVENANCE_V1_PREDICATE_TYPE } from '../../ci/src/sbom/index.ts';
import { StellaError } from '../../ci/src/errors.ts';
import { sha256Digest } from '../../ci/src/oci/types.ts';
import { COMMIT, DIGESTS, REPOSITORY, SOURCE_DATE_EPOCH } from '../sbom/fixtures.ts';
import { requireTool, skipUnless } from '../helpers/tools.ts';

const CANARY = 'stella-canary-5e1f0c2b9a77';

function options(over: Partial<ProvenanceOptions['build']> = {}): ProvenanceOptions {
  return {
    subjects: [
      { name: REPOSITORY, digest: DIGESTS.arm64 },
      { name: REPOSITORY, digest: DIGESTS.index },
      { name: REPOSITORY, digest: DIGESTS.amd64 },
    ],
    source: { repository: 'git+https://github.com/stellaops/stella', commit: COMMIT, ref: 'refs/tags/v1.4.0' },
    build: {
      version: 'v1.4.0', services: ['api'], platforms: ['linux/amd64', 'linux/arm64'], sourceDateEpoch: SOURCE_DATE_EPOCH,
      baseImage: { uri: 'registry.example.com/stellaops/node-base:24-bookworm', digest: DIGESTS.base },
      parameters: { registry: 'registry.example.com', namespace: 'stellaops', dryRun: false },
      ...over,
    },
    builder: { id: 'https://github.com/stellaops/stella/.github/workflows/release.yml@refs/tags/v1.4.0' },
    invocation: { id: 'https://github.com/stellaops/stella/actions/runs/42/attempts/1', startedOn: '2026-01-02T03:04:05Z', finishedOn: new Date('2026-01-02T03:34:05.123Z') },
    toolVersions: { 'stella-release': '0.0.0', node: '24.21.0', cosign: '2.5.0', docker: '20.10.24' },
  };
}

function thrown(f: () => unknown): StellaError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(StellaError);
    return e as StellaError;
  }
  throw new Error('expected an error');
}

describe('provenanceStatement', () => {
  const st = provenanceStatement(options());

  it('is an in-toto Statement v1 of SLSA v1 provenance over the index and every platform digest', () => {
    // The literal URIs of the specs (not the constants compared with each other): `cosign --type
    // slsaprovenance1` maps to exactly this predicate type, and the attestation step uses the same.
    expect(st._type).toBe('https://in-toto.io/Statement/v1');
    expect(st.predicateType).toBe('https://slsa.dev/provenance/v1');
    expect(SLSA_PROVENANCE_V1_PREDICATE_TYPE).toBe('https://slsa.dev/provenance/v1');
    expect(st.subject).toEqual([DIGESTS.index, DIGESTS.amd64, DIGESTS.arm64].map((d) => ({ name: REPOSITORY, digest: { sha256: d.slice(7) } })));
  });

  it('records the build: buildType, external and internal parameters, resolved source commit and base image digest', () => {
    const bd = st.predicate.buildDefinition;
    expect(bd.buildType).toBe(STELLA_BUILD_TYPE);
    expect(bd.externalParameters).toEqual({
      source: { repository: 'git+https://github.com/stellaops/stella', ref: 'refs/tags/v1.4.0' },
      version: 'v1.4.0', services: ['api'], platforms: ['linux/amd64', 'linux/arm64'],
      baseImage: 'registry.example.com/stellaops/node-base:24-bookworm',
      parameters: { dryRun: false, namespace: 'stellaops', registry: 'registry.example.com' },
    });
    expect(bd.internalParameters).toEqual({ sourceDateEpoch: SOURCE_DATE_EPOCH });
    expect(bd.resolvedDependencies).toEqual([
      { uri: 'git+https://github.com/stellaops/stella@refs/tags/v1.4.0', digest: { gitCommit: COMMIT }, name: 'source' },
      { uri: 'registry.example.com/stellaops/node-base:24-bookworm', digest: { sha256: DIGESTS.base.slice(7) }, name: 'base-image' },
    ]);
    expect(st.predicate.runDetails).toEqual({
      builder: { id: options().builder.id, version: { cosign: '2.5.0', docker: '20.10.24', node: '24.21.0', 'stella-release': '0.0.0' } },
      metadata: { invocationId: options().invocation.id, startedOn: '2026-01-02T03:04:05Z', finishedOn: '2026-01-02T03:34:05Z' },
    });
  });

  it('is deterministic: same inputs in another order give the same bytes', () => {
    const o = options();
    const shuffled = { ...o, subjects: [...o.subjects].reverse(), toolVersions: Object.fromEntries(Object.entries(o.toolVersions).reverse()) };
    expect(Buffer.from(statementBytes(provenanceStatement(shuffled))).equals(Buffer.from(statementBytes(st)))).toBe(true);
  });

  it('rejects malformed inputs before writing anything', () => {
    expect(thrown(() => provenanceStatement({ ...options(), subjects: [{ name: REPOSITORY, digest: 'sha256:../../x' }] })).code).toBe('DIGEST_INVALID');
    expect(thrown(() => provenanceStatement({ ...options(), source: { repository: 'git+https://github.com/stellaops/stella', commit: 'HEAD' } })).message)
      .toBe('provenance of v1.4.0: source commit "HEAD" is not 40 lowercase hex');
    expect(thrown(() => provenanceStatement({ ...options(), invocation: { startedOn: '2026-01-02T04:00:00Z', finishedOn: '2026-01-02T03:00:00Z' } })).message)
      .toContain('finishedOn 2026-01-02T03:00:00Z is before startedOn 2026-01-02T04:00:00Z');
  });
});

describe('assertNoSecrets', () => {
  it('catches a canary passed in the build parameters, naming its JSON path, not its value', () => {
    const err = thrown(() => provenanceStatement({ ...options({ parameters: { registry: 'registry.example.com', registryToken: CANARY } }), secrets: [CANARY] }));
    expect(err.code).toBe('SECRET_LEAK');
    expect(err.message).toBe('provenance of v1.4.0: a secret appears at $.predicate.buildDefinition.externalParameters.parameters.registryToken (secret #1); expected no secret in a published document (the values are not shown)');
    expect(err.message).not.toContain(CANARY);
  });

  it('catches the secret base64-encoded at any alignment (docker auth, Basic headers), percent-encoded and as a key', () => {
    for (const user of ['u', 'us', 'usr']) {
      const auth = Buffer.from(`${user}:${CANARY}`).toString('base64');
      expect(findSecrets({ auths: { 'registry.example.com': { auth } } }, [CANARY]), user).toEqual([
        { path: '$.auths["registry.example.com"].auth', secret: 1, encoding: 'base64' },
      ]);
    }
    const url = `https://ci:${encodeURIComponent(`${CANARY}/+ x`)}@registry.example.com`;
    expect(findSecrets({ source: [url] }, ['nothing-here', `${CANARY}/+ x`])).toEqual([{ path: '$.source[0]', secret: 2, encoding: 'percent-encoded' }]);
    expect(findSecrets({ [CANARY]: 1 }, [CANARY])).toEqual([{ path: `$["${CANARY}"] (key)`, secret: 1, encoding: 'plain' }]);
    expect(() => assertNoSecrets(st0(), [CANARY])).not.toThrow();
  });
});

function st0() {
  return provenanceStatement(options());
}

describe('validateProvenance', () => {
  const expected = [DIGESTS.index, DIGESTS.amd64, DIGESTS.arm64];

  it('accepts our statement with exactly the expected subjects', () => {
    expect(() => validateProvenance(st0(), { expectedSubjects: expected })).not.toThrow();
    expect(() => validateProvenance(st0(), { expectedSubjects: expected.map((digest) => ({ digest, name: REPOSITORY })) })).not.toThrow();
  });

  it('reports a subject for another digest with expected vs got', () => {
    const other = `sha256:${'ee'.repeat(32)}`;
    const s = st0();
    const forged = { ...s, subject: s.subject.map((x) => (x.digest.sha256 === DIGESTS.arm64.slice(7) ? { ...x, digest: { sha256: other.slice(7) } } : x)) };
    const err = thrown(() => validateProvenance(forged, { expectedSubjects: expected, what: `provenance of ${REPOSITORY}` }));
    expect(err.code).toBe('ATTESTATION_INVALID');
    expect(err.message).toContain(`provenance of ${REPOSITORY} is invalid (2 problems): `);
    expect(err.message).toContain(`$.subject: expected a subject with digest ${DIGESTS.arm64}, got ${DIGESTS.index}, ${DIGESTS.amd64}, ${other}`);
    expect(err.message).toContain(`$.subject: ${REPOSITORY}@${other} is not one of the expected digests`);
  });

  it('reports malformed digests, wrong types and missing SLSA fields, all at once', () => {
    const s = st0();
    const bad = {
      ...s,
      _type: 'https://in-toto.io/Statement/v9',
      subject: [{ name: REPOSITORY, digest: { sha256: 'ABC' } }],
      predicate: { ...s.predicate, runDetails: { metadata: { startedOn: 'yesterday' } }, buildDefinition: { ...s.predicate.buildDefinition, resolvedDependencies: [{ uri: 'git+https://x', digest: { gitCommit: 'main' } }] } },
    };
    const msg = thrown(() => validateProvenance(bad)).message;
    expect(msg).toContain('$._type: expected https://in-toto.io/Statement/v1 or https://in-toto.io/Statement/v0.1, got "https://in-toto.io/Statement/v9"');
    expect(msg).toContain('$.subject[0].digest.sha256: "ABC" is not a well-formed sha256');
    expect(msg).toContain('$.predicate.buildDefinition.resolvedDependencies[0].digest.gitCommit: "main" is not a well-formed gitCommit');
    expect(msg).toContain('$.predicate.runDetails.builder.id: expected a URI');
    expect(msg).toContain('$.predicate.runDetails.metadata.startedOn: expected an RFC 3339 timestamp, got "yesterday"');
  });
});

// A real peer: cosign parses a slsaprovenance1 predicate into in-toto-golang's SLSA v1 Go structs
// (a field of the wrong shape fails), wraps it in a Statement, signs it, verifies it.
const noCosign = skipUnless(['cosign'], 'provenance: cosign as a peer');

describe.skipIf(noCosign)('cosign as a peer', () => {
  const COSIGN = noCosign ? 'cosign' : requireTool('cosign');
  const dir = mkdtempSync(join(tmpdir(), 'stella-prov-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const env = { ...process.env, COSIGN_PASSWORD: 'test-only' };
  const run = (args: string[]): string => execFileSync(COSIGN, args, { cwd: dir, env, timeout: 60_000, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

  it('attests our predicate with --type slsaprovenance1, verifies it, and our validator accepts cosign\'s statement', () => {
    run(['generate-key-pair']);
    const blob = new TextEncoder().encode('{"schemaVersion":2}');
    writeFileSync(join(dir, 'manifest.json'), blob);
    writeFileSync(join(dir, 'predicate.json'), JSON.stringify(st0().predicate));
    run(['attest-blob', '--key', 'cosign.key', '--type', 'slsaprovenance1', '--predicate', 'predicate.json', '--tlog-upload=false', '--output-signature', 'att.json', '--yes', 'manifest.json']);
    run(['verify-blob-attestation', '--key', 'cosign.pub', '--type', 'slsaprovenance1', '--signature', 'att.json', '--insecure-ignore-tlog', 'manifest.json']);
    const envelope = JSON.parse(readFileSync(join(dir, 'att.json'), 'utf8')) as { payload: string };
    const statement = JSON.parse(Buffer.from(envelope.payload, 'base64').toString('utf8')) as unknown;
    expect(() => validateProvenance(statement, { expectedSubjects: [sha256Digest(blob)] })).not.toThrow();
    // cosign 2.5 round-trips the predicate through in-toto-golang's SLSA v1 structs, whose JSON tag
    // writes runDetails.metadata.invocationId as "invocationID" (Go reads it case-insensitively).
    // Everything else comes back exactly as we wrote it.
    const back = JSON.parse(JSON.stringify((statement as { predicate: unknown }).predicate).replace('"invocationID":', '"invocationId":')) as unknown;
    expect(back).toEqual(st0().predicate);
  });
});
