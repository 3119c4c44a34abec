/**
 * The whole release through the CLI, as a release manager runs it, against a
 * throwaway registry behind an authenticating proxy (canary credentials):
 * twice for reproducibility and idempotence, then killed with SIGKILL at
 * several points and re-run, checking after every kill that no release tag
 * points to an image lacking its signature, SBOM or provenance.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRegistry, type TestRegistry } from '../helpers/registry.ts';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.ts';
import { runNode, type CliRun } from '../helpers/cli.ts';
import { Registries } from '../../ci/src/release/context.ts';
import { verifyImage } from '../../ci/src/release/verify.ts';
import type { ReleaseRecord } from '../../ci/src/release/pipeline.ts';
import { catalog } from '../../ci/src/catalog/index.ts';
import { cosign, show } from '../sign/helpers.ts';
import { skipUnless } from '../helpers/tools.ts';
import { generateKeyPair } from '../../ci/src/sign/index.ts';
import { mkdirSync, writeFileSync } from 'node:fs';

const PASSWORD = 'canary-registry-pw-7c41aa';
/** The full release covers all 11 services; the SIGKILL runs use two, to stay quick. */
const KILL_SERVICES = 'api,conseiller';
const VERSION = 'v0.9.0-rc.1';

let reg: TestRegistry;
let proxy: FaultProxy;
let out: string;
let base: string;
let reference: ReleaseRecord;
const transcript: string[] = [];

const env = { ...process.env, STELLA_TEST_REGISTRY_PASSWORD: PASSWORD };
const cliArgs = (fn: string, ...args: string[]) => ['ci/src/cli.ts', fn, ...args, '--registry-username', 'release-bot', '--registry-password', 'env:STELLA_TEST_REGISTRY_PASSWORD'];

async function runWith(argv: string[], environment: NodeJS.ProcessEnv): Promise<CliRun> {
  const r = await runNode(argv, environment);
  transcript.push(r.stdout, r.stderr);
  return r;
}

const run = (fn: string, ...args: string[]) => runWith(cliArgs(fn, ...args), env);

function releaseArgs(dir: string, namespace = 'stellaops', services?: string): string[] {
  return ['--version', VERSION, ...(services ? ['--services', services] : []), '--registry', proxy.host, '--namespace', namespace, '--base', base, '--out', dir];
}

function registries(): Registries {
  return new Registries({ credentials: { username: 'release-bot', password: PASSWORD } });
}

/** Every release tag in the registry points to a fully attested image. Returns how many tags were checked. */
async function checkTaggedImagesComplete(publicKeyPem: string, namespace = 'stellaops', services: readonly string[] = catalog.services.map((s) => s.name)): Promise<number> {
  const r = registries();
  const client = r.client(proxy.host);
  let checked = 0;
  for (const service of services) {
    const repo = `${namespace}/stella-${service}`;
    const tags = await client.listTags(repo).catch(() => [] as string[]);
    for (const tag of tags.filter((t) => /^v\d/.test(t))) {
      const digest = (await client.resolve(repo, tag))!;
      const index = JSON.parse(new TextDecoder().decode((await client.getManifest(repo, digest)).bytes)) as { manifests: { digest: string; platform: { os: string; architecture: string } }[] };
      const platforms = Object.fromEntries(index.manifests.map((m) => [`${m.platform.os}/${m.platform.architecture}`, m.digest]));
      const v = await verifyImage({ images: { images: [] }, registries: r, trust: { publicKeyPem } }, { service, repository: `${proxy.host}/${repo}`, digest, platforms });
      expect(v.problems, `${repo}:${tag} → ${digest}`).toEqual([]);
      checked++;
    }
  }
  return checked;
}

/** Starts a release and SIGKILLs it when a progress line matches `when`; resolves once it has died. */
async function releaseKilledAt(dir: string, namespace: string, when: RegExp): Promise<{ killed: boolean; stderr: string }> {
  let killed = false;
  const r = await runNode(cliArgs('release', ...releaseArgs(dir, namespace, KILL_SERVICES)), env, {
    timeoutMs: 300_000,
    watch: (stderr, child) => {
      if (!killed && when.test(stderr)) {
        killed = true;
        child.kill('SIGKILL');
      }
    },
  });
  transcript.push(r.stderr);
  return { killed, stderr: r.stderr };
}

beforeAll(async () => {
  reg = await startRegistry();
  proxy = await startFaultProxy({ upstream: reg.host, auth: { mode: 'bearer', username: 'release-bot', password: PASSWORD, token: 'canary-token-0d93e1' } });
  out = mkdtempSync(join(tmpdir(), 'stella-release-'));
  const b = await run('build-base', '--registry', proxy.host, '--oci-layout', join(out, 'base-layout'));
  expect(b.status, b.stderr).toBe(0);
  base = JSON.parse(b.stdout).ref;
}, 600_000);

afterAll(async () => {
  await proxy?.stop();
  await reg?.stop();
});

describe('stella-release release (end to end)', () => {
  it('releases signed, attested, tagged images and records everything in the output directory', async () => {
    const r = await run('release', ...releaseArgs(join(out, 'dist')));
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    reference = JSON.parse(r.stdout) as ReleaseRecord;
    expect(reference.images.map((i) => i.service)).toEqual(catalog.services.map((s) => s.name));
    expect(reference.tags.map((t) => t.action)).toEqual(reference.images.map(() => 'create'));
    for (const f of ['build.json', 'release.json', 'keys/cosign.pub', 'keys/trusted_root.json', 'sbom/api/api-index.spdx.json', 'sbom/conseiller/conseiller-linux-arm64.spdx.json', 'provenance/api/api.provenance.json', 'docs/release/image-catalog.md']) {
      expect(existsSync(join(out, 'dist', f)), f).toBe(true);
    }
    const catalogDoc = readFileSync(join(out, 'dist/docs/release/image-catalog.md'), 'utf8');
    for (const i of reference.images) expect(catalogDoc).toContain(i.digest);
    expect(proxy.tokenCalls.granted).toBeGreaterThan(0);
    const publicKey = readFileSync(join(out, 'dist/keys/cosign.pub'), 'utf8');
    expect(await checkTaggedImagesComplete(publicKey)).toBe(11);
  }, 600_000);

  it('a second run is reproducible and idempotent: same digests, nothing pushed, tags unchanged', async () => {
    proxy.reset();
    const r = await run('release', ...releaseArgs(join(out, 'dist')));
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const again = JSON.parse(r.stdout) as ReleaseRecord;
    expect(again.images).toEqual(reference.images);
    expect(again.tags.map((t) => t.action)).toEqual(again.images.map(() => 'unchanged'));
    const writes = proxy.requests.filter((q) => q.method === 'PUT' || q.method === 'POST' || q.method === 'PATCH');
    expect(writes.map((q) => `${q.method} ${q.path}`)).toEqual([]);
  }, 600_000);

  it('refuses a version outside the tag scheme before any work', async () => {
    proxy.reset();
    const r = await run('release', '--version', 'v1.4.0-beta.1', '--services', KILL_SERVICES, '--registry', proxy.host, '--base', base, '--out', join(out, 'refused'));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/INVALID_VERSION.*only release candidates/);
    expect(proxy.requests).toEqual([]);
  });

  it('killed (SIGKILL) at several points and re-run, converges to the same digests; no tag ever points to unattested content', async () => {
    const dir = join(out, 'killed');
    // Fresh repositories (another namespace) on the same registry, with a new key: every tag
    // that appears there must only ever point to complete content.
    const ns = 'interrupted';
    const points = [/── build/, /SBOM with \d+ packages attached/, /── sign/, /provenance attached/, /verified \(\d+ checks\)/, /:v0\.9\.0-rc\.1 → /];
    const publicKeyOf = () => readFileSync(join(dir, 'keys/cosign.pub'), 'utf8');
    let kills = 0;
    for (const when of points) {
      const k = await releaseKilledAt(dir, ns, when);
      if (k.killed) kills++;
      if (existsSync(join(dir, 'keys/cosign.pub'))) await checkTaggedImagesComplete(publicKeyOf(), ns, KILL_SERVICES.split(','));
    }
    expect(kills).toBeGreaterThanOrEqual(4);
    const r = await run('release', ...releaseArgs(dir, ns, KILL_SERVICES));
    expect(r.status, r.stderr.slice(-3000)).toBe(0);
    const final = JSON.parse(r.stdout) as ReleaseRecord;
    const same = reference.images.filter((i) => KILL_SERVICES.split(',').includes(i.service));
    expect(final.images.map((i) => [i.service, i.digest, i.platforms])).toEqual(same.map((i) => [i.service, i.digest, i.platforms]));
    expect(await checkTaggedImagesComplete(publicKeyOf(), ns, KILL_SERVICES.split(','))).toBe(2);
  }, 900_000);

  it.skipIf(skipUnless(['cosign'], 'release: cosign accepts every released image'))('cosign 2.5, with only the public key and no network, accepts every released image and refuses another key', () => {
    const pub = join(out, 'dist/keys/cosign.pub');
    const otherPub = join(out, 'other.pub');
    writeFileSync(otherPub, generateKeyPair('').publicKeyPem);
    const flags = ['--insecure-ignore-tlog=true', '--allow-insecure-registry', '--allow-http-registry'];
    const trustedRoot = ['--trusted-root', join(out, 'dist/keys/trusted_root.json')];
    for (const image of reference.images) {
      // The registry behind the proxy: same content, no credentials for cosign to need.
      const ref = `${reg.host}/stellaops/stella-${image.service}@${image.digest}`;
      for (const key of [pub, otherPub]) {
        const expectOk = key === pub;
        const legacy = cosign(['verify', '--key', key, ...flags, ref]);
        expect(legacy.status === 0, `${image.service} legacy with ${expectOk ? 'release' : 'other'} key\n${show(legacy)}`).toBe(expectOk);
        for (const type of ['https://sigstore.dev/cosign/sign/v1', 'spdxjson', 'slsaprovenance1']) {
          const att = cosign(['verify-attestation', '--new-bundle-format', '--key', key, '--type', type, ...trustedRoot, ...flags, ref]);
          expect(att.status === 0, `${image.service} ${type} with ${expectOk ? 'release' : 'other'} key\n${show(att)}`).toBe(expectOk);
        }
      }
    }
  }, 600_000);

  it('takes registry credentials from a Docker config file: --docker-config, or $DOCKER_CONFIG by default', async () => {
    const dir = join(out, 'docker-config');
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ auths: { [proxy.host]: { auth: Buffer.from(`release-bot:${PASSWORD}`).toString('base64') } } }));
    const verify = ['ci/src/cli.ts', 'verify', '--images', join(out, 'dist/build.json'), '--public-key', join(out, 'dist/keys/cosign.pub')];
    const byFlag = await runWith([...verify, '--docker-config', join(dir, 'config.json')], { ...process.env, DOCKER_CONFIG: join(out, 'nowhere') });
    expect(byFlag.status, byFlag.stderr.slice(-2000)).toBe(0);
    const byEnv = await runWith(verify, { ...process.env, DOCKER_CONFIG: dir });
    expect(byEnv.status, byEnv.stderr.slice(-2000)).toBe(0);
    const anonymous = await runWith(verify, { ...process.env, DOCKER_CONFIG: join(out, 'nowhere') });
    expect(anonymous.status).toBe(1);
    expect(anonymous.stderr).toMatch(/REGISTRY_AUTH|401|unauthori[sz]ed/i);
  });

  it('wrong registry credentials fail clearly, without the password', async () => {
    const r = await runWith(['ci/src/cli.ts', 'verify', '--images', join(out, 'dist/build.json'), '--public-key', join(out, 'dist/keys/cosign.pub'), '--registry-username', 'release-bot', '--registry-password', 'env:WRONG'], { ...process.env, WRONG: `${PASSWORD}-wrong` });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/REGISTRY_AUTH|401|unauthori[sz]ed/i);
  });

  it('the canary registry password appears nowhere: output, logs, SBOMs, provenance, records', () => {
    const walk = (d: string): string[] => readdirSync(d).flatMap((f) => (statSync(join(d, f)).isDirectory() ? (f === 'base-layout' || f === 'app' ? [] : walk(join(d, f))) : [join(d, f)]));
    for (const t of transcript) expect(t).not.toContain(PASSWORD);
    for (const f of walk(out)) expect(readFileSync(f, 'latin1').includes(PASSWORD), f).toBe(false);
  });
});
