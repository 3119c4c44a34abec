/**
 * Registry-level interop with the real cosign 2.5, fully offline: an image in a
 * throwaway distribution 2.8 registry (no referrers API) gets
 *   - a cosign v3-style bundle signature (DSSE over the sign/v1 statement) as a
 *     referrer through the `sha256-<hex>` fallback index, and
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
  publishAttestation,
  publishImageSignature,
  legacySignatureTag,
  loadPrivateKey,
  signStatement,
  type SigstoreBundle,
  verifyBundle,
  verifyLegacySignature,
} from '../../ci/src/sign/index.ts';
import { registryAvailable, startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { cosign, cosignAvailable, show } from './helpers.ts';

const SLSA_V1 = 'https://slsa.dev/provenance/v1';
const runnable = registryAvailable() && cosignAvailable();
const why = 'needs /usr/bin/docker-registry and /usr/local/bin/cosign (installed by scripts/host-setup.sh); the CI job that runs host-setup covers it';

describe.skipIf(!runnable)(`cosign accepts our signatures in a registry${runnable ? '' : ` (skipped: ${why})`}`, () => {
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
    reg = await startRegistry();
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

    // v3-style bundle signature as a referrer (fallback tag on distribution 2.8) + legacy .sig.
    const published = await publishImageSignature(client, { repo, subject: image, signer: { kind: 'key', key } });
    expect(published.mode).toBe('fallback');
    expect(published.legacy).toBeDefined();
    // A second signer: its .sig signature is merged with ours (read-modify-write), its bundle is another referrer.
    const cosigner = loadPrivateKey(cosignerPair.privateKeyPem, '');
    await publishImageSignature(client, { repo, subject: image, signer: { kind: 'key', key: cosigner } });
    const sigManifest = JSON.parse(new TextDecoder().decode((await client.getManifest(repo, legacySignatureTag(digest))).bytes));
    expect(sigManifest.layers).toHaveLength(2);
    expect(await client.referrers(repo, digest)).toHaveLength(2);
    await expect(publishAttestation(client, repo, image, { _type: 'https://in-toto.io/Statement/v1', subject: [{ digest: { sha256: 'e'.repeat(64) } }], predicateType: SLSA_V1 }, { kind: 'key', key })).rejects.toThrow(
      /does not name this image: expected a subject with digest sha256:/,
    );

    // An SLSA provenance attestation about the image, as another referrer.
    await publishAttestation(client, repo, image, {
      _type: 'https://in-toto.io/Statement/v1',
      subject: [{ name: `${reg.host}/${repo}`, digest: { sha256: digest.slice(7) } }],
      predicateType: SLSA_V1,
      predicate: { buildDefinition: { buildType: 'https://stella.example/build/v1', externalParameters: {} }, runDetails: { builder: { id: 'https://stella.example/ci' } } },
    }, { kind: 'key', key });

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

  it('our own verifier reads back what we stored', async () => {
    const referrers = await client.referrers(repo, image.digest, { artifactType: MediaType.sigstoreBundle });
    expect(referrers).toHaveLength(3);
    expect(referrers[0]!.annotations?.['dev.sigstore.bundle.predicateType']).toBe(COSIGN_SIGN_PREDICATE_TYPE);
    const m = JSON.parse(new TextDecoder().decode((await client.getManifest(repo, referrers[0]!.digest)).bytes));
    const bundleBytes = await client.getBlob(repo, m.layers[0].digest);
    const pub = readFileSync(join(dir, 'pub.pem'), 'utf8');
    const st = verifyBundle(bundleBytes, { publicKeyPem: pub }, { expectedSubjectDigest: image.digest, expectedPredicateType: COSIGN_SIGN_PREDICATE_TYPE });
    expect(st.predicateType).toBe(COSIGN_SIGN_PREDICATE_TYPE);

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
    expect(files.length).toBeGreaterThan(10);
    for (const f of files) expect(readFileSync(f).includes(password), f).toBe(false);
  });
});
