/**
 * Small fixtures for the build tests: a tiny two-platform base (an OCI layout
 * with an amd64+arm64 index; no Node in it, so nothing runs from it) and a
 * build context with `dist/app/<service>/` as the JavaScript build writes it.
 * The real base (ci/src/base) and the real JavaScript build (services/build.ts)
 * are used by the run test.
 */
import { chmodSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLayer } from '../../ci/src/oci/layer.ts';
import { OciLayout } from '../../ci/src/oci/layout.ts';
import { MediaType, descriptorOf, jsonBytes, type Descriptor } from '../../ci/src/oci/types.ts';

export const FIXTURE_EPOCH = 1700000000;

/** Writes a distroless-shaped fixture base into `dir`; returns the index digest. */
export async function makeFixtureBase(dir: string): Promise<string> {
  const layout = await OciLayout.init(dir);
  const entries: Descriptor[] = [];
  for (const architecture of ['amd64', 'arm64']) {
    const layer = await createLayer({
      sourceDateEpoch: 0,
      entries: [
        { type: 'file', path: '/etc/passwd', content: 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' },
        { type: 'file', path: '/etc/group', content: 'root:x:0:\nnonroot:x:65532:\n' },
        { type: 'file', path: '/etc/fixture-arch', content: `${architecture}\n` },
        { type: 'dir', path: '/tmp', mode: 0o1777 },
        { type: 'dir', path: '/home/nonroot', uid: 65532, gid: 65532, mode: 0o700 },
      ],
    });
    await layout.writeBlob(layer.blob, layer.digest);
    const config = {
      architecture,
      os: 'linux',
      config: {
        User: '65532',
        Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/nodejs/bin', 'SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt'],
        Entrypoint: ['/nodejs/bin/node'],
        WorkingDir: '/home/nonroot',
        Labels: { 'org.opencontainers.image.title': 'fixture-base' },
      },
      rootfs: { type: 'layers', diff_ids: [layer.diffId] },
      history: [{ created: '1970-01-01T00:00:00Z', created_by: 'fixture base' }],
    };
    const cfg = await layout.writeJson(MediaType.ociConfig, config);
    const man = await layout.writeManifest({ schemaVersion: 2, mediaType: MediaType.ociManifest, config: cfg, layers: [{ mediaType: layer.mediaType, digest: layer.digest, size: layer.size }] });
    entries.push({ ...man, platform: { architecture, os: 'linux' } });
  }
  const index = { schemaVersion: 2 as const, mediaType: MediaType.ociIndex, manifests: entries };
  const desc = descriptorOf(MediaType.ociIndex, jsonBytes(index));
  await layout.writeIndex(index);
  await layout.setIndexEntry(desc, 'base');
  return desc.digest;
}

/** Writes `dist/app/<service>/` bundles (main.js, healthcheck.js, build-info.json, a subdirectory) under `context`. */
export function makeFixtureContext(context: string, services: readonly string[], version = 'v0.0.0-test', gitCommit = '0123456789abcdef0123456789abcdef01234567'): void {
  for (const s of services) {
    const dir = join(context, 'dist/app', s);
    mkdirSync(join(dir, 'assets'), { recursive: true });
    writeFileSync(join(dir, 'main.js'), `console.log(${JSON.stringify(s)});\n`);
    writeFileSync(join(dir, 'healthcheck.js'), 'process.exit(0);\n');
    writeFileSync(join(dir, 'build-info.json'), JSON.stringify({ service: s, version, gitCommit }) + '\n');
    writeFileSync(join(dir, 'assets', 'seed.json'), '{"seed":true}\n');
    // Modes as a 022 umask gives them, whatever the host's umask (BuildKit copies modes from the context).
    for (const f of ['main.js', 'healthcheck.js', 'build-info.json', 'assets/seed.json']) chmodSync(join(dir, f), 0o644);
    for (const d of ['', 'assets']) chmodSync(join(dir, d), 0o755);
  }
}
