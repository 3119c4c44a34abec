/**
 * OCI 1.1 referrers on both kinds of real registry, read and written alongside
 * oras: distribution 2.8 (no referrers API: the `sha256-<hex>` fallback index,
 * read-modify-written keeping other tools' entries) and go-containerregistry
 * with the referrers API (tools/referrers-registry: attached by digest only,
 * listed and filtered by the registry, no fallback tag).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegistryClient, copyImage, pushLayout } from '../../ci/src/registry/index.ts';
import { EMPTY_JSON, EMPTY_JSON_DIGEST, MediaType, referrersFallbackTag, sha256Digest, type Descriptor } from '../../ci/src/oci/types.ts';
import { registryKinds, startRegistryOfKind, type TestRegistry } from '../helpers/registry.ts';
import { CHECK_RUNS_IN, findTool, missing, underCi } from '../helpers/tools.ts';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts';
import { buildTestImage, referrerManifest, type TestImage } from './image-fixture.ts';

const CI = underCi();
const haveOras = findTool('oras') !== undefined || CI;
const ORAS_WHY = `skipped: no oras (${missing(['oras'])}); this check runs in ${CHECK_RUNS_IN}`;

interface OrasDiscovered {
  digest: string;
  artifactType?: string;
  annotations?: Record<string, string>;
}

const sorted = (xs: readonly string[]) => [...xs].sort();

describe.each(registryKinds())('referrers on $title, with oras', ({ kind, available, why }) => {
  if (!available) {
    it.skip(`skipped: ${why}`, () => {});
    return;
  }
  let registry: TestRegistry;
  let proxy: FaultProxy;
  let tmp: string;
  let image: TestImage;
  let client: RegistryClient;
  const repo = 'stella/signed';
  let mode: 'api' | 'fallback';

  async function pushArtifact(artifactType: string, content: string, annotations?: Record<string, string>): Promise<{ bytes: Uint8Array; digest: string }> {
    const layerBytes = new TextEncoder().encode(content);
    const layer: Descriptor = { mediaType: artifactType, digest: sha256Digest(layerBytes), size: layerBytes.byteLength };
    await client.pushBlob(repo, layerBytes, layer.digest);
    await client.pushBlob(repo, EMPTY_JSON, EMPTY_JSON_DIGEST);
    const bytes = referrerManifest(image.index, artifactType, layer, annotations);
    return { bytes, digest: sha256Digest(bytes) };
  }

  function orasDiscover(): OrasDiscovered[] {
    const out = execFileSync('oras', ['discover', '--plain-http', '--format', 'json', `${registry.host}/${repo}@${image.index.digest}`], {
      timeout: 60_000,
      env: { ...process.env, HOME: tmp },
    });
    const parsed = JSON.parse(out.toString('utf8')) as { manifests?: OrasDiscovered[]; referrers?: OrasDiscovered[] };
    return parsed.manifests ?? parsed.referrers ?? [];
  }

  beforeAll(async () => {
    registry = await startRegistryOfKind(kind);
    mode = registry.referrersApi ? 'api' : 'fallback';
    // Every request of `client` passes the recording proxy.
    proxy = await startFaultProxy({ upstream: registry.host });
    tmp = mkdtempSync(join(tmpdir(), 'stella-referrers-test-'));
    image = await buildTestImage(join(tmp, 'layout'), 'referrers-test');
    client = new RegistryClient({ registry: proxy.host });
    await pushLayout(client, image.layoutDir, repo, image.index.digest);
  });
  afterAll(async () => {
    await proxy?.stop();
    await registry?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('lists no referrers before any are attached (also for a repository the registry does not know)', async () => {
    expect(await client.referrers(repo, image.index.digest)).toEqual([]);
    expect(await client.referrers('never/pushed', image.index.digest)).toEqual([]);
  });

  it.skipIf(!haveOras)(`keeps an oras-written referrer, adds ours, and oras discover lists all three${haveOras ? '' : ` (${ORAS_WHY})`}`, async () => {
    const file = join(tmp, 'oras-note.txt');
    writeFileSync(file, 'attached by oras\n');
    execFileSync('oras', ['attach', '--plain-http', '--artifact-type', 'application/vnd.example.oras-note', `${registry.host}/${repo}@${image.index.digest}`, 'oras-note.txt'], {
      cwd: tmp,
      timeout: 60_000,
      env: { ...process.env, HOME: tmp },
    });
    const before = await client.referrers(repo, image.index.digest);
    expect(before.map((d) => d.artifactType)).toEqual(['application/vnd.example.oras-note']);
    const orasEntry = before[0]!;

    const sbom = await pushArtifact(MediaType.spdxJson, '{"spdxVersion":"SPDX-2.3"}', { 'org.opencontainers.image.title': 'sbom' });
    const sig = await pushArtifact(MediaType.sigstoreBundle, '{"bundle":1}', {
      'dev.sigstore.bundle.content': 'dsse-envelope',
      'dev.sigstore.bundle.predicateType': 'https://sigstore.dev/cosign/sign/v1',
    });
    proxy.reset();
    expect(await client.attachReferrer(repo, image.index.digest, sbom.bytes, MediaType.ociManifest)).toEqual({ digest: sbom.digest, mode, changed: true });
    expect(await client.attachReferrer(repo, image.index.digest, sig.bytes, MediaType.ociManifest)).toEqual({ digest: sig.digest, mode, changed: true });
    const tag = referrersFallbackTag(image.index.digest);
    const fallbackPuts = proxy.requests.filter((r) => r.method === 'PUT' && r.path.endsWith(`/manifests/${tag}`));
    // With the API, each referrer is one PUT by digest and nothing else is written.
    expect(fallbackPuts.length > 0).toBe(!registry.referrersApi);
    if (registry.referrersApi) expect(proxy.requests.filter((r) => r.method === 'PUT').map((r) => r.path)).toEqual([`/v2/${repo}/manifests/${sbom.digest}`, `/v2/${repo}/manifests/${sig.digest}`]);

    const ours = await client.referrers(repo, image.index.digest);
    expect(sorted(ours.map((d) => d.digest))).toEqual(sorted([orasEntry.digest, sbom.digest, sig.digest]));
    // The oras entry is kept as oras wrote it (fallback) or as the registry lists it (API).
    expect(ours.find((d) => d.digest === orasEntry.digest)).toEqual(orasEntry);
    expect(ours.find((d) => d.digest === sbom.digest)).toEqual({ mediaType: MediaType.ociManifest, digest: sbom.digest, size: sbom.bytes.byteLength, artifactType: MediaType.spdxJson, annotations: { 'org.opencontainers.image.title': 'sbom' } });
    expect(ours.find((d) => d.digest === sig.digest)!.annotations?.['dev.sigstore.bundle.predicateType']).toBe('https://sigstore.dev/cosign/sign/v1');

    const seen = orasDiscover();
    expect(sorted(seen.map((d) => d.digest))).toEqual(sorted([orasEntry.digest, sbom.digest, sig.digest]));
    expect(seen.find((d) => d.digest === sig.digest)?.artifactType).toBe(MediaType.sigstoreBundle);
    expect(seen.find((d) => d.digest === sbom.digest)?.annotations?.['org.opencontainers.image.title']).toBe('sbom');

    // Re-attaching writes nothing: no duplicate, no PUT.
    proxy.reset();
    expect(await client.attachReferrer(repo, image.index.digest, sbom.bytes, MediaType.ociManifest)).toEqual({ digest: sbom.digest, mode, changed: false });
    expect(proxy.count('PUT')).toBe(0);
    expect((await client.referrers(repo, image.index.digest)).filter((d) => d.digest === sbom.digest)).toHaveLength(1);
    expect(orasDiscover()).toHaveLength(3);

    // The artifactType filter: asked of the registry (which applies it with the API), applied by us either way.
    proxy.reset();
    expect((await client.referrers(repo, image.index.digest, { artifactType: MediaType.spdxJson })).map((d) => d.digest)).toEqual([sbom.digest]);
    if (registry.referrersApi) {
      expect(proxy.requests.map((r) => `${r.method} ${r.path}${r.query}`)).toEqual([`GET /v2/${repo}/referrers/${image.index.digest}?artifactType=${encodeURIComponent(MediaType.spdxJson)}`]);
      const res = await fetch(`${registry.url}/v2/${repo}/referrers/${image.index.digest}?artifactType=${encodeURIComponent(MediaType.spdxJson)}`);
      expect(res.headers.get('oci-filters-applied')).toBe('artifactType');
      expect(((await res.json()) as { manifests: Descriptor[] }).manifests.map((d) => d.digest)).toEqual([sbom.digest]);
    }

    // The fallback index exists exactly where the registry has no API.
    expect(await client.resolve(repo, tag)).toSatisfy((d: string | undefined) => (registry.referrersApi ? d === undefined : d !== undefined));
    if (!registry.referrersApi) {
      const fallback = await client.getManifest(repo, tag);
      expect(fallback.mediaType).toBe(MediaType.ociIndex);
      expect(JSON.parse(new TextDecoder().decode(fallback.bytes)).schemaVersion).toBe(2);
    }
  });

  it('concurrent writers of one subject: none is lost', async () => {
    const arts = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => pushArtifact(`application/vnd.example.concurrent-${i}`, `content ${i}`)));
    const before = (await client.referrers(repo, image.index.digest)).length;
    const results = await Promise.all(arts.map((a) => client.attachReferrer(repo, image.index.digest, a.bytes, MediaType.ociManifest)));
    expect(results.every((r) => r.mode === mode && r.changed)).toBe(true);
    const after = await client.referrers(repo, image.index.digest);
    expect(after).toHaveLength(before + arts.length);
    for (const a of arts) expect(after.some((d) => d.digest === a.digest)).toBe(true);
    // Two clients in one process share the fallback lock too.
    const other = new RegistryClient({ registry: proxy.host });
    const more = await Promise.all([6, 7].map((i) => pushArtifact(`application/vnd.example.concurrent-${i}`, `content ${i}`)));
    await Promise.all([client.attachReferrer(repo, image.index.digest, more[0]!.bytes, MediaType.ociManifest), other.attachReferrer(repo, image.index.digest, more[1]!.bytes, MediaType.ociManifest)]);
    expect(await client.referrers(repo, image.index.digest)).toHaveLength(before + arts.length + 2);
  });

  it('copyImage carries the referrers along (mounted on the same registry); a second copy writes nothing', async () => {
    const src = await client.referrers(repo, image.index.digest);
    expect(src.length).toBeGreaterThan(0);
    const report = await copyImage({ client, repo }, { client, repo: 'mirror/signed' }, image.index.digest);
    expect(report.referrers).toBe(src.length);
    expect(report.blobs.pushed).toBe(0);
    const dst = await client.referrers('mirror/signed', image.index.digest);
    expect(sorted(dst.map((d) => d.digest))).toEqual(sorted(src.map((d) => d.digest)));
    for (const d of dst) expect(d).toEqual(src.find((s) => s.digest === d.digest));
    const again = await copyImage({ client, repo }, { client, repo: 'mirror/signed' }, image.index.digest);
    expect(again).toMatchObject({ referrers: 0, manifests: { pushed: 0 }, blobs: { pushed: 0, mounted: 0 } });
    expect((await client.listTags('mirror/signed')).includes(referrersFallbackTag(image.index.digest))).toBe(!registry.referrersApi);
  });

  it('refuses a referrer whose subject is another manifest', async () => {
    const a = await pushArtifact('application/vnd.example.wrong', 'x');
    const other = image.manifests[0]!.descriptor.digest;
    await expect(client.attachReferrer(repo, other, a.bytes, MediaType.ociManifest)).rejects.toThrow(/subject is sha256:[a-f0-9]{64}, expected sha256:/);
    expect(await client.referrers(repo, other)).toEqual([]);
  });
});
