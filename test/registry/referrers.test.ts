/**
 * OCI 1.1 referrers: the `sha256-<hex>` fallback index against the real
 * distribution 2.8 (which has no referrers API), read and written alongside
 * oras; and the referrers API path against a replayed exchange.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RegistryClient, copyImage, pushLayout } from '../../ci/src/registry/index.ts';
import { EMPTY_JSON, EMPTY_JSON_DIGEST, MediaType, referrersFallbackTag, sha256Digest, type Descriptor } from '../../ci/src/oci/types.ts';
import { registryAvailable, startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { buildTestImage, referrerManifest, type TestImage } from './image-fixture.ts';

const haveOras = existsSync('/usr/local/bin/oras') || existsSync('/usr/bin/oras');
const SKIP = !registryAvailable();

interface OrasDiscovered {
  digest: string;
  artifactType?: string;
  annotations?: Record<string, string>;
}

describe.skipIf(SKIP)(SKIP ? 'skipped: /usr/bin/docker-registry is missing (scripts/host-setup.sh installs it)' : 'referrers fallback tag on distribution 2.8, with oras', () => {
  let registry: TestRegistry;
  let tmp: string;
  let image: TestImage;
  let client: RegistryClient;
  const repo = 'stella/signed';

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
    registry = await startRegistry();
    tmp = mkdtempSync(join(tmpdir(), 'stella-referrers-test-'));
    image = await buildTestImage(join(tmp, 'layout'), 'referrers-test');
    client = new RegistryClient({ registry: registry.host });
    await pushLayout(client, image.layoutDir, repo, image.index.digest);
  });
  afterAll(async () => {
    await registry?.stop();
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  it('lists no referrers before any are attached', async () => {
    expect(await client.referrers(repo, image.index.digest)).toEqual([]);
  });

  it.skipIf(!haveOras)('keeps an oras-written entry, adds ours, and oras discover lists all three', async () => {
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
    expect(await client.attachReferrer(repo, image.index.digest, sbom.bytes, MediaType.ociManifest)).toEqual({ digest: sbom.digest, mode: 'fallback', changed: true });
    expect(await client.attachReferrer(repo, image.index.digest, sig.bytes, MediaType.ociManifest)).toEqual({ digest: sig.digest, mode: 'fallback', changed: true });

    const ours = await client.referrers(repo, image.index.digest);
    expect(ours.map((d) => d.digest)).toEqual([orasEntry.digest, sbom.digest, sig.digest]);
    // The oras entry is kept byte-for-byte as oras wrote it.
    expect(ours[0]).toEqual(orasEntry);
    expect(ours[1]).toEqual({ mediaType: MediaType.ociManifest, digest: sbom.digest, size: sbom.bytes.byteLength, artifactType: MediaType.spdxJson, annotations: { 'org.opencontainers.image.title': 'sbom' } });
    expect(ours[2]!.annotations?.['dev.sigstore.bundle.predicateType']).toBe('https://sigstore.dev/cosign/sign/v1');

    const seen = orasDiscover();
    expect(seen.map((d) => d.digest).sort()).toEqual([orasEntry.digest, sbom.digest, sig.digest].sort());
    expect(seen.find((d) => d.digest === sig.digest)?.artifactType).toBe(MediaType.sigstoreBundle);
    expect(seen.find((d) => d.digest === sbom.digest)?.annotations?.['org.opencontainers.image.title']).toBe('sbom');

    // Re-attaching is a no-op on the index: no duplicate, same fallback digest.
    const tag = referrersFallbackTag(image.index.digest);
    const indexDigest = await client.resolve(repo, tag);
    expect(await client.attachReferrer(repo, image.index.digest, sbom.bytes, MediaType.ociManifest)).toEqual({ digest: sbom.digest, mode: 'fallback', changed: false });
    expect(await client.resolve(repo, tag)).toBe(indexDigest);
    expect((await client.referrers(repo, image.index.digest)).filter((d) => d.digest === sbom.digest)).toHaveLength(1);
    expect(orasDiscover()).toHaveLength(3);

    // The filter works on the fallback path too.
    expect((await client.referrers(repo, image.index.digest, { artifactType: MediaType.spdxJson })).map((d) => d.digest)).toEqual([sbom.digest]);

    const fallback = await client.getManifest(repo, tag);
    expect(fallback.mediaType).toBe(MediaType.ociIndex);
    expect(JSON.parse(new TextDecoder().decode(fallback.bytes)).schemaVersion).toBe(2);
  });

  it('serializes concurrent writers to one fallback index: none is lost', async () => {
    const arts = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => pushArtifact(`application/vnd.example.concurrent-${i}`, `content ${i}`)));
    const before = (await client.referrers(repo, image.index.digest)).length;
    const results = await Promise.all(arts.map((a) => client.attachReferrer(repo, image.index.digest, a.bytes, MediaType.ociManifest)));
    expect(results.every((r) => r.mode === 'fallback' && r.changed)).toBe(true);
    const after = await client.referrers(repo, image.index.digest);
    expect(after).toHaveLength(before + arts.length);
    for (const a of arts) expect(after.some((d) => d.digest === a.digest)).toBe(true);
    // Two clients in one process share the lock too.
    const other = new RegistryClient({ registry: registry.host });
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
    expect(dst.map((d) => d.digest).sort()).toEqual(src.map((d) => d.digest).sort());
    for (const d of dst) expect(d).toEqual(src.find((s) => s.digest === d.digest));
    const again = await copyImage({ client, repo }, { client, repo: 'mirror/signed' }, image.index.digest);
    expect(again).toMatchObject({ referrers: 0, manifests: { pushed: 0 }, blobs: { pushed: 0, mounted: 0 } });
  });

  it('refuses a referrer whose subject is another manifest', async () => {
    const a = await pushArtifact('application/vnd.example.wrong', 'x');
    const other = image.manifests[0]!.descriptor.digest;
    await expect(client.attachReferrer(repo, other, a.bytes, MediaType.ociManifest)).rejects.toThrow(/subject is sha256:[a-f0-9]{64}, expected sha256:/);
    expect(await client.referrers(repo, other)).toEqual([]);
  });
});

// ----------------------------------------------------------------------------- referrers API (replayed)

interface Exchange {
  request: { method: string; path: string; query: string; bodyDigest?: string; contentType?: string };
  response: { status: number; headers: Record<string, string>; body: string };
}
interface Recorded {
  repository: string;
  subject: Descriptor;
  referrerManifest: string;
  exchanges: Exchange[];
}

describe('referrers API (OCI 1.1), against a replayed registry exchange', () => {
  const recorded = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', 'referrers-api-exchange.json'), 'utf8')) as Recorded;
  let server: Server;
  let host: string;
  const unmatched: string[] = [];
  const served: string[] = [];

  beforeAll(async () => {
    server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const url = new URL(req.url ?? '/', 'http://x');
        const body = Buffer.concat(chunks);
        const bodyDigest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
        const ex = recorded.exchanges.find(
          (e) =>
            e.request.method === req.method &&
            e.request.path === url.pathname &&
            e.request.query === url.search &&
            (e.request.bodyDigest === undefined || e.request.bodyDigest === bodyDigest) &&
            (e.request.contentType === undefined || e.request.contentType === req.headers['content-type']),
        );
        if (!ex) {
          unmatched.push(`${req.method} ${url.pathname}${url.search}`);
          res.writeHead(404, { 'content-type': 'text/plain' });
          res.end('not in the recorded exchange');
          return;
        }
        served.push(`${req.method} ${url.pathname}${url.search}`);
        res.writeHead(ex.response.status, ex.response.headers);
        res.end(ex.response.body);
      });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  });

  it('attaches by digest only: the OCI-Subject answer means no fallback tag is written', async () => {
    const client = new RegistryClient({ registry: host });
    const bytes = new TextEncoder().encode(recorded.referrerManifest);
    const result = await client.attachReferrer(recorded.repository, recorded.subject.digest, bytes, MediaType.ociManifest);
    expect(result).toEqual({ digest: sha256Digest(bytes), mode: 'api', changed: true });
    expect(unmatched).toEqual([]);
    // A HEAD (is it stored already? no) and one PUT by digest; nothing else.
    expect(served.map((s) => s.split(' ')[0])).toEqual(['HEAD', 'PUT']);
    expect(served.some((s) => s.includes(referrersFallbackTag(recorded.subject.digest)))).toBe(false);
  });

  it('lists referrers from the API, with the server-side filter and with client-side filtering when the server ignores it', async () => {
    const client = new RegistryClient({ registry: host });
    const all = await client.referrers(recorded.repository, recorded.subject.digest);
    expect(all.map((d) => d.artifactType)).toEqual([MediaType.spdxJson, MediaType.sigstoreBundle]);
    expect(all[1]!.annotations?.['dev.sigstore.bundle.content']).toBe('dsse-envelope');
    const sboms = await client.referrers(recorded.repository, recorded.subject.digest, { artifactType: MediaType.spdxJson });
    expect(sboms.map((d) => d.artifactType)).toEqual([MediaType.spdxJson]);
    const sigs = await client.referrers(recorded.repository, recorded.subject.digest, { artifactType: MediaType.sigstoreBundle });
    expect(sigs.map((d) => d.digest)).toEqual([all[1]!.digest]);
    expect(unmatched).toEqual([]);
  });

  it('does not confuse bytes: the recorded referrer hashes to the digest the registry confirmed', () => {
    const put = recorded.exchanges.find((e) => e.request.method === 'PUT')!;
    expect(sha256Digest(new TextEncoder().encode(recorded.referrerManifest))).toBe(put.response.headers['docker-content-digest']);
    expect(put.response.headers['oci-subject']).toBe(recorded.subject.digest);
  });
});
