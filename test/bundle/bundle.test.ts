/**
 * The air-gap bundle end to end against real registries: a release of small but complete
 * images (two platforms each, the real SBOM/sign/provenance steps) in a distribution 2.8
 * registry; the bundle made twice (byte-identical); verified by our verifier, by cosign
 * verify-blob offline, by openssl and by the shipped verify.sh; tampered copies refused;
 * loaded into distribution 2.8 (tag fallback) and the referrers-API registry with every digest
 * and attestation kept and re-verified from there; a killed load resumed without pushing
 * anything twice; the shipped load.sh (oras); relocation of compose and chart; differential
 * bundles; and refusal of images that do not verify.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listTree, writeArchive } from '../../ci/src/bundle/archive.ts';
import { createBundle, type CreatedBundle, type SupportImageLock } from '../../ci/src/bundle/create.ts';
import { BundlePath, validateImagesLock } from '../../ci/src/bundle/format.ts';
import { loadBundle } from '../../ci/src/bundle/load.ts';
import { verifyBundle } from '../../ci/src/bundle/verify.ts';
import type { BuildDocument } from '../../ci/src/build/document.ts';
import { catalog } from '../../ci/src/catalog/index.ts';
import { Registries, signingWithKey } from '../../ci/src/release/context.ts';
import { provenanceStep } from '../../ci/src/release/provenance.ts';
import { sbomStep } from '../../ci/src/release/sbom.ts';
import { signStep } from '../../ci/src/release/signatures.ts';
import { verifyImage } from '../../ci/src/release/verify.ts';
import { RegistryClient } from '../../ci/src/registry/index.ts';
import { SLSA_PROVENANCE_V1 } from '../../ci/src/provenance/index.ts';
import { emptyTrustedRoot, generateKeyPair, loadPrivateKey } from '../../ci/src/sign/index.ts';
import { runNode } from '../helpers/cli.ts';
import { startRegistryOfKind, type TestRegistry } from '../helpers/registry.ts';
import { findTool, skipUnless, tool } from '../helpers/tools.ts';
import { COMMIT, SOURCE_DATE_EPOCH, filterReferrers, pushSyntheticImage } from '../release/fixture.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const VERSION = 'v1.4.0-rc.1';
const NS = 'stellaops';
const skip = skipUnless([tool('docker-registry'), tool('cosign'), tool('oras'), tool('helm'), tool('openssl')], 'air-gap bundle tests');

const work = mkdtempSync(join(tmpdir(), 'stella-bundle-test-'));
const io = { progress: (l: string) => void l, source: ROOT };
const regs: TestRegistry[] = [];
let source: TestRegistry;
let key: ReturnType<typeof loadPrivateKey>;
let publicKeyPem: string;
let images: BuildDocument;
let lock: SupportImageLock;
let registries: Registries;
let first: CreatedBundle;
let second: CreatedBundle;

async function registry(kind: 'distribution' | 'referrers'): Promise<TestRegistry> {
  const r = await startRegistryOfKind(kind);
  regs.push(r);
  return r;
}

/** The real attaching steps over `doc`. */
async function attest(doc: BuildDocument): Promise<void> {
  const signing = signingWithKey(key);
  await sbomStep({ images: doc, registries, signing, sourceDateEpoch: SOURCE_DATE_EPOCH, toolVersion: 'test' }, io);
  await signStep({ images: doc, registries, signing }, io);
  await provenanceStep(
    {
      images: doc,
      registries,
      signing,
      version: VERSION,
      source: { repository: 'git+https://github.com/stellaops/stella', commit: COMMIT },
      sourceDateEpoch: SOURCE_DATE_EPOCH,
      baseImage: { uri: 'registry.example.com/stellaops/stella-base-node', digest: `sha256:${'4d'.repeat(32)}` },
      builderId: 'https://stellaops.io/builders/stella-release/test',
      invocation: { startedOn: new Date(SOURCE_DATE_EPOCH * 1000), finishedOn: new Date(SOURCE_DATE_EPOCH * 1000) },
      toolVersions: { node: process.version },
    },
    io,
  );
}

/** Support images as synthetic images under support-<name>, in the lock's shape. */
async function pushSupport(host: string, salt = ''): Promise<SupportImageLock> {
  const entries: Record<string, { repository: string; digest: string; version: string; platforms: Record<string, string> }> = {};
  const doc: BuildDocument['images'][number][] = [];
  for (const s of catalog.support) {
    // A small image of the same shape under <ns>/support-<name>/…: the bundle takes whatever the lock names.
    const b = await pushSyntheticImage(host, `${NS}/support-${s.name}`, 'api', `${s.name}${salt}`);
    entries[s.name] = { repository: b.repository, digest: b.digest, version: '1.0', platforms: b.platforms };
    doc.push(b);
  }
  await attest({ images: doc });
  return { images: entries } as unknown as SupportImageLock;
}

function create(outDir: string, extra: Partial<Parameters<typeof createBundle>[0]> = {}): Promise<CreatedBundle> {
  return createBundle({ source: ROOT, version: VERSION, images, supportLock: lock, registries, signing: signingWithKey(key), sourceDateEpoch: SOURCE_DATE_EPOCH, commit: COMMIT, outDir, ...extra });
}

const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

/** Extracts a bundle (verified), lets `mutate` change the tree, and writes it again with the same writer. */
async function tampered(name: string, mutate: (dir: string) => void): Promise<string> {
  const dir = join(work, `t-${name}`);
  await verifyBundle({ file: first.file, publicKeyPem, dest: dir, keep: true });
  mutate(dir);
  const out = join(work, `${name}.tar.zst`);
  await writeArchive(await listTree(dir), out, { mtime: SOURCE_DATE_EPOCH, level: 3 });
  return out;
}

beforeAll(async () => {
  if (skip) return;
  const kp = generateKeyPair('');
  key = loadPrivateKey(kp.privateKeyPem, '');
  publicKeyPem = kp.publicKeyPem;
  writeFileSync(join(work, 'cosign.pub'), publicKeyPem);
  source = await registry('distribution');
  registries = new Registries();
  const built = [];
  for (const s of catalog.services) built.push(await pushSyntheticImage(source.host, NS, s.name));
  images = { images: built };
  await attest(images);
  lock = await pushSupport(source.host);
  first = await create(join(work, 'one'));
  second = await create(join(work, 'two'));
}, 600_000);

afterAll(async () => {
  for (const r of regs) await r.stop();
  rmSync(work, { recursive: true, force: true });
});

describe.skipIf(skip)('bundle: create', () => {
  it('holds every image (services and support) with their referrers and legacy signatures, blobs once', async () => {
    expect(first.images).toBe(catalog.services.length + catalog.support.length);
    const v = await verifyBundle({ file: first.file, publicKeyPem, dest: join(work, 'inspect'), keep: true });
    const l = validateImagesLock(JSON.parse(readFileSync(join(v.dir, BundlePath.imagesLock), 'utf8')));
    for (const im of l.images) {
      const subjects = new Set(im.referrers.map((r) => r.subject));
      expect(subjects.has(im.digest), `${im.name}: referrers of the index`).toBe(true);
      for (const d of Object.values(im.platforms)) expect(subjects.has(d), `${im.name}: referrers of ${d}`).toBe(true);
      expect(Object.keys(im.platforms).sort()).toEqual(['linux/amd64', 'linux/arm64']);
      expect(Object.keys(im.legacy)).toEqual([`sha256-${im.digest.slice(7)}.sig`]);
      // signature, SBOM attestation and plain SBOM of the index, provenance: at least these.
      expect(im.referrers.filter((r) => r.subject === im.digest).length).toBeGreaterThanOrEqual(4);
    }
    // Shared layers (the base layer is in every image) are stored once.
    const blobLines = readFileSync(join(v.dir, BundlePath.checksums), 'utf8').split('\n').filter((x) => x.includes('images/blobs/sha256/'));
    expect(blobLines.length).toBe(v.manifest.blobs.count);
    // compose and chart are pinned to these digests.
    const compose = readFileSync(join(v.dir, 'compose/docker-compose.yml'), 'utf8');
    for (const im of l.images) expect(compose).toContain(`${im.repository}@${im.digest}`);
    // Every image line is pinned (the tls profile's nginx comes from the lock when it pins one).
    const unpinned = compose.split('\n').filter((x) => /^\s*image:/.test(x) && x.includes(`sha256:${'0'.repeat(64)}`) && !(x.includes('STELLA_NGINX_IMAGE') && !l.images.some((im) => im.name === 'nginx')));
    expect(unpinned).toEqual([]);
    expect(existsSync(join(v.dir, 'helm', 'stella-1.4.0-rc.1.tgz'))).toBe(true);
    expect(existsSync(join(v.dir, 'docs/install/compose-quickstart.md'))).toBe(true);
    expect(readFileSync(join(v.dir, BundlePath.publicKey), 'utf8')).toBe(publicKeyPem);
  });

  it('is byte-identical when made twice from the same inputs', () => {
    expect(second.sha256).toBe(first.sha256);
    expect(sha(second.file)).toBe(sha(first.file));
    expect(readFileSync(`${first.file}.sha256`, 'utf8')).toBe(`${first.sha256}  stella-bundle-${VERSION}.tar.zst\n`);
  });

  it('refuses to bundle an image that does not verify at its source, naming it and the missing piece', async () => {
    const api = images.images.find((i) => i.service === 'api')!;
    const client = new RegistryClient({ registry: source.host });
    const repo = api.repository.slice(api.repository.indexOf('/') + 1);
    const saved = (await client.getManifest(repo, `sha256-${api.digest.slice(7)}`)).bytes;
    try {
      await filterReferrers(client, repo, api.digest, (d) => (d.annotations?.['dev.sigstore.bundle.predicateType'] ?? '') !== SLSA_PROVENANCE_V1);
      await expect(create(join(work, 'refused'))).rejects.toThrow(/do not verify where they are.*stella-api@sha256:[0-9a-f]+: provenance: none verifies/s);
      // Without the source check it bundles; the load then refuses it from the target (below).
      const unchecked = await create(join(work, 'unchecked'), { verifySource: false });
      const target = await registry('distribution');
      await expect(loadBundle({ file: unchecked.file, to: target.host, registries, publicKeyPem, out: join(work, 'unchecked-out') })).rejects.toThrow(
        new RegExp(`do not verify from the target registry:\\n  - ${target.host}/stellaops/stella-api@sha256:[0-9a-f]+: provenance: none verifies`),
      );
    } finally {
      await client.putManifest(repo, `sha256-${api.digest.slice(7)}`, saved, 'application/vnd.oci.image.index.v1+json');
    }
  });
});

describe.skipIf(skip)('bundle: verify offline', () => {
  it('our verifier accepts it with the given key, and says when it only had the bundled one', async () => {
    const given = await verifyBundle({ file: first.file, publicKeyPem });
    expect(given.key).toBe('given');
    expect(given.checked.join('\n')).toMatch(/files match checksums\.txt, none unlisted/);
    const bundled = await verifyBundle({ file: first.file });
    expect(bundled.key).toBe('bundled');
    expect(bundled.checked[0]).toMatch(/integrity only; pass --public-key for origin/);
  });

  it('cosign verify-blob, openssl and the shipped verify.sh accept it with no network', async () => {
    const dir = join(work, 'offline');
    await verifyBundle({ file: first.file, publicKeyPem, dest: dir, keep: true });
    const root = join(work, 'trusted_root.json');
    writeFileSync(root, JSON.stringify(emptyTrustedRoot()));
    const cosign = spawnSync(findTool('cosign')!, ['verify-blob', '--key', join(work, 'cosign.pub'), '--bundle', join(dir, BundlePath.signature), '--new-bundle-format', '--insecure-ignore-tlog=true', '--trusted-root', join(dir, BundlePath.trustedRoot), join(dir, BundlePath.checksums)], { encoding: 'utf8', env: { ...process.env, HTTPS_PROXY: 'http://127.0.0.1:9', HTTP_PROXY: 'http://127.0.0.1:9' } });
    expect(cosign.status, cosign.stderr).toBe(0);
    expect(cosign.stderr).toMatch(/Verified OK/);
    const openssl = spawnSync('openssl', ['dgst', '-sha256', '-verify', join(work, 'cosign.pub'), '-signature', join(dir, BundlePath.checksumsSignature), join(dir, BundlePath.checksums)], { encoding: 'utf8' });
    expect(openssl.stdout.trim()).toBe('Verified OK');
    const sh = spawnSync('bash', [join(dir, 'verify.sh'), '--public-key', join(work, 'cosign.pub')], { encoding: 'utf8' });
    expect(sh.status, sh.stderr).toBe(0);
    expect(sh.stdout).toMatch(/OK: \d+ files match checksums\.txt; none added, none missing/);
    // The shipped script fails closed too.
    appendFileSync(join(dir, 'compose/docker-compose.yml'), '# edited\n');
    const bad = spawnSync('bash', [join(dir, 'verify.sh'), '--public-key', join(work, 'cosign.pub')], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(bad.stdout).toMatch(/compose\/docker-compose\.yml: FAILED/);
    expect(bad.stderr).toMatch(/verify\.sh: FAILED: a file differs from checksums\.txt/);
  });

  const otherKey = generateKeyPair('');
  const refusals: { what: string; make: () => Promise<string>; key?: () => string; message: RegExp }[] = [
    { what: 'a changed byte in a blob', make: () => tampered('byte', (d) => {
      const lockDoc = JSON.parse(readFileSync(join(d, BundlePath.imagesLock), 'utf8'));
      const layer = join(d, 'images/blobs/sha256', lockDoc.images[0].platforms['linux/amd64'].slice(7));
      const b = readFileSync(layer);
      b[10] ^= 1;
      writeFileSync(layer, b);
    }), message: /images\/blobs\/sha256\/[0-9a-f]{64}: sha256 is [0-9a-f]{64}, checksums\.txt says [0-9a-f]{64} \(changed after signing\)/ },
    { what: 'an extra file', make: () => tampered('extra', (d) => writeFileSync(join(d, 'compose', 'evil.yml'), 'x: 1\n')), message: /1 file\(s\) in the archive are not in checksums\.txt \(added after signing\): compose\/evil\.yml/ },
    { what: 'a missing file', make: () => tampered('missing', (d) => rmSync(join(d, 'docs/install/compose-quickstart.md'))), message: /1 file\(s\) listed in checksums\.txt are not in the archive: docs\/install\/compose-quickstart\.md/ },
    { what: 'a changed checksums.txt', make: () => tampered('sums', (d) => appendFileSync(join(d, BundlePath.checksums), `${'0'.repeat(64)}  x\n`)), message: /the file was changed after signing/ },
    { what: 'no signature', make: () => tampered('unsigned', (d) => rmSync(join(d, BundlePath.signature))), message: /bundle\.sig is missing: the bundle is not signed/ },
    { what: 'another key', make: async () => first.file, key: () => otherKey.publicKeyPem, message: /signed by another key|does not verify with key/ },
    { what: 'a truncated archive', make: async () => {
      const f = join(work, 'truncated.tar.zst');
      const b = readFileSync(first.file);
      writeFileSync(f, b.subarray(0, Math.floor(b.length * 0.6)));
      return f;
    }, message: /the archive is truncated or corrupt/ },
  ];
  for (const r of refusals) {
    it(`fails closed on ${r.what}, with a clear message`, async () => {
      const file = await r.make();
      await expect(verifyBundle({ file, publicKeyPem: r.key ? r.key() : publicKeyPem })).rejects.toThrow(r.message);
    });
  }
});

describe.skipIf(skip)('bundle: load', () => {
  for (const kind of ['distribution', 'referrers'] as const) {
    it(`loads into ${kind === 'referrers' ? 'the referrers-API registry' : 'distribution 2.8 (tag fallback)'} keeping every byte, and re-verifies from there`, async () => {
      const target = await registry(kind);
      const out = join(work, `load-${kind}`);
      const r = await loadBundle({ file: first.file, to: target.host, registries, publicKeyPem, out });
      expect(r.images.length).toBe(first.images);
      const client = new RegistryClient({ registry: target.host });
      const src = new RegistryClient({ registry: source.host });
      const l = validateImagesLock(JSON.parse(readFileSync(join(out, BundlePath.imagesLock), 'utf8')));
      for (const im of l.images) {
        expect(im.repository.startsWith(`${target.host}/`)).toBe(true);
        const repo = im.repository.slice(im.repository.indexOf('/') + 1);
        for (const d of [im.digest, ...Object.values(im.platforms), ...im.referrers.map((x) => x.digest)]) {
          expect(Buffer.from((await client.getManifest(repo, d)).bytes).equals(Buffer.from((await src.getManifest(repo, d)).bytes)), `${repo}@${d}`).toBe(true);
        }
        const listed = new Set((await client.referrers(repo, im.digest)).map((x) => x.digest));
        for (const x of im.referrers.filter((y) => y.subject === im.digest)) expect(listed.has(x.digest)).toBe(true);
        expect(await client.resolve(repo, VERSION)).toBe(im.digest);
        expect(await client.resolve(repo, Object.keys(im.legacy)[0]!)).toBe(Object.values(im.legacy)[0]);
        // The fallback tag exists only where there is no referrers API.
        expect((await client.listTags(repo)).includes(`sha256-${im.digest.slice(7)}`)).toBe(kind === 'distribution');
      }
      for (const loaded of r.images) expect(loaded.referrers.mode).toBe(kind === 'referrers' ? 'api' : 'fallback');
      // Relocated install files: the same digests under the target host.
      const compose = readFileSync(join(out, 'compose/docker-compose.yml'), 'utf8');
      for (const im of l.images) expect(compose).toContain(`${im.repository}@${im.digest}`);
      expect(compose).not.toContain(`${source.host}/`);
      // A second load pushes nothing.
      const again = await loadBundle({ file: first.file, to: target.host, registries, publicKeyPem, out });
      expect(again.images.reduce((n, i) => n + i.blobs.pushed + i.blobs.mounted + i.manifests.pushed + i.referrers.attached, 0)).toBe(0);
    });
  }

  it('renders the relocated chart with every image from the target and the same digests', async () => {
    const out = join(work, 'load-distribution');
    const l = validateImagesLock(JSON.parse(readFileSync(join(out, BundlePath.imagesLock), 'utf8')));
    const host = l.images[0]!.repository.split('/')[0]!;
    const r = spawnSync(findTool('helm')!, ['template', 'stella', join(out, 'helm/stella-1.4.0-rc.1.tgz'), '-f', join(out, 'helm/values-airgap.yaml'), '-f', join(out, 'helm/values-relocated.yaml')], { encoding: 'utf8', env: { ...process.env, HELM_CACHE_HOME: join(work, 'h'), HELM_CONFIG_HOME: join(work, 'h'), HELM_DATA_HOME: join(work, 'h') } });
    expect(r.status, r.stderr).toBe(0);
    const refs = [...r.stdout.matchAll(/image: "?([^"\s]+)"?/g)].map((m) => m[1]!);
    expect(refs.length).toBeGreaterThan(5);
    for (const ref of refs) {
      expect(ref.startsWith(`${host}/`), ref).toBe(true);
      expect(l.images.some((im) => ref.endsWith(`@${im.digest}`)), ref).toBe(true);
    }
  });

  it('finishes a load that was killed midway, pushing nothing twice', async () => {
    const target = await registry('distribution');
    const cli = ['ci/src/cli.ts', 'bundle-load', '--bundle', first.file, '--to', target.host, '--public-key', join(work, 'cosign.pub'), '--out', join(work, 'killed-out')];
    const env = { ...process.env };
    const killed = await runNode(cli, env, { watch: (err, child) => {
      if ((err.match(/blobs \d+ pushed/g) ?? []).length >= 3) child.kill('SIGKILL');
    } });
    expect(killed.status).not.toBe(0);
    // What is missing at the target now, by blob and manifest.
    const l = validateImagesLock(JSON.parse(readFileSync(join(work, 'inspect', BundlePath.imagesLock), 'utf8')));
    const client = new RegistryClient({ registry: target.host });
    let missingBlobs = 0;
    const seenPerRepo = new Set<string>();
    for (const im of l.images) {
      const repo = im.repository.slice(im.repository.indexOf('/') + 1);
      const layout = join(work, 'inspect', 'images', 'blobs', 'sha256');
      for (const d of [im.digest, ...Object.values(im.platforms), ...im.referrers.map((x) => x.digest), ...Object.values(im.legacy)]) {
        const m = JSON.parse(readFileSync(join(layout, d.slice(7)), 'utf8'));
        for (const b of [m.config, ...(m.layers ?? [])].filter(Boolean)) {
          if (seenPerRepo.has(`${repo} ${b.digest}`)) continue;
          seenPerRepo.add(`${repo} ${b.digest}`);
          if (!(await client.hasBlob(repo, b.digest))) missingBlobs++;
        }
      }
    }
    expect(missingBlobs).toBeGreaterThan(0);
    const resumed = await runNode(cli, env);
    expect(resumed.status, resumed.stderr.slice(-2000)).toBe(0);
    const report = JSON.parse(resumed.stdout) as { images: { blobs: { pushed: number; mounted: number } }[] };
    // Each missing blob is sent (or mounted from a repository this run already filled) exactly once.
    expect(report.images.reduce((n, i) => n + i.blobs.pushed + i.blobs.mounted, 0)).toBe(missingBlobs);
  });

  it('the shipped load.sh (oras) loads it with every referrer, as our verification then confirms', async () => {
    const target = await registry('distribution');
    const dir = join(work, 'sh');
    await verifyBundle({ file: first.file, publicKeyPem, dest: dir, keep: true });
    // Asynchronously: the registry this process started logs to a pipe this process must keep reading.
    const r = await new Promise<{ status: number | null; stdout: string; stderr: string }>((res) => {
      const c = spawn('bash', [join(dir, 'load.sh'), '--to', target.host, '--plain-http', '--public-key', join(work, 'cosign.pub')], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      c.stdout.on('data', (d) => (stdout += String(d)));
      c.stderr.on('data', (d) => (stderr += String(d)));
      const t = setTimeout(() => c.kill('SIGKILL'), 600_000);
      c.on('exit', (status) => {
        clearTimeout(t);
        res({ status, stdout, stderr });
      });
    });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`OK: ${first.images} images with their referrers`));
    const l = validateImagesLock(JSON.parse(readFileSync(join(dir, BundlePath.imagesLock), 'utf8')));
    for (const im of l.images) {
      const repository = `${target.host}${im.repository.slice(im.repository.indexOf('/'))}`;
      const v = await verifyImage({ images: { images: [] }, registries, trust: { publicKeyPem }, requireNode: true, requireLegacy: true }, { service: im.name, repository, digest: im.digest, platforms: im.platforms });
      expect(v.problems).toEqual([]);
    }
  });
});

describe.skipIf(skip)('bundle: differential', () => {
  it('carries only what changed, loads onto the previous release, and is refused without it', async () => {
    // Release 2: the api image changed; everything else is the same.
    const api2 = await pushSyntheticImage(source.host, NS, 'api', 'api v2');
    const images2: BuildDocument = { images: images.images.map((i) => (i.service === 'api' ? api2 : i)) };
    await attest({ images: [api2] });
    const full2 = await createBundle({ source: ROOT, version: 'v1.4.0', images: images2, supportLock: lock, registries, signing: signingWithKey(key), sourceDateEpoch: SOURCE_DATE_EPOCH, outDir: join(work, 'v2') });
    const diff = await createBundle({ source: ROOT, version: 'v1.4.0', images: images2, supportLock: lock, registries, signing: signingWithKey(key), sourceDateEpoch: SOURCE_DATE_EPOCH, outDir: join(work, 'v2d'), since: first.file });
    expect(diff.file).toMatch(/stella-bundle-v1\.4\.0-since-v1\.4\.0-rc\.1\.tar\.zst$/);
    expect(diff.omitted).toBeGreaterThan(0);
    expect(diff.bytes).toBeLessThan(full2.bytes);
    const v = await verifyBundle({ file: diff.file, publicKeyPem });
    expect(v.manifest.base?.version).toBe(VERSION);

    const empty = await registry('referrers');
    await expect(loadBundle({ file: diff.file, to: empty.host, registries, publicKeyPem, out: join(work, 'diff-empty') })).rejects.toThrow(
      new RegExp(`is differential \\(since ${VERSION.replaceAll('.', '\\.')}\\) and ${empty.host} lacks \\d+ of the \\d+ blobs .*load stella-bundle-${VERSION.replaceAll('.', '\\.')}\\.tar\\.zst into ${empty.host} first.*nothing was pushed`),
    );
    expect(await new RegistryClient({ registry: empty.host }).hasManifest('stellaops/stella-api', api2.digest)).toBe(false);

    const base = await registry('referrers');
    await loadBundle({ file: first.file, to: base.host, registries, publicKeyPem, out: join(work, 'diff-base') });
    const r = await loadBundle({ file: diff.file, to: base.host, registries, publicKeyPem, out: join(work, 'diff-on-base') });
    expect(r.version).toBe('v1.4.0');
    expect(await new RegistryClient({ registry: base.host }).resolve('stellaops/stella-api', 'v1.4.0')).toBe(api2.digest);
    cpSync(diff.file, join(work, 'keep-diff.tar.zst'));
  });
});

describe.skipIf(skip)('bundle: what travels', () => {
  it('names every platform image with its config and layers in platforms.txt, for docker load without a registry', async () => {
    const v = await verifyBundle({ file: first.file, publicKeyPem, dest: join(work, 'platforms'), keep: true });
    const l = validateImagesLock(JSON.parse(readFileSync(join(v.dir, BundlePath.imagesLock), 'utf8')));
    const lines = readFileSync(join(v.dir, BundlePath.platformPlan), 'utf8').split('\n').filter((x) => x && !x.startsWith('#'));
    expect(lines).toHaveLength(l.images.reduce((n, im) => n + Object.keys(im.platforms).length, 0));
    for (const line of lines) {
      const [name, path, platform, manifest, config, ...layers] = line.split(' ');
      const im = l.images.find((x) => x.name === name)!;
      expect(im.repository.endsWith(`/${path}`)).toBe(true);
      expect(im.platforms[platform!]).toBe(manifest);
      const m = JSON.parse(readFileSync(join(v.dir, 'images/blobs/sha256', manifest!.slice(7)), 'utf8')) as { config: { digest: string }; layers: { digest: string }[] };
      expect(config).toBe(m.config.digest);
      expect(layers).toEqual(m.layers.map((x) => x.digest));
      for (const d of [config!, ...layers]) expect(existsSync(join(v.dir, 'images/blobs/sha256', d.slice(7)))).toBe(true);
    }
  });

  it('leaves out a signature made with another key (a registry signed again), and still verifies', async () => {
    const api = images.images.find((i) => i.service === 'api')!;
    const other = loadPrivateKey(generateKeyPair('').privateKeyPem, '');
    await signStep({ images: { images: [api] }, registries, signing: signingWithKey(other) }, io);
    const client = new RegistryClient({ registry: source.host });
    const repo = api.repository.slice(api.repository.indexOf('/') + 1);
    const onSource = await client.referrers(repo, api.digest);
    const before = validateImagesLock(JSON.parse(readFileSync(join((await verifyBundle({ file: first.file, publicKeyPem, dest: join(work, 'before-foreign'), keep: true })).dir, BundlePath.imagesLock), 'utf8')));
    const carried = before.images.find((i) => i.name === 'api')!.referrers.filter((r) => r.subject === api.digest).map((r) => r.digest);
    const foreign = onSource.map((r) => r.digest).filter((d) => !carried.includes(d));
    expect(foreign.length).toBeGreaterThanOrEqual(1);

    // (The legacy .sig manifest now holds both signatures, as cosign's format does: it travels whole.)
    const again = await create(join(work, 'foreign'));
    const after = validateImagesLock(JSON.parse(readFileSync(join((await verifyBundle({ file: again.file, publicKeyPem, dest: join(work, 'after-foreign'), keep: true })).dir, BundlePath.imagesLock), 'utf8')));
    const now = after.images.find((i) => i.name === 'api')!.referrers.map((r) => r.digest);
    for (const d of foreign) expect(now).not.toContain(d);
    expect([...now].sort()).toEqual(before.images.find((i) => i.name === 'api')!.referrers.map((r) => r.digest).sort());
  });
});
