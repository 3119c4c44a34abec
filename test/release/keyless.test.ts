/**
 * Keyless signing through the CLI, as a CI job with an OIDC token would run it:
 * `sbom`, `sign` and `provenance` with `--identity-token` against Fulcio and
 * Rekor (here the loopback mocks of test/helpers/mock-sigstore.ts: no Sigstore
 * service is reachable from this host), then `verify` trusting the identity and
 * the trusted root instead of a key. The `release` job of
 * .github/workflows/release.yml is where the public-good instance is used.
 */
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { EMAIL, ISSUER, OPENSSL, identityToken, startMockSigstore, type MockSigstore } from '../helpers/mock-sigstore.ts';
import { writeBuildDocument } from '../../ci/src/build/document.ts';
import { pushSyntheticImage } from './fixture.ts';
import { runNode, type CliRun } from '../helpers/cli.ts';
import { skipUnless, tool } from '../helpers/tools.ts';

let reg: TestRegistry;
let mock: MockSigstore;
let dir: string;
let token: string;
const outputs: string[] = [];

/** Async: the mocks and the registry answer from this process. */
async function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliRun> {
  const r = await runNode(['ci/src/cli.ts', ...args], { ...process.env, SIGSTORE_ID_TOKEN: token, ...env }, { timeoutMs: 180_000 });
  outputs.push(r.stdout, r.stderr);
  return r;
}

const keyless = () => ['--identity-token', 'env:SIGSTORE_ID_TOKEN', '--fulcio-url', mock.fulcioURL, '--rekor-url', mock.rekorURL];
const identity = (who = EMAIL) => ['--certificate-identity', who, '--certificate-oidc-issuer', ISSUER, '--trusted-root', join(dir, 'trusted_root.json'), '--insecure-ignore-sct'];

describe.skipIf(skipUnless([tool('openssl')], `keyless signing through the CLI (the mock CA needs ${OPENSSL})`))('keyless signing through the CLI (mock Fulcio and Rekor)', () => {
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'stella-keyless-cli-'));
    const oidc = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    mock = await startMockSigstore(dir, oidc.publicKey);
    token = identityToken(oidc.privateKey, { email: EMAIL, email_verified: true, sub: 'release-bot' });
    writeFileSync(join(dir, 'trusted_root.json'), JSON.stringify(mock.trustedRoot));
    reg = await startRegistry();
    await writeBuildDocument(join(dir, 'build.json'), { images: [await pushSyntheticImage(reg.host, 'stellaops', 'api', 'keyless')] });
  }, 120_000);

  afterAll(async () => {
    await mock?.close();
    await reg?.stop();
  });

  it('sbom, sign and provenance sign with an identity token; verify trusts the identity, not a key', async () => {
    const images = ['--images', join(dir, 'build.json')];
    for (const step of [['sbom', ...images], ['sign', ...images], ['provenance', ...images, '--version', 'v1.4.0-rc.1', '--base', `registry.example.com/base@sha256:${'4d'.repeat(32)}`]]) {
      const r = await cli([...step, ...keyless()]);
      expect(r.status, `${step[0]}: ${r.stderr.slice(-1500)}`).toBe(0);
    }
    expect(mock.fulcioRequests.length).toBeGreaterThanOrEqual(3);
    expect(mock.rekorEntries.length).toBeGreaterThanOrEqual(3);
    const ok = await cli(['verify', ...images, ...identity()]);
    expect(ok.status, ok.stderr.slice(-2000)).toBe(0);
    expect(JSON.parse(ok.stdout).verified[0].checked).toEqual(expect.arrayContaining(['signature (bundle)', 'provenance (SLSA v1)']));
  }, 300_000);

  it('verify refuses another identity', async () => {
    const r = await cli(['verify', '--images', join(dir, 'build.json'), ...identity('someone-else@example.com')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/VERIFY_FAILED[\s\S]*signature: none verifies/);
  });

  it('refuses contradictory or incomplete trust and signer options before any work', async () => {
    const both = await cli(['sign', '--images', join(dir, 'build.json'), '--key', 'env:SIGSTORE_ID_TOKEN', ...keyless()]);
    expect(both.stderr).toMatch(/give --key or --identity-token, not both/);
    const partial = await cli(['verify', '--images', join(dir, 'build.json'), '--certificate-identity', EMAIL]);
    expect(partial.stderr).toMatch(/needs all of --certificate-identity, --certificate-oidc-issuer and --trusted-root/);
    const none = await cli(['verify', '--images', join(dir, 'build.json')]);
    expect(none.stderr).toMatch(/verification needs --public-key/);
  });

  it('the identity token appears in no output', () => {
    for (const o of outputs) for (const part of token.split('.')) expect(o).not.toContain(part);
  });
});
