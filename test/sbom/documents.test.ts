import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { PackageURL } from 'packageurl-js';
import {
  DEFAULT_SPDX_SCHEMA, SPDX_PREDICATE_TYPE, appSbom, imageSbom, indexSbom, readDpkgStatus, serializeSpdx, spdxDigest, spdxReport,
  validateSpdx, dep5License, type NpmPackage, type OsPackage, type SpdxDocument,
} from '../../ci/src/sbom/index.ts';
import { StellaError } from '../../ci/src/errors.ts';
import { file, skipUnless } from '../helpers/tools.ts';
import { BASE_PACKAGES, COMMIT, DIGESTS, REPOSITORY, SOURCE_DATE_EPOCH, serviceNpmPackages } from './fixtures.ts';

const SCHEMA = process.env.SPDX_SCHEMA ?? DEFAULT_SPDX_SCHEMA;
// The schema is not part of this repository (../shared/schemas, or $SPDX_SCHEMA): outside CI the
// schema checks skip saying so; under CI (.ci/run) its absence fails the run.
const noSchema = skipUnless([file(SCHEMA, 'the SPDX 2.3 JSON schema', 'laid next to the repository in ../shared/schemas, or set SPDX_SCHEMA')], 'SPDX 2.3 JSON schema checks');

/** The base image's packages, from this host's real dpkg database and copyright files (or a fixed copy if absent). */
function basePackages(): OsPackage[] {
  const text = existsSync('/var/lib/dpkg/status') ? readFileSync('/var/lib/dpkg/status', 'utf8') : readFileSync(new URL('./fixtures/status', import.meta.url), 'utf8');
  return readDpkgStatus(text)
    .filter((p) => (BASE_PACKAGES as readonly string[]).includes(p.name))
    .map((p) => {
      const f = `/usr/share/doc/${p.name}/copyright`;
      return { ...p, license: existsSync(f) ? dep5License(readFileSync(f, 'utf8')) : { expression: 'NOASSERTION', extracted: [] } };
    });
}

const npm = serviceNpmPackages();
const os = basePackages();

function build(npmPackages: readonly NpmPackage[] = npm, osPackages: readonly OsPackage[] = os) {
  const app = appSbom({ service: 'api', version: 'v1.4.0', gitCommit: COMMIT, npmPackages, created: SOURCE_DATE_EPOCH, sourceRepository: 'git+https://github.com/stellaops/stella' });
  const images = (['amd64', 'arm64'] as const).map((arch) =>
    imageSbom({
      service: 'api', repository: REPOSITORY, platform: `linux/${arch}`, manifestDigest: DIGESTS[arch],
      osPackages, node: { version: '24.21.0' }, npmPackages, appSbom: app, created: SOURCE_DATE_EPOCH,
    }));
  const index = indexSbom({
    service: 'api', repository: REPOSITORY, indexDigest: DIGESTS.index, created: SOURCE_DATE_EPOCH,
    platforms: [
      { platform: 'linux/amd64', manifestDigest: DIGESTS.amd64, sbom: images[0]! },
      { platform: 'linux/arm64', manifestDigest: DIGESTS.arm64, sbomNamespace: images[1]!.documentNamespace, sbomDigest: spdxDigest(images[1]!) },
    ],
  });
  return { app, amd64: images[0]!, arm64: images[1]!, index };
}

const docs = build();

function rootOf(doc: SpdxDocument): string {
  return doc.relationships.find((r) => r.spdxElementId === 'SPDXRef-DOCUMENT' && r.relationshipType === 'DESCRIBES')!.relatedSpdxElement;
}

function purls(doc: SpdxDocument): string[] {
  return doc.packages.flatMap((p) => (p.externalRefs ?? []).filter((r) => r.referenceType === 'purl').map((r) => r.referenceLocator));
}

describe('SPDX documents of a service image', () => {
  it('uses realistic inputs: the lockfile closure of pg, nats, ioredis, prom-client and the five base packages', () => {
    expect(npm.map((p) => p.name)).toEqual(expect.arrayContaining(['pg', 'pg-protocol', 'nats', 'nkeys.js', 'ioredis', '@ioredis/commands', 'prom-client', '@opentelemetry/api']));
    expect(os.map((p) => p.name).sort()).toEqual([...BASE_PACKAGES].sort());
  });

  it.each(['app', 'amd64', 'arm64', 'index'] as const)('the %s document passes the structural checks', (k) => {
    expect(spdxReport(docs[k]).problems).toEqual([]);
  });

  it.skipIf(noSchema).each(['app', 'amd64', 'arm64', 'index'] as const)('the %s document passes the SPDX 2.3 JSON schema (ajv, draft-07)', (k) => {
    const report = validateSpdx(docs[k], { schemaPath: SCHEMA });
    expect(report.schema).toEqual({ checked: true, path: SCHEMA });
    expect(spdxReport(docs[k], { schemaPath: SCHEMA }).problems).toEqual([]);
  });

  it('app SBOM: the service (Apache-2.0) CONTAINS every bundled npm package with purl, SHA512 from the integrity, license', () => {
    const { app } = docs;
    const service = app.packages.find((p) => p.SPDXID === rootOf(app))!;
    expect(service).toMatchObject({ name: 'stella-api', versionInfo: 'v1.4.0', licenseDeclared: 'Apache-2.0', primaryPackagePurpose: 'APPLICATION' });
    expect(service.downloadLocation).toBe(`git+https://github.com/stellaops/stella@${COMMIT}`);
    const contained = app.relationships.filter((r) => r.spdxElementId === service.SPDXID && r.relationshipType === 'CONTAINS').map((r) => r.relatedSpdxElement);
    expect(contained).toHaveLength(npm.length);
    const pg = app.packages.find((p) => p.name === 'pg')!;
    const lockPg = npm.find((p) => p.name === 'pg')!;
    expect(pg.versionInfo).toBe(lockPg.version);
    expect(pg.checksums).toEqual([{ algorithm: 'SHA512', checksumValue: Buffer.from(lockPg.integrity!.slice('sha512-'.length), 'base64').toString('hex') }]);
    expect(pg.licenseDeclared).toBe('MIT');
    expect(pg.downloadLocation).toBe(`https://registry.npmjs.org/pg/-/pg-${lockPg.version}.tgz`);
    const scoped = app.packages.find((p) => p.name === '@ioredis/commands')!;
    expect(scoped.externalRefs![0]!.referenceLocator).toBe(`pkg:npm/%40ioredis/commands@${scoped.versionInfo}`);
    expect(scoped.downloadLocation).toBe(`https://registry.npmjs.org/@ioredis/commands/-/commands-${scoped.versionInfo}.tgz`);
    expect(app.packages.find((p) => p.name === 'tweetnacl')!.licenseDeclared).toBe('Unlicense');
  });

  it('image SBOM: the image (pkg:oci with arch and repository_url) CONTAINS Debian packages, Node.js and the app', () => {
    const { amd64 } = docs;
    const image = amd64.packages.find((p) => p.SPDXID === rootOf(amd64))!;
    expect(image.primaryPackagePurpose).toBe('CONTAINER');
    expect(image.externalRefs![0]!.referenceLocator).toBe(`pkg:oci/stella-api@sha256%3A${DIGESTS.amd64.slice(7)}?arch=amd64&repository_url=registry.example.com%2Fstellaops%2Fstella-api`);
    const p = PackageURL.fromString(image.externalRefs![0]!.referenceLocator);
    expect([p.type, p.name, p.version, p.qualifiers?.repository_url]).toEqual(['oci', 'stella-api', DIGESTS.amd64, REPOSITORY]);

    const contained = new Set(amd64.relationships.filter((r) => r.spdxElementId === image.SPDXID && r.relationshipType === 'CONTAINS').map((r) => r.relatedSpdxElement));
    const byName = (n: string) => amd64.packages.find((x) => x.name === n)!;
    for (const name of BASE_PACKAGES) expect(contained.has(byName(name).SPDXID), name).toBe(true);
    const libc = os.find((x) => x.name === 'libc6')!;
    expect(byName('libc6').externalRefs![0]!.referenceLocator).toBe(`pkg:deb/debian/libc6@${libc.version}?arch=${libc.architecture}&distro=debian-12&upstream=glibc`);
    expect(purls(amd64)).toContain(`pkg:deb/debian/tzdata@${os.find((x) => x.name === 'tzdata')!.version}?arch=all&distro=debian-12`);

    const node = byName('node');
    expect(contained.has(node.SPDXID)).toBe(true);
    expect(node).toMatchObject({ versionInfo: '24.21.0', licenseDeclared: 'MIT' });
    expect(node.externalRefs!.map((r) => r.referenceLocator)).toEqual(['pkg:generic/node@24.21.0', 'cpe:2.3:a:nodejs:node.js:24.21.0:*:*:*:*:*:*:*']);

    expect(contained.has(rootOf(docs.app))).toBe(true);
    for (const n of npm) expect(byName(n.name).versionInfo).toBe(n.version);
    expect(amd64.packages.find((x) => x.primaryPackagePurpose === 'OPERATING_SYSTEM')).toMatchObject({ name: 'debian', versionInfo: '12' });
  });

  it('image SBOM: the app part has the same SPDXIDs, versions and checksums as the app SBOM baked into the image', () => {
    for (const img of [docs.amd64, docs.arm64]) {
      const inImage = new Map(img.packages.map((p) => [p.SPDXID, p]));
      for (const p of docs.app.packages) expect(inImage.get(p.SPDXID), p.name).toEqual(p);
      const rels = new Set(img.relationships.map((r) => JSON.stringify(r)));
      for (const r of docs.app.relationships.filter((x) => x.relationshipType !== 'DESCRIBES')) expect(rels.has(JSON.stringify(r))).toBe(true);
    }
  });

  it('image SBOM: refuses npm packages that disagree with the app SBOM, naming the package', () => {
    const drifted = npm.map((p) => (p.name === 'pg' ? { ...p, version: '8.99.0', integrity: undefined } : p));
    expect(() => imageSbom({
      service: 'api', repository: REPOSITORY, platform: 'linux/amd64', manifestDigest: DIGESTS.amd64,
      osPackages: os, node: { version: '24.21.0' }, npmPackages: drifted, appSbom: docs.app, created: SOURCE_DATE_EPOCH,
    })).toThrow(/image SBOM of stella-api linux\/amd64: npm package pg@8\.99\.0 .* is not in the app SBOM https:\/\/stellaops\.io\/spdx\/app\/stella-api/);
  });

  it('index SBOM: the index is a VARIANT_OF each platform image, each DESCRIBED_BY its platform document (checksum = its bytes)', () => {
    const { index } = docs;
    expect(index.externalDocumentRefs).toEqual([
      { externalDocumentId: 'DocumentRef-linux-amd64', spdxDocument: docs.amd64.documentNamespace, checksum: { algorithm: 'SHA256', checksumValue: spdxDigest(docs.amd64).slice(7) } },
      { externalDocumentId: 'DocumentRef-linux-arm64', spdxDocument: docs.arm64.documentNamespace, checksum: { algorithm: 'SHA256', checksumValue: spdxDigest(docs.arm64).slice(7) } },
    ]);
    const root = rootOf(index);
    for (const [arch, doc] of [['amd64', docs.amd64], ['arm64', docs.arm64]] as const) {
      // The image package has the same SPDXID in the index document as in its own document.
      expect(index.relationships).toContainEqual({ spdxElementId: root, relationshipType: 'VARIANT_OF', relatedSpdxElement: rootOf(doc) });
      expect(index.relationships).toContainEqual({ spdxElementId: rootOf(doc), relationshipType: 'DESCRIBED_BY', relatedSpdxElement: `DocumentRef-linux-${arch}:SPDXRef-DOCUMENT` });
    }
    expect(purls(index)[0]).toBe(`pkg:oci/stella-api@sha256%3A${DIGESTS.index.slice(7)}?repository_url=registry.example.com%2Fstellaops%2Fstella-api`);
  });

  it('index SBOM: a platform document that describes another manifest is refused', () => {
    expect(() => indexSbom({
      service: 'api', repository: REPOSITORY, indexDigest: DIGESTS.index, created: SOURCE_DATE_EPOCH,
      platforms: [{ platform: 'linux/arm64', manifestDigest: DIGESTS.arm64, sbom: docs.amd64 }],
    })).toThrow(`index SBOM of stella-api: platform linux/arm64: its image SBOM describes SPDXRef-Image-${DIGESTS.amd64.replace(':', '-')}; expected SPDXRef-Image-${DIGESTS.arm64.replace(':', '-')} (manifest ${DIGESTS.arm64})`);
  });

  it('is deterministic: same inputs (in any order) give identical bytes; ids carry no randomness', () => {
    const again = build([...npm].reverse(), [...os].reverse());
    for (const k of ['app', 'amd64', 'arm64', 'index'] as const) {
      expect(Buffer.from(serializeSpdx(again[k])).equals(Buffer.from(serializeSpdx(docs[k]))), k).toBe(true);
    }
    expect(docs.amd64.creationInfo).toEqual({ created: '2026-01-02T03:04:05Z', creators: ['Tool: stella-release-0.0.0', 'Organization: StellaOps'] });
    expect(docs.app.creationInfo.creators[0]).toBe('Tool: stella-release-v1.4.0');
    expect(docs.amd64.documentNamespace).toBe(`https://stellaops.io/spdx/${REPOSITORY}/${DIGESTS.amd64}`);
    expect(JSON.stringify(docs)).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/); // no UUIDs
    const ids = docs.amd64.packages.map((p) => p.SPDXID);
    expect(ids.slice(1)).toEqual([...ids.slice(1)].sort());
  });

  it('refuses a secret that would end up in a document, naming where', () => {
    const canary = 'canary-9f8e7d6c5b4a';
    expect(() => appSbom({
      service: 'api', version: 'v1.4.0', gitCommit: COMMIT, npmPackages: npm, created: SOURCE_DATE_EPOCH,
      sourceRepository: `git+https://ci:${canary}@github.com/stellaops/stella`, secrets: [canary],
    })).toThrow(/app SBOM of stella-api v1\.4\.0: a secret appears at \$\.packages\[0\]\.downloadLocation \(secret #1\)/);
  });
});

describe('validateSpdx negatives', () => {
  const mutate = (f: (d: { -readonly [K in keyof SpdxDocument]: SpdxDocument[K] }) => void): SpdxDocument => {
    const d = structuredClone(docs.amd64) as { -readonly [K in keyof SpdxDocument]: SpdxDocument[K] };
    f(d);
    return d;
  };
  const problemOf = (doc: unknown): string => {
    try {
      validateSpdx(doc, noSchema ? {} : { schemaPath: SCHEMA });
    } catch (e) {
      expect(e).toBeInstanceOf(StellaError);
      expect((e as StellaError).code).toBe('SBOM_INVALID');
      return (e as StellaError).message;
    }
    throw new Error('expected validation to fail');
  };

  it('a dangling relationship is reported with the element it names', () => {
    const msg = problemOf(mutate((d) => {
      d.relationships = [...d.relationships, { spdxElementId: rootOf(docs.amd64), relationshipType: 'CONTAINS', relatedSpdxElement: 'SPDXRef-Package-npm-ghost-1.0.0' }];
    }));
    expect(msg).toMatch(/^SPDX document "stella-api-linux-amd64-sha256:2b2b.*" \(https:\/\/stellaops\.io\/spdx\/.*\) is invalid \(1 problem\): /);
    expect(msg).toContain('.relatedSpdxElement: "SPDXRef-Package-npm-ghost-1.0.0" does not refer to any element of the document');
  });

  it('a missing DESCRIBES is reported', () => {
    const msg = problemOf(mutate((d) => {
      d.relationships = d.relationships.filter((r) => r.relationshipType !== 'DESCRIBES');
    }));
    expect(msg).toContain('no "SPDXRef-DOCUMENT DESCRIBES <element>" relationship (nor documentDescribes): expected the document to say what it describes');
  });

  it('a DocumentRef that externalDocumentRefs does not declare is reported', () => {
    const msg = problemOf({ ...docs.index, externalDocumentRefs: docs.index.externalDocumentRefs!.slice(0, 1) });
    expect(msg).toContain('"DocumentRef-linux-arm64:SPDXRef-DOCUMENT" refers to DocumentRef-linux-arm64, which externalDocumentRefs does not declare');
  });

  it('a LicenseRef without its text, a duplicate SPDXID and a bad checksum are all listed', () => {
    const msg = problemOf(mutate((d) => {
      const [first, second, ...rest] = d.packages;
      d.packages = [first!, { ...second!, SPDXID: first!.SPDXID, licenseDeclared: 'LicenseRef-nowhere', checksums: [{ algorithm: 'SHA256', checksumValue: 'abc' }] }, ...rest];
    }));
    expect(msg).toContain('is already used by $.packages[0]');
    expect(msg).toContain('LicenseRef-nowhere has no entry in hasExtractedLicensingInfos');
    expect(msg).toContain('a SHA256 has 64 hex digits, got 3');
  });

  it.skipIf(noSchema)('the JSON schema catches what the structural checks do not look at (unknown property)', () => {
    const msg = problemOf(mutate((d) => {
      (d.packages[0] as unknown as Record<string, unknown>).colour = 'blue';
    }));
    expect(msg).toContain('schema: $.packages[0] must NOT have additional properties (colour)');
  });

  it('the attestation predicate type is the one cosign uses for --type spdxjson', () => {
    expect(SPDX_PREDICATE_TYPE).toBe('https://spdx.dev/Document');
  });
});
