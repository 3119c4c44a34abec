/**
 * Registry-level interop with the real cosign 2.5, fully offline, on both kinds
 * of registry: distribution 2.8 (no referrers API: the `sha256-<hex>` fallback
 * index) and go-containerregistry with the OCI 1.1 referrers API. Through the
 * production path (the sign step, ci/src/release/attach.ts), an image gets
 *   - a cosign v3-style bundle signature (DSSE over the sign/v1 statement) as a
 *     referrer, and
 *   - a legacy cosign v2 `.sig` signature;
 * cosign with only the public key accepts both, and refuses both with another key.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MediaType, descriptorOf, jsonBytes, sha256Digest, type Descriptor } from '../../ci/src/oci/types.ts';
import { RegistryClient } from '../../ci/src/registry/index.ts';
import {
  COSIGN_SIGN_PREDICATE_TYPE,
  bundleReferrerManifest,
  emptyTrustedRoot,
  generateKeyPair,
  imageSignatureStatement,
  legacySignatureTag,
  loadPrivateKey,
  signStatement,
  type SigstoreBundle,
  verifyBundle,
  verifyLegacySignature,
} from '../../ci/src/sign/index.ts';
import { publishAttestation, subjectOf } from '../../ci/src/release/attach.ts';
import { Registries, signingWithKey } from '../../ci/src/release/context.ts';
import { signStep } from '../../ci/src/release/signatures.ts';
import { referrersFallbackTag } from '../../ci/src/oci/types.ts';
import { registryKinds, startRegistryOfKind, type TestRegistry } from '../helpers/registry.ts';
import { cosign, cosignAvailable, show } from './helpers.ts';
import { CHECK_RUNS_IN, missing, underCi } from '../helpers/tools.ts';

const SLSA_V1 = 'https://slsa.dev/provenance/v1';
const CI = underCi();
const io = { progress: () => {} };

describe.each(registryKinds())('cosign accepts our signatures in a registry: $title', ({ kind, available, why }) => {
  const cosignOk = cosignAvailable() || CI;
  const runnable = available && cosignOk;
  const skipWhy = !available ? why : `needs cosign (${missing(['cosign'])}); this check runs in ${CHECK_RUNS_IN}`;
  if (!runnable) {
    it.skip(`skipped: ${skipWhy}`, () => {});
    return;
  }
  let reg: TestRegistry;
  let client: RegistryClient;
  let dir: string;
  const repo = 'stella/sign-interop';
  let image: Descriptor;
  let ref: string;
  const password = 'canary-pw-7f3a91';
  let other2: Descriptor;
  let keyidImage: Descriptor;

  beforeAll(async () => {
    reg = await startRegistryOfKind(kind);
    client = new RegistryClient({ registry: reg.host, insecure: true });
    dir = mkdtempSync(join(tmpdir(), 'stella-sign-reg-'));

    image = await pushImage('v1', 'first');
    const digest = image.digest;
    ref = `${reg.host}/${repo}@${digest}`;

    const ours = generateKeyPair(password);
    const other = generateKeyPair('');
    const cosignerPair = generateKeyPair('');
    const key = loadPrivateKey(ours.privateKeyPem, password);
    writeFileSync(join(dir, 'pub.pem'), ours.publicKeyPem);
    writeFileSync(join(dir, 'other.pem'), other.publicKeyPem);
    writeFileSync(join(dir, 'cosigner.pem'), cosignerPair.publicKeyPem);
    writeFileSync(join(dir, 'trusted-root.json'), JSON.stringify(emptyTrustedRoot()));

    // The sign step (production path): v3-style bundle signature as a referrer + legacy .sig.
    const registries = new Registries({ insecure: true });
    const images = { images: [{ service: 'sign-interop', repository: `${reg.host}/${repo}`, digest, platforms: {} }] };
    const [signed] = await signStep({ images, registries, signing: signingWithKey(key) }, io);
    expect(signed).toMatchObject({ digest, legacyTag: legacySignatureTag(digest), written: true });
    // A second signer: its .sig signature is merged with ours (read-modify-write), its bundle is another referrer.
    const cosigner = loadPrivateKey(cosignerPair.privateKeyPem, '');
    await signStep({ images, registries, signing: signingWithKey(cosigner) }, io);
    // A re-run with the first key finds both of its signatures in place and writes nothing.
    const [again] = await signStep({ images, registries, signing: signingWithKey(key) }, io);
    expect(again!.written).toBe(false);
    const sigManifest = JSON.parse(new TextDecoder().decode((await client.getManifest(repo, legacySignatureTag(digest))).bytes));
    expect(sigManifest.layers).toHaveLength(2);
    expect(await client.referrers(repo, digest)).toHaveLength(2);
    const subject = await subjectOf(client, repo, digest, ref);
    await expect(publishAttestation(subject, { _type: 'https://in-toto.io/Statement/v1', subject: [{ digest: { sha256: 'e'.repeat(64) } }], predicateType: SLSA_V1 }, { kind: 'key', key })).rejects.toThrow(
      /does not name this image: expected a subject with digest sha256:/,
    );

    // An SLSA provenance attestation about the image, as another referrer.
    const prov = await publishAttestation(subject, {
      _type: 'https://in-toto.io/Statement/v1',
      subject: [{ name: `${reg.host}/${repo}`, digest: { sha256: digest.slice(7) } }],
      predicateType: SLSA_V1,
      predicate: { buildDefinition: { buildType: 'https://stella.example/build/v1', externalParameters: {} }, runDetails: { builder: { id: 'https://stella.example/ci' } } },
    }, { kind: 'key', key });
    // The referrers API where the registry has one, the sha256-<hex> fallback index where not.
    expect(prov.mode).toBe(reg.referrersApi ? 'api' : 'fallback');

    // Image 2 carries a signature whose statement names image 1 (a signature made for another image).
    other2 = await pushImage('v2', 'second');
    await attachBundle(other2, await signStatement(imageSignatureStatement(digest), { kind: 'key', key }, ref));
    // Image 3 carries a correct signature with @sigstore/sign's keyid left in the DSSE signature.
    keyidImage = await pushImage('v3', 'third');
    const withKeyId = structuredClone(await signStatement(imageSignatureStatement(keyidImage.digest), { kind: 'key', key }, ref)) as SigstoreBundle;
    withKeyId.dsseEnvelope!.signatures[0]!.keyid = key.hint;
    await attachBundle(keyidImage, withKeyId);
  }, 120_000);

  /** A small single-platform image: an empty tar layer and a config whose label makes it unique. */
  async function pushImage(tag: string, label: string): Promise<Descriptor> {
    const layer = gzipSync(Buffer.alloc(1024), { level: 9 });
    const layerDesc = descriptorOf(MediaType.ociLayerGzip, layer);
    const config = jsonBytes({
      architecture: 'amd64',
      os: 'linux',
      config: { Labels: { 'org.opencontainers.image.title': label } },
      rootfs: { type: 'layers', diff_ids: [sha256Digest(Buffer.alloc(1024))] },
    });
    const configDesc = descriptorOf(MediaType.ociConfig, config);
    await client.pushBlob(repo, layer, layerDesc.digest);
    await client.pushBlob(repo, config, configDesc.digest);
    const manifest = jsonBytes({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: configDesc, layers: [layerDesc] });
    const digest = await client.putManifest(repo, tag, manifest, MediaType.ociManifest);
    return { mediaType: MediaType.ociManifest, digest, size: manifest.byteLength };
  }

  async function attachBundle(subject: Descriptor, bundle: unknown): Promise<void> {
    const referrer = bundleReferrerManifest(bundle as SigstoreBundle, subject, COSIGN_SIGN_PREDICATE_TYPE);
    for (const b of referrer.blobs) await client.pushBlob(repo, b.bytes, b.digest);
    await client.attachReferrer(repo, subject.digest, referrer.manifestBytes, referrer.mediaType);
  }

  afterAll(async () => {
    await reg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const legacyArgs = (key: string) => [
    'verify', '--key', join(dir, key), '--insecure-ignore-tlog=true', '--allow-insecure-registry', '--allow-http-registry', ref,
  ];
  const bundleArgs = (key: string, target = ref) => [
    'verify-attestation', '--new-bundle-format', '--key', join(dir, key), '--type', COSIGN_SIGN_PREDICATE_TYPE,
    '--insecure-ignore-tlog=true', '--trusted-root', join(dir, 'trusted-root.json'),
    '--allow-insecure-registry', '--allow-http-registry', target,
  ];

  it(kind === 'referrers' ? 'uses the referrers API: no sha256-<hex> fallback tag is written' : 'uses the sha256-<hex> fallback tag', async () => {
    const tags = await client.listTags(repo);
    expect(tags).toContain(legacySignatureTag(image.digest));
    expect(tags.includes(referrersFallbackTag(image.digest))).toBe(!reg.referrersApi);
  });

  it('our own verifier reads back what we stored', async () => {
    const referrers = await client.referrers(repo, image.digest, { artifactType: MediaType.sigstoreBundle });
    expect(referrers).toHaveLength(3);
    const types = referrers.map((r) => r.annotations?.['dev.sigstore.bundle.predicateType']).sort();
    expect(types).toEqual([COSIGN_SIGN_PREDICATE_TYPE, COSIGN_SIGN_PREDICATE_TYPE, SLSA_V1].sort());
    const pub = readFileSync(join(dir, 'pub.pem'), 'utf8');
    const verified = [];
    for (const r of referrers.filter((x) => x.annotations?.['dev.sigstore.bundle.predicateType'] === COSIGN_SIGN_PREDICATE_TYPE)) {
      const m = JSON.parse(new TextDecoder().decode((await client.getManifest(repo, r.digest)).bytes));
      const bundleBytes = await client.getBlob(repo, m.layers[0].digest);
      try {
        verified.push(verifyBundle(bundleBytes, { publicKeyPem: pub }, { expectedSubjectDigest: image.digest, expectedPredicateType: COSIGN_SIGN_PREDICATE_TYPE }));
      } catch {
        // the cosigner's bundle: another key
      }
    }
    // Exactly one of the two signature bundles is ours.
    expect(verified.map((st) => st.predicateType)).toEqual([COSIGN_SIGN_PREDICATE_TYPE]);

    const sigM = JSON.parse(new TextDecoder().decode((await client.getManifest(repo, legacySignatureTag(image.digest))).bytes));
    const payload = await client.getBlob(repo, sigM.layers[0].digest);
    verifyLegacySignature(payload, sigM.layers[0].annotations['dev.cosignproject.cosign/signature'], pub, image.digest);
  });

  it('cosign verify (legacy .sig) accepts with our public key, offline', () => {
    const r = cosign(legacyArgs('pub.pem'));
    expect(r.status, show(r)).toBe(0);
    expect(r.stdout).toContain(image.digest);
  });

  it('cosign accepts the second signer too: its .sig entry survived the merge, its bundle is the second referrer', () => {
    const r = cosign(legacyArgs('cosigner.pem'));
    expect(r.status, show(r)).toBe(0);
    const b = cosign(bundleArgs('cosigner.pem'));
    expect(b.status, show(b)).toBe(0);
  });

  it('cosign verify-attestation --new-bundle-format accepts the bundle signature, offline', () => {
    const r = cosign(bundleArgs('pub.pem'));
    expect(r.status, show(r)).toBe(0);
    const payloadType = JSON.parse(r.stdout.trim().split('\n')[0]!).payloadType;
    expect(payloadType).toBe('application/vnd.in-toto+json');
  });

  it('cosign verify-attestation --type slsaprovenance1 accepts the provenance attestation', () => {
    const args = bundleArgs('pub.pem');
    args[args.indexOf(COSIGN_SIGN_PREDICATE_TYPE)] = 'slsaprovenance1';
    const r = cosign(args);
    expect(r.status, show(r)).toBe(0);
    const statements = r.stdout.trim().split('\n').map((l) => JSON.parse(Buffer.from(JSON.parse(l).payload, 'base64').toString()));
    expect(statements.map((st) => st.predicateType)).toEqual([SLSA_V1]);
  });

  it('cosign refuses both with another key', () => {
    const legacy = cosign(legacyArgs('other.pem'));
    expect(legacy.status, show(legacy)).not.toBe(0);
    expect(legacy.stderr).toMatch(/no matching signatures: invalid signature/);
    const bundled = cosign(bundleArgs('other.pem'));
    expect(bundled.status, show(bundled)).not.toBe(0);
    expect(bundled.stderr).toMatch(/no matching attestations: .*Found: 0, Expected 1/);
  });

  it('cosign refuses a bundle whose statement names another image', () => {
    const r = cosign(bundleArgs('pub.pem', `${reg.host}/${repo}@${other2.digest}`));
    expect(r.status, show(r)).not.toBe(0);
    expect(r.stderr).toMatch(/artifact digest does not match any digest in statement/);
  });

  it('cosign skips a DSSE signature that keeps @sigstore/sign\'s keyid (why signStatement removes it)', () => {
    const r = cosign(bundleArgs('pub.pem', `${reg.host}/${repo}@${keyidImage.digest}`));
    expect(r.status, show(r)).not.toBe(0);
    expect(r.stderr).toMatch(/Found: 0, Expected 1/);
  });

  it('the key password appears nowhere in what was pushed', () => {
    const files: string[] = [];
    const walk = (d: string) => {
      for (const f of readdirSync(d)) {
        const p = join(d, f);
        if (statSync(p).isDirectory()) walk(p);
        else files.push(p);
      }
    };
    walk(reg.storage);
    // distribution stores manifests as files too; the referrers registry keeps them in memory (blobs only here).
    expect(files.length).toBeGreaterThan(reg.referrersApi ? 5 : 10);
    for (const f of files) expect(readFileSync(f).includes(password), f).toBe(false);
  });
});
