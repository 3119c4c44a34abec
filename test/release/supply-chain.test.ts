/**
 * The supply-chain steps against both kinds of real registry — distribution 2.8
 * (no referrers API: the sha256-<hex> fallback tag is what runs) and
 * go-containerregistry with the OCI 1.1 referrers API — the same tests on each,
 * checked by our own verify step and by independent peers: oras (discover) and
 * cosign 2.5 with only the public key and no network.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registryKinds, startRegistryOfKind, type TestRegistry } from '../helpers/registry.ts';
import type { RegistryClient } from '../../ci/src/registry/index.ts';
import { startFaultProxy } from '../helpers/fault-proxy.ts';
import { cosign, cosignAvailable, show } from '../sign/helpers.ts';
import { CHECK_RUNS_IN, findTool, skipUnless, underCi } from '../helpers/tools.ts';
import { generateKeyPair, loadPrivateKey, signStatement, bundleReferrerManifest, COSIGN_SIGN_PREDICATE_TYPE, IN_TOTO_STATEMENT_V1, emptyTrustedRoot } from '../../ci/src/sign/index.ts';
import { Registries, signingWithKey, type Signing } from '../../ci/src/release/context.ts';
import { sbomStep } from '../../ci/src/release/sbom.ts';
import { signStep } from '../../ci/src/release/signatures.ts';
import { provenanceStep, type ProvenanceStepOptions } from '../../ci/src/release/provenance.ts';
import { verifyStep, verifyImage } from '../../ci/src/release/verify.ts';
import { publishStep } from '../../ci/src/release/publish.ts';
import { subjectOf } from '../../ci/src/release/attach.ts';
import { planTags } from '../../ci/src/tags/index.ts';
import { SPDX_PREDICATE_TYPE, SLSA_PROVENANCE_V1_PREDICATE_TYPE, validateSpdx, locateSpdxSchema, type SpdxDocument } from '../../ci/src/sbom/index.ts';
import { MediaType, sha256Digest, digestHex, referrersFallbackTag } from '../../ci/src/oci/types.ts';
import type { BuildDocument, BuiltImage } from '../../ci/src/build/document.ts';
import { COMMIT, SOURCE_DATE_EPOCH, filterReferrers, pushSyntheticImage } from './fixture.ts';

const KEY_PASSWORD = 'canary-keypass-5b1e9d';
const io = { progress: () => {}, source: process.cwd() };
const CI = underCi();
const orasOk = findTool('oras') !== undefined || CI;
const cosignOk = cosignAvailable() || CI;
const PEERS_WHY = `installed by scripts/host-setup.sh; this check runs in ${CHECK_RUNS_IN}`;

function reg_kind_title(kind: string): string {
  return kind === 'referrers'
    ? 'our client uses the referrers API: it wrote no sha256-<hex> fallback tag'
    : 'our client uses the sha256-<hex> fallback tag (no referrers API)';
}

describe.each(registryKinds())('supply chain on $title', ({ kind, available, why }) => {
  if (!available) {
    it.skip(`skipped: ${why}`, () => {});
    return;
  }
  let reg: TestRegistry;
  let signing: ReturnType<typeof signingWithKey>;
  let other: ReturnType<typeof signingWithKey>;
  let publicKeyPem: string;
  let registries: Registries;
  let tmp: string;
  const progress: string[] = [];
  const logIo = { progress: (l: string) => progress.push(l), source: process.cwd() };

  function provenanceOptions(images: BuildDocument, s: Signing = signing): ProvenanceStepOptions {
    return {
      images,
      registries,
      signing: s,
      version: 'v1.4.0-rc.1',
      source: { repository: 'git+https://github.com/stellaops/stella', commit: COMMIT, ref: 'refs/tags/v1.4.0-rc.1' },
      sourceDateEpoch: SOURCE_DATE_EPOCH,
      baseImage: { uri: 'registry.example.com/stellaops/stella-base-node', digest: `sha256:${'4d'.repeat(32)}` },
      builderId: 'https://stellaops.io/builders/stella-release/test',
      invocation: { startedOn: new Date(SOURCE_DATE_EPOCH * 1000), finishedOn: new Date(SOURCE_DATE_EPOCH * 1000 + 1000) },
      toolVersions: { node: process.version },
      secrets: [KEY_PASSWORD],
    };
  }

  /** Runs the three attaching steps on `images`. */
  async function attachAll(images: BuildDocument, s: Signing = signing, which = { sbom: true, sign: true, provenance: true }): Promise<void> {
    if (which.sbom) await sbomStep({ images, registries, signing: s, sourceDateEpoch: SOURCE_DATE_EPOCH, toolVersion: 'test', secrets: [KEY_PASSWORD], outDir: join(tmp, 'sbom') }, logIo);
    if (which.sign) await signStep({ images, registries, signing: s }, logIo);
    if (which.provenance) await provenanceStep({ ...provenanceOptions(images, s), outDir: join(tmp, 'prov') }, logIo);
  }

  async function verifyError(images: BuildDocument, trust = signing.trust): Promise<string> {
    try {
      await verifyStep({ images, registries, trust }, io);
    } catch (e) {
      return (e as Error).message;
    }
    return 'verify passed';
  }

  const doc = (...images: BuiltImage[]): BuildDocument => ({ images });
  let good: BuildDocument;

  /** Removes the referrers `keep` refuses: from the fallback index, or (referrers API) by deleting their manifests. */
  async function dropReferrers(client: RegistryClient, repo: string, subject: string, keep: (d: { artifactType?: string; annotations?: Record<string, string>; digest: string }) => boolean): Promise<void> {
    if (!reg.referrersApi) return filterReferrers(client, repo, subject, keep);
    for (const d of await client.referrers(repo, subject)) if (!keep(d as never)) await client.deleteManifest(repo, d.digest);
  }

  beforeAll(async () => {
    reg = await startRegistryOfKind(kind);
    tmp = mkdtempSync(join(tmpdir(), 'stella-supply-'));
    const pair = generateKeyPair(KEY_PASSWORD);
    signing = signingWithKey(loadPrivateKey(pair.privateKeyPem, KEY_PASSWORD));
    publicKeyPem = pair.publicKeyPem;
    writeFileSync(join(tmp, 'cosign.pub'), publicKeyPem);
    const otherPair = generateKeyPair('');
    other = signingWithKey(loadPrivateKey(otherPair.privateKeyPem, ''));
    writeFileSync(join(tmp, 'other.pub'), otherPair.publicKeyPem);
    writeFileSync(join(tmp, 'trusted_root.json'), JSON.stringify(emptyTrustedRoot()));
    registries = new Registries();
    good = doc(await pushSyntheticImage(reg.host, 'stellaops', 'api'), await pushSyntheticImage(reg.host, 'stellaops', 'conseiller'));
    await attachAll(good);
  }, 300_000);

  afterAll(async () => {
    await reg?.stop();
  });

  describe('supply chain', () => {
    it(reg_kind_title(kind), async () => {
      const client = registries.client(reg.host);
      for (const image of good.images) {
        const tags = await client.listTags(image.repository.slice(reg.host.length + 1));
        expect(tags).toContain(`${referrersFallbackTag(image.digest)}.sig`);
        expect(tags.includes(referrersFallbackTag(image.digest)), tags.join(' ')).toBe(!reg.referrersApi);
        for (const p of Object.values(image.platforms)) expect(tags.includes(referrersFallbackTag(p))).toBe(!reg.referrersApi);
      }
    });

    it.skipIf(!orasOk)(`oras discover lists a signature, an SBOM and a provenance for every index${orasOk ? '' : ` (skipped: no oras; ${PEERS_WHY})`}`, () => {
      for (const image of good.images) {
        const r = spawnSync('oras', ['discover', '--plain-http', '-o', 'json', `${image.repository}@${image.digest}`], { encoding: 'utf8' });
        expect(r.status, r.stderr).toBe(0);
        const listed = JSON.stringify(JSON.parse(r.stdout));
        expect(listed).toContain(COSIGN_SIGN_PREDICATE_TYPE);
        expect(listed).toContain(SPDX_PREDICATE_TYPE);
        expect(listed).toContain(MediaType.spdxJson);
        expect(listed).toContain(SLSA_PROVENANCE_V1_PREDICATE_TYPE);
      }
    });

    it('verify passes and says what it checked', async () => {
      const r = await verifyStep({ images: good, registries, trust: signing.trust }, io);
      for (const v of r) {
        expect(v.ok).toBe(true);
        // "(schema-valid)" where the SPDX schema is present to validate against; the structural checks run regardless.
        const valid = 'path' in locateSpdxSchema() ? ' (schema-valid)' : '';
        expect(v.checked).toEqual(expect.arrayContaining(['signature (bundle)', 'signature (legacy .sig)', 'provenance (SLSA v1)', `SBOM index${valid}`, `SBOM linux/amd64${valid}`, `SBOM linux/arm64${valid}`]));
      }
    });

    it('re-running the steps writes nothing new (idempotent, no duplicate referrers)', async () => {
      const client = registries.client(reg.host);
      const before = await client.referrers('stellaops/stella-api', good.images[0]!.digest);
      await attachAll(good);
      const after = await client.referrers('stellaops/stella-api', good.images[0]!.digest);
      expect(after.map((d) => d.digest).sort()).toEqual(before.map((d) => d.digest).sort());
    });

    it('the sbom step fetches each blob once per run: two services sharing their base layer', async () => {
      const proxy = await startFaultProxy({ upstream: reg.host });
      try {
        const images = doc(await pushSyntheticImage(proxy.host, 'counted', 'api', 'count-api'), await pushSyntheticImage(proxy.host, 'counted', 'conseiller', 'count-conseiller'));
        proxy.reset();
        const viaProxy = new Registries();
        await sbomStep({ images, registries: viaProxy, signing, sourceDateEpoch: SOURCE_DATE_EPOCH, toolVersion: 'test', secrets: [KEY_PASSWORD] }, io);
        const blobGets = new Map<string, number>();
        for (const r of proxy.requests) {
          const m = /\/blobs\/(sha256:[0-9a-f]{64})$/.exec(r.path);
          if (r.method === 'GET' && m) blobGets.set(m[1]!, (blobGets.get(m[1]!) ?? 0) + 1);
        }
        // Every config and layer of both images' platforms (the base layer is shared by all four manifests).
        const client = viaProxy.client(proxy.host);
        const wanted = new Set<string>();
        let references = 0;
        for (const image of images.images) {
          for (const p of Object.values(image.platforms)) {
            const m = JSON.parse(new TextDecoder().decode((await client.getManifest(image.repository.slice(proxy.host.length + 1), p)).bytes));
            for (const d of [m.config, ...m.layers]) {
              wanted.add(d.digest);
              references++;
            }
          }
        }
        // 4 manifests × (config + 2 layers) = 12 references to 7 blobs: 4 configs, one app layer per
        // service (the same on both platforms) and the base layer all four share.
        expect([references, wanted.size]).toEqual([12, 7]);
        for (const d of wanted) expect(blobGets.get(d), d).toBe(1);
        expect([...blobGets.values()].reduce((a, b) => a + b, 0)).toBe(7);
      } finally {
        await proxy.stop();
      }
    });

    const schema = locateSpdxSchema();
    it.skipIf(skipUnless([{ name: 'the SPDX 2.3 JSON schema', ok: 'path' in schema, hint: 'not part of this repository: ../shared/schemas/spdx-2.3.schema.json or $SPDX_SCHEMA' }], 'supply chain: the SBOMs are SPDX 2.3 schema-valid'))('the SBOM of each platform is SPDX 2.3 schema-valid and lists Node.js and the npm packages', async () => {
      const { readFileSync } = await import('node:fs');
      for (const image of good.images) {
        for (const platform of ['linux-amd64', 'linux-arm64']) {
          const sbom = JSON.parse(readFileSync(join(tmp, 'sbom', image.service, `${image.service}-${platform}.spdx.json`), 'utf8')) as SpdxDocument;
          expect(validateSpdx(sbom).schema.checked).toBe(true);
          const names = sbom.packages.map((p) => p.name);
          expect(names).toEqual(expect.arrayContaining(['node', 'pg', 'libc6', `stella-${image.service}`]));
        }
      }
    });

    it('verify refuses the wrong key, naming each image', async () => {
      const msg = await verifyError(good, other.trust);
      expect(msg).toMatch(/verification failed for 2 of 2 images/);
      expect(msg).toContain(`${good.images[0]!.repository}@${good.images[0]!.digest}`);
      expect(msg).toMatch(/signature: none verifies/);
      expect(msg).toMatch(/SBOM \(index\): no signed SPDX attestation verifies/);
    });

    it('verify refuses an SBOM changed after signing', async () => {
      const img = await pushSyntheticImage(reg.host, 'stellaops', 'policy', 'sbom-tamper');
      await attachAll(doc(img));
      const client = registries.client(reg.host);
      const s = await subjectOf(client, 'stellaops/stella-policy', img.digest, img.digest);
      // Take the signed SPDX attestation, change the SBOM inside the DSSE payload, store it instead.
      const att = (await client.referrers(s.repo, img.digest)).find((d) => d.annotations?.['dev.sigstore.bundle.predicateType'] === SPDX_PREDICATE_TYPE)!;
      const m = JSON.parse(new TextDecoder().decode((await client.getManifest(s.repo, att.digest)).bytes));
      const bundle = JSON.parse(new TextDecoder().decode(await client.getBlob(s.repo, m.layers[0].digest)));
      const statement = JSON.parse(Buffer.from(bundle.dsseEnvelope.payload, 'base64').toString('utf8'));
      statement.predicate.name = `${statement.predicate.name} (edited)`;
      bundle.dsseEnvelope.payload = Buffer.from(JSON.stringify(statement)).toString('base64');
      const forged = bundleReferrerManifest(bundle, s.descriptor, SPDX_PREDICATE_TYPE);
      for (const b of forged.blobs) await client.pushBlob(s.repo, b.bytes, b.digest);
      await client.attachReferrer(s.repo, img.digest, forged.manifestBytes, forged.mediaType);
      await dropReferrers(client, s.repo, img.digest, (d) => d.digest !== att.digest);
      const msg = await verifyError(doc(img));
      expect(msg).toMatch(/SBOM \(index\): no signed SPDX attestation verifies/);
      expect(msg).toMatch(/signature/i);
    });

    it('verify refuses a provenance taken from another image', async () => {
      const a = await pushSyntheticImage(reg.host, 'stellaops', 'ledger', 'prov-a');
      const b = await pushSyntheticImage(reg.host, 'stellaops', 'ledger', 'prov-b');
      await attachAll(doc(a, b));
      const client = registries.client(reg.host);
      const repo = 'stellaops/stella-ledger';
      const isProv = (d: { annotations?: Record<string, string> }) => d.annotations?.['dev.sigstore.bundle.predicateType'] === SLSA_PROVENANCE_V1_PREDICATE_TYPE;
      // Copy b's signed provenance bundle onto a, and drop a's own.
      const bProv = (await client.referrers(repo, b.digest)).find(isProv)!;
      const bm = JSON.parse(new TextDecoder().decode((await client.getManifest(repo, bProv.digest)).bytes));
      const bBundle = await client.getBlob(repo, bm.layers[0].digest);
      const sa = await subjectOf(client, repo, a.digest, a.digest);
      const moved = bundleReferrerManifest(bBundle, sa.descriptor, SLSA_PROVENANCE_V1_PREDICATE_TYPE);
      for (const x of moved.blobs) await client.pushBlob(repo, x.bytes, x.digest);
      await dropReferrers(client, repo, a.digest, (d) => !isProv(d));
      await client.attachReferrer(repo, a.digest, moved.manifestBytes, moved.mediaType);
      const msg = await verifyError(doc(a));
      expect(msg).toMatch(/provenance: none verifies/);
      expect(msg).toContain(a.digest);
    });

    it('verify refuses an image with no signature', async () => {
      const img = await pushSyntheticImage(reg.host, 'stellaops', 'notify', 'unsigned');
      await attachAll(doc(img), signing, { sbom: true, sign: false, provenance: true });
      const msg = await verifyError(doc(img));
      expect(msg).toMatch(/signature: none verifies .* \(no signature attached\)/);
      expect(msg).toMatch(/legacy signature: no sha256-[0-9a-f]{64}\.sig tag/);
    });

    it('verify refuses a signature made over a tag instead of the digest', async () => {
      const img = await pushSyntheticImage(reg.host, 'stellaops', 'export', 'tag-signed');
      await attachAll(doc(img), signing, { sbom: true, sign: false, provenance: true });
      const client = registries.client(reg.host);
      const s = await subjectOf(client, 'stellaops/stella-export', img.digest, img.digest);
      // What a signer that signs `repo:tag` (not the content) would sign.
      const overTag = sha256Digest(`${img.repository}:v1.4.0-rc.1`);
      const bundle = await signStatement({ _type: IN_TOTO_STATEMENT_V1, subject: [{ digest: { sha256: digestHex(overTag) } }], predicateType: COSIGN_SIGN_PREDICATE_TYPE, predicate: {} }, signing.signer);
      const ref = bundleReferrerManifest(bundle, s.descriptor, COSIGN_SIGN_PREDICATE_TYPE);
      for (const b of ref.blobs) await client.pushBlob(s.repo, b.bytes, b.digest);
      await client.attachReferrer(s.repo, img.digest, ref.manifestBytes, ref.mediaType);
      const msg = await verifyError(doc(img));
      expect(msg).toMatch(/signature: none verifies/);
      expect(msg).toContain(digestHex(overTag));
    });

    it('no canary key password in SBOMs, provenance, progress output or errors', async () => {
      const { readdirSync, readFileSync, statSync } = await import('node:fs');
      const walk = (d: string): string[] => readdirSync(d).flatMap((f) => (statSync(join(d, f)).isDirectory() ? walk(join(d, f)) : [join(d, f)]));
      for (const f of walk(tmp)) expect(readFileSync(f, 'utf8')).not.toContain(KEY_PASSWORD);
      expect(progress.join('\n')).not.toContain(KEY_PASSWORD);
      let err = '';
      try {
        loadPrivateKey(generateKeyPair(KEY_PASSWORD).privateKeyPem, 'wrong-password');
      } catch (e) {
        err = `${(e as Error).message}\n${(e as Error).stack}`;
      }
      expect(err).toMatch(/password/i);
      expect(err).not.toContain(KEY_PASSWORD);
    });
  });

  describe.skipIf(!cosignOk)(`cosign 2.5 (public key only, no network) accepts what we attached${cosignOk ? '' : ` (skipped: no cosign; ${PEERS_WHY})`}`, () => {
    const ref = (i: BuiltImage) => `${i.repository}@${i.digest}`;
    const insecure = ['--allow-insecure-registry', '--allow-http-registry'];
    const offline = ['--insecure-ignore-tlog=true'];

    it.each(['api', 'conseiller'])('%s: legacy signature (cosign verify), and refuses another key', (service) => {
      const image = good.images.find((i) => i.service === service)!;
      const ok = cosign(['verify', '--key', join(tmp, 'cosign.pub'), ...offline, ...insecure, ref(image)]);
      expect(ok.status, show(ok)).toBe(0);
      const bad = cosign(['verify', '--key', join(tmp, 'other.pub'), ...offline, ...insecure, ref(image)]);
      expect(bad.status, show(bad)).not.toBe(0);
    });

    it.each([
      ['api', COSIGN_SIGN_PREDICATE_TYPE],
      ['api', 'spdxjson'],
      ['api', 'slsaprovenance1'],
      ['conseiller', COSIGN_SIGN_PREDICATE_TYPE],
      ['conseiller', 'spdxjson'],
      ['conseiller', 'slsaprovenance1'],
    ])('%s: bundle-format %s (cosign verify-attestation --new-bundle-format), and refuses another key', (service, type) => {
      const image = good.images.find((i) => i.service === service)!;
      const args = (key: string) => ['verify-attestation', '--new-bundle-format', '--key', key, '--type', type, '--trusted-root', join(tmp, 'trusted_root.json'), ...offline, ...insecure, ref(image)];
      const ok = cosign(args(join(tmp, 'cosign.pub')));
      expect(ok.status, show(ok)).toBe(0);
      const bad = cosign(args(join(tmp, 'other.pub')));
      expect(bad.status, show(bad)).not.toBe(0);
    });
  });

  describe('publish: tags last, immutable release tags', () => {
    it('dry run decides and writes nothing; then tags every verified image; a re-run is a no-op', async () => {
      const plan = planTags({ version: 'v1.4.0-rc.1' });
      const client = registries.client(reg.host);
      const dry = await publishStep({ images: good, registries, trust: signing.trust, plan, dryRun: true }, io);
      expect(dry.every((t) => t.action === 'create' && !t.written)).toBe(true);
      expect(await client.resolve('stellaops/stella-api', 'v1.4.0-rc.1')).toBeUndefined();
      const first = await publishStep({ images: good, registries, trust: signing.trust, plan }, io);
      expect(first.map((t) => t.action)).toEqual(['create', 'create']);
      for (const image of good.images) expect(await client.resolve(image.repository.split('/').slice(1).join('/'), 'v1.4.0-rc.1')).toBe(image.digest);
      const again = await publishStep({ images: good, registries, trust: signing.trust, plan }, io);
      expect(again.map((t) => t.action)).toEqual(['unchanged', 'unchanged']);
    });

    it('refuses to overwrite a release tag, before moving any tag', async () => {
      const plan = planTags({ version: 'v1.4.0-rc.1' });
      const rebuilt = await pushSyntheticImage(reg.host, 'stellaops', 'conseiller', 'rebuilt-differently');
      await attachAll(doc(rebuilt));
      const edge = planTags({ version: 'edge' });
      await publishStep({ images: doc(good.images[0]!), registries, trust: signing.trust, plan: edge }, io);
      let msg = '';
      try {
        await publishStep({ images: doc(rebuilt), registries, trust: signing.trust, plan }, io);
      } catch (e) {
        msg = (e as Error).message;
      }
      expect(msg).toMatch(/refusing to overwrite the immutable tag .*stella-conseiller:v1.4.0-rc.1/);
      const client = registries.client(reg.host);
      expect(await client.resolve('stellaops/stella-conseiller', 'v1.4.0-rc.1')).toBe(good.images[1]!.digest);
    });

    it('refuses to tag an image whose attestations are incomplete', async () => {
      const img = await pushSyntheticImage(reg.host, 'stellaops', 'ai', 'no-provenance');
      await attachAll(doc(img), signing, { sbom: true, sign: true, provenance: false });
      await expect(publishStep({ images: doc(img), registries, trust: signing.trust, plan: planTags({ version: 'v9.9.9' }) }, io)).rejects.toThrow(/provenance: none verifies/);
      expect(await registries.client(reg.host).resolve('stellaops/stella-ai', 'v9.9.9')).toBeUndefined();
      const v = await verifyImage({ images: doc(img), registries, trust: signing.trust }, img);
      expect(v.ok).toBe(false);
    });
  });
});
