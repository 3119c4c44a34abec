/**
 * The `chart` function's packaging and publishing: the same inputs give a byte-identical .tgz
 * (and another build's digests a different one); the push is a Helm OCI artifact that `helm pull`
 * reads back byte for byte; the signature is a Sigstore bundle referrer that our verifier and
 * cosign 2.5 (`verify-attestation --new-bundle-format`) accept, on both registry kinds
 * (distribution 2.8 with the fallback tag, and the OCI 1.1 referrers API); a dry run pushes nothing.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HELM_CHART_LAYER_MEDIA_TYPE, HELM_CONFIG_MEDIA_TYPE, chartStep, packageChart, releasePins } from '../../ci/src/chart/index.ts';
import { COSIGN_SIGN_PREDICATE_TYPE, emptyTrustedRoot, generateKeyPair, loadPrivateKey } from '../../ci/src/sign/index.ts';
import { Registries, signingWithKey } from '../../ci/src/release/context.ts';
import { subjectOf, verifiedAttestations } from '../../ci/src/release/attach.ts';
import { referrersFallbackTag } from '../../ci/src/oci/types.ts';
import { registryKinds, startRegistryOfKind, type TestRegistry } from '../helpers/registry.ts';
import { findTool, skipUnless } from '../helpers/tools.ts';
import { APP_VERSION, CHART_VERSION, EPOCH, ROOT, fixtureBuild, fixtureLock, helm, type Helm } from './fixture.ts';

const quiet = { progress: () => {} };

describe('packaging is deterministic', () => {
  const pins = releasePins({ images: fixtureBuild(), supportLock: fixtureLock(), chartVersion: CHART_VERSION, appVersion: APP_VERSION });

  it('packaging twice gives byte-identical archives', () => {
    const a = packageChart({ source: ROOT, pins, sourceDateEpoch: EPOCH });
    const b = packageChart({ source: ROOT, pins, sourceDateEpoch: EPOCH });
    expect(Buffer.compare(Buffer.from(a.bytes), Buffer.from(b.bytes))).toBe(0);
    expect(a.entries[0]).toBe('stella/Chart.yaml');
    expect(a.entries).toContain('stella/values.schema.json');
    expect(a.entries).toContain('stella/templates/api/api-deployment.yaml');
  });

  it('the packaged values carry every digest; other digests or another epoch give another archive', () => {
    const a = packageChart({ source: ROOT, pins, sourceDateEpoch: EPOCH });
    for (const i of fixtureBuild().images) expect(a.valuesYaml).toContain(i.digest);
    expect(a.chartYaml).toContain(`version: "${CHART_VERSION}"`);
    expect(a.chartYaml).toContain(`appVersion: "${APP_VERSION}"`);
    const other = releasePins({ images: fixtureBuild('127.0.0.1:5000', 'other '), supportLock: fixtureLock(), chartVersion: CHART_VERSION, appVersion: APP_VERSION });
    expect(packageChart({ source: ROOT, pins: other, sourceDateEpoch: EPOCH }).digest).not.toBe(a.digest);
    expect(packageChart({ source: ROOT, pins, sourceDateEpoch: EPOCH + 1 }).digest).not.toBe(a.digest);
  });

  it('refuses a build document that lacks a service', () => {
    const partial = { images: fixtureBuild().images.filter((i) => i.service !== 'notify') };
    expect(() => releasePins({ images: partial, chartVersion: CHART_VERSION, appVersion: APP_VERSION })).toThrow(/the build document has no image for notify/);
  });
});

const SKIP_HELM = skipUnless(['helm', 'cosign'], 'chart push, helm pull and cosign verification');

describe.skipIf(SKIP_HELM).each(registryKinds())('chart push, pull and signature on $title', ({ kind, available, why }) => {
  if (!available) {
    it.skip(`needs ${kind}: ${why}`, () => {});
    return;
  }
  let reg: TestRegistry;
  let dir: string;
  let h: Helm;
  const pair = generateKeyPair('');
  const key = loadPrivateKey(pair.privateKeyPem, '', 'test key');

  beforeAll(async () => {
    reg = await startRegistryOfKind(kind);
    dir = mkdtempSync(join(tmpdir(), 'stella-chart-publish-'));
    h = helm();
    writeFileSync(join(dir, 'cosign.pub'), key.publicKeyPem);
    writeFileSync(join(dir, 'trusted_root.json'), JSON.stringify(emptyTrustedRoot()));
  });
  afterAll(async () => {
    await reg?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const step = (out: string, dryRun: boolean) =>
    chartStep(
      { source: ROOT, images: fixtureBuild(), supportLock: fixtureLock(), chartVersion: CHART_VERSION, appVersion: APP_VERSION, registry: reg.host, namespace: 'stellaops', sourceDateEpoch: EPOCH, outDir: join(dir, out), registries: new Registries(), signing: dryRun ? undefined : signingWithKey(key), dryRun },
      quiet,
    );

  it('a dry run packages and computes the digest, and pushes nothing', async () => {
    const r = await step('dry', true);
    expect(r.dryRun).toBe(true);
    expect(r.ref).toBe(`${reg.host}/stellaops/charts/stella@${r.digest}`);
    expect(await new Registries().client(reg.host).listTags('stellaops/charts/stella')).toEqual([]);
  });

  it('pushes a Helm OCI artifact that helm pull reads back byte for byte, signed and verified', async () => {
    const r = await step('out', false);
    const dry = await step('dry2', true);
    expect(r.digest).toBe(dry.digest);
    expect(r.signature?.verified).toBe(true);
    const client = new Registries().client(reg.host);
    const manifest = JSON.parse(new TextDecoder().decode((await client.getManifest('stellaops/charts/stella', CHART_VERSION)).bytes));
    expect(manifest.config.mediaType).toBe(HELM_CONFIG_MEDIA_TYPE);
    expect(manifest.layers.map((l: { mediaType: string }) => l.mediaType)).toEqual([HELM_CHART_LAYER_MEDIA_TYPE]);
    const tags = await client.listTags('stellaops/charts/stella');
    expect(tags.includes(referrersFallbackTag(r.digest))).toBe(!reg.referrersApi);

    const pulled = join(dir, 'pulled');
    mkdirSync(pulled);
    const p = h.run(['pull', `${r.oci}`, '--version', CHART_VERSION, '--plain-http', '-d', pulled]);
    expect(p.status, p.stdout + p.stderr).toBe(0);
    expect(Buffer.compare(readFileSync(join(pulled, `stella-${CHART_VERSION}.tgz`)), readFileSync(r.package))).toBe(0);
    const byDigest = h.run(['template', 'stella', `${r.oci}@${r.digest}`, '--plain-http']);
    expect(byDigest.status, byDigest.stderr).toBe(0);

    const subject = await subjectOf(client, 'stellaops/charts/stella', r.digest, r.ref);
    expect((await verifiedAttestations(subject, COSIGN_SIGN_PREDICATE_TYPE, { trust: { publicKeyPem: key.publicKeyPem } })).length).toBe(1);
    const other = generateKeyPair('');
    expect((await verifiedAttestations(subject, COSIGN_SIGN_PREDICATE_TYPE, { trust: { publicKeyPem: loadPrivateKey(other.privateKeyPem, '', 'x').publicKeyPem } })).length).toBe(0);

    const cosign = findTool('cosign')!;
    const verify = (pub: string) =>
      spawnSync(cosign, ['verify-attestation', '--new-bundle-format', '--key', pub, '--type', COSIGN_SIGN_PREDICATE_TYPE, '--insecure-ignore-tlog=true', '--trusted-root', join(dir, 'trusted_root.json'), '--allow-insecure-registry', '--allow-http-registry', r.ref], { encoding: 'utf8', timeout: 60_000 });
    const ok = verify(join(dir, 'cosign.pub'));
    expect(ok.status, ok.stderr).toBe(0);
    writeFileSync(join(dir, 'other.pub'), loadPrivateKey(other.privateKeyPem, '', 'x').publicKeyPem);
    expect(verify(join(dir, 'other.pub')).status).not.toBe(0);

    const again = await step('again', false);
    expect(again.digest).toBe(r.digest);
    expect(again.signature?.bundleReferrer).toBe(r.signature?.bundleReferrer);
  });
});
