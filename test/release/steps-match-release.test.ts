/**
 * One orchestration: `build`, `sbom`, `sign`, `provenance` and `publish` run one by
 * one through the CLI give the same attestations as `release` for the same commit,
 * source date, base and key. Both runs push to the same registry name (a loopback
 * forwarder whose upstream is switched from a first throwaway registry to a second),
 * so the repositories named inside the documents are the same; each registry is then
 * read directly and every referrer compared:
 *
 *   - SBOM attestations, signature statements, plain SPDX referrers, legacy `.sig`
 *     payloads: byte-identical payloads (DSSE payloads compared, not the ECDSA
 *     signatures, which are randomized);
 *   - provenance: byte-identical except `predicate.runDetails.metadata` (invocation id,
 *     start and finish time), which describes the run and legitimately differs.
 */
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { skipUnless } from '../helpers/tools.ts';
import { runNode, type CliRun } from '../helpers/cli.ts';
import { makeFixtureBase } from '../build/fixtures.ts';
import { RegistryClient } from '../../ci/src/registry/index.ts';
import { generateKeyPair, legacySignatureTag } from '../../ci/src/sign/index.ts';
import { MediaType, type ImageIndex, type ImageManifest } from '../../ci/src/oci/types.ts';
import type { BuildDocument } from '../../ci/src/build/document.ts';
import type { ReleaseRecord } from '../../ci/src/release/pipeline.ts';
import { COMMIT, SOURCE_DATE_EPOCH } from './fixture.ts';

const VERSION = 'v0.9.0-rc.1';
const REF = 'refs/tags/v0.9.0-rc.1';
const SERVICES = 'api';
const KEY_PASSWORD = 'canary-steps-keypass-93ad17';

/** A TCP forwarder on a fixed loopback port whose upstream can be switched. */
async function startForwarder(upstream: string): Promise<{ host: string; switchTo(u: string): void; stop(): Promise<void> }> {
  let target = upstream;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const [h, p] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
    const up = connect(p, h);
    for (const s of [client, up]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => s.destroy());
    }
    client.pipe(up).pipe(client);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    host: `127.0.0.1:${port}`,
    switchTo(u) {
      target = u;
      for (const s of sockets) s.destroy();
    },
    stop: () => new Promise<void>((r) => server.close(() => r())),
  };
}

let regSteps: TestRegistry;
let regRelease: TestRegistry;
let fwd: Awaited<ReturnType<typeof startForwarder>>;
let dir: string;
let base: string;
let publicKey: string;
const env = { ...process.env, STEPS_KEY: '', STEPS_KEY_PASSWORD: KEY_PASSWORD };
const outputs: string[] = [];

async function cli(...args: string[]): Promise<CliRun> {
  const r = await runNode(['ci/src/cli.ts', ...args], env, { timeoutMs: 400_000 });
  outputs.push(r.stdout, r.stderr);
  expect(r.status, `${args[0]}: ${r.stderr.slice(-3000)}`).toBe(0);
  return r;
}

const revision = ['--git-commit', COMMIT, '--source-date-epoch', String(SOURCE_DATE_EPOCH)];
const key = ['--key', 'env:STEPS_KEY', '--key-password', 'env:STEPS_KEY_PASSWORD'];

interface Attached {
  /** `<subject digest> <artifact type> <predicate type>` → payload text. */
  readonly referrers: Map<string, string>;
  /** legacy `.sig` payloads per image digest. */
  readonly legacy: Map<string, string[]>;
  readonly tag?: string;
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

/** Everything attached to the images of `doc`, read from `registry` directly. */
async function attached(registry: string, doc: BuildDocument, forwarded: string): Promise<Attached> {
  const client = new RegistryClient({ registry });
  const referrers = new Map<string, string>();
  const legacy = new Map<string, string[]>();
  let tag: string | undefined;
  for (const image of doc.images) {
    const repo = image.repository.slice(forwarded.length + 1);
    const index = JSON.parse(text((await client.getManifest(repo, image.digest)).bytes)) as ImageIndex;
    const subjects = [image.digest, ...index.manifests.map((m) => m.digest)];
    expect(subjects.slice(1).sort()).toEqual(Object.values(image.platforms).sort());
    for (const subject of subjects) {
      for (const d of await client.referrers(repo, subject)) {
        const m = JSON.parse(text((await client.getManifest(repo, d.digest)).bytes)) as ImageManifest & { artifactType?: string; subject?: { digest: string } };
        expect(m.subject?.digest, `referrer ${d.digest}`).toBe(subject);
        const layer = m.layers[0]!;
        const blob = await client.getBlob(repo, layer.digest);
        let payload: string;
        let predicateType = '';
        if (layer.mediaType === MediaType.sigstoreBundle) {
          const bundle = JSON.parse(text(blob)) as { dsseEnvelope: { payload: string; payloadType: string } };
          payload = Buffer.from(bundle.dsseEnvelope.payload, 'base64').toString('utf8');
          predicateType = (JSON.parse(payload) as { predicateType: string }).predicateType;
          expect(bundle.dsseEnvelope.payloadType).toBe('application/vnd.in-toto+json');
        } else payload = text(blob);
        const k = `${subject} ${m.artifactType ?? layer.mediaType} ${predicateType}`;
        expect(referrers.has(k), `two referrers ${k}`).toBe(false);
        referrers.set(k, payload);
      }
    }
    const sig = legacySignatureTag(image.digest);
    if ((await client.resolve(repo, sig)) !== undefined) {
      const m = JSON.parse(text((await client.getManifest(repo, sig)).bytes)) as ImageManifest;
      legacy.set(image.digest, await Promise.all(m.layers.map(async (l) => text(await client.getBlob(repo, l.digest)))));
    }
    const tagged = await client.resolve(repo, VERSION);
    tag = tagged;
  }
  return { referrers, legacy, tag };
}

/** A provenance statement without its run metadata (invocation id and times). */
function withoutRunMetadata(payload: string): { statement: unknown; metadata: Record<string, string> } {
  const st = JSON.parse(payload) as { predicate: { runDetails: { metadata?: Record<string, string> } } };
  const metadata = st.predicate.runDetails.metadata ?? {};
  delete st.predicate.runDetails.metadata;
  return { statement: st, metadata };
}

describe.skipIf(skipUnless(['docker-registry'], 'single-step functions and release write the same attestations'))('single-step functions and release write the same attestations', () => {
  let steps: { doc: BuildDocument; attached: Attached; sbomDir: string };
  let whole: { record: ReleaseRecord; attached: Attached; out: string };

  beforeAll(async () => {
    regSteps = await startRegistry();
    regRelease = await startRegistry();
    fwd = await startForwarder(regSteps.host);
    dir = mkdtempSync(join(tmpdir(), 'stella-steps-'));
    const pair = generateKeyPair(KEY_PASSWORD);
    env.STEPS_KEY = pair.privateKeyPem;
    publicKey = join(dir, 'cosign.pub');
    writeFileSync(publicKey, pair.publicKeyPem);
    base = `oci:${join(dir, 'base')}@${await makeFixtureBase(join(dir, 'base'))}`;
  }, 120_000);

  afterAll(async () => {
    await fwd?.stop();
    await regSteps?.stop();
    await regRelease?.stop();
  });

  it('build, sbom, sign, provenance, publish one by one', async () => {
    const images = join(dir, 'build.json');
    const sbomDir = join(dir, 'steps-sbom');
    await cli('build', '--version', VERSION, '--base', base, '--services', SERVICES, '--registry', fwd.host, '--namespace', 'stellaops', ...revision, '--output', images);
    await cli('sbom', '--images', images, ...key, '--out-dir', sbomDir, ...revision);
    await cli('sign', '--images', images, ...key);
    await cli('provenance', '--images', images, '--version', VERSION, '--ref', REF, '--base', base, ...key, ...revision);
    await cli('publish', '--images', images, '--public-key', publicKey, '--version', VERSION, '--ref', REF);
    const doc = JSON.parse(readFileSync(images, 'utf8')) as BuildDocument;
    steps = { doc, attached: await attached(regSteps.host, doc, fwd.host), sbomDir };
    expect(steps.attached.referrers.size).toBeGreaterThanOrEqual(7);
  }, 900_000);

  it('release of the same commit, source date, base and key', async () => {
    fwd.switchTo(regRelease.host);
    const out = join(dir, 'dist');
    const r = await cli('release', '--version', VERSION, '--ref', REF, '--services', SERVICES, '--registry', fwd.host, '--namespace', 'stellaops', '--base', base, ...key, ...revision, '--out', out);
    const record = JSON.parse(r.stdout) as ReleaseRecord;
    whole = { record, attached: await attached(regRelease.host, { images: record.images }, fwd.host), out };
  }, 900_000);

  it('the same images, by digest, tagged the same', () => {
    expect(whole.record.images.map((i) => [i.service, i.repository, i.digest, i.platforms])).toEqual(steps.doc.images.map((i) => [i.service, i.repository, i.digest, i.platforms]));
    expect(steps.attached.tag).toBe(steps.doc.images[0]!.digest);
    expect(whole.attached.tag).toBe(steps.attached.tag);
  });

  it('the same referrers, each naming the same subject; byte-identical SBOM, signature and plain SPDX payloads', () => {
    expect([...whole.attached.referrers.keys()].sort()).toEqual([...steps.attached.referrers.keys()].sort());
    const kinds = new Set([...steps.attached.referrers.keys()].map((k) => k.split(' ').slice(1).join(' ')));
    expect([...kinds].sort()).toEqual([
      `${MediaType.sigstoreBundle} https://slsa.dev/provenance/v1`,
      `${MediaType.sigstoreBundle} https://spdx.dev/Document`,
      `${MediaType.sigstoreBundle} https://sigstore.dev/cosign/sign/v1`,
      `${MediaType.spdxJson} `,
    ].sort());
    for (const [k, payload] of steps.attached.referrers) {
      if (k.endsWith('https://slsa.dev/provenance/v1')) continue;
      expect(whole.attached.referrers.get(k), k).toBe(payload);
    }
    expect([...whole.attached.legacy]).toEqual([...steps.attached.legacy]);
    expect(steps.attached.legacy.size).toBe(steps.doc.images.length);
  });

  it('the SBOM files written (sbom --out-dir, release <out>/sbom) are byte-identical', () => {
    const files = (d: string) => readdirSync(d, { recursive: true, withFileTypes: true }).filter((f) => f.isFile()).map((f) => join(f.parentPath, f.name).slice(d.length));
    const a = files(steps.sbomDir).sort();
    expect(a.length).toBe(3);
    expect(files(join(whole.out, 'sbom')).sort()).toEqual(a);
    for (const f of a) expect(readFileSync(join(whole.out, 'sbom', f), 'utf8'), f).toBe(readFileSync(join(steps.sbomDir, f), 'utf8'));
  });

  it('provenance differs only in its run metadata (invocation id, start and finish time)', () => {
    const keys = [...steps.attached.referrers.keys()].filter((k) => k.endsWith('https://slsa.dev/provenance/v1'));
    expect(keys).toHaveLength(steps.doc.images.length);
    for (const k of keys) {
      const a = withoutRunMetadata(steps.attached.referrers.get(k)!);
      const b = withoutRunMetadata(whole.attached.referrers.get(k)!);
      expect(JSON.stringify(b.statement), k).toBe(JSON.stringify(a.statement));
      for (const m of [a.metadata, b.metadata]) expect(Object.keys(m).sort()).toEqual(['finishedOn', 'invocationId', 'startedOn']);
      expect(a.metadata.invocationId).not.toBe(b.metadata.invocationId);
    }
  });

  it('the key password appears in no output', () => {
    for (const o of outputs) expect(o).not.toContain(KEY_PASSWORD);
  });
});
