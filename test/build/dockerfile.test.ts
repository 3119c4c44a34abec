/**
 * The Dockerfiles and the restricted interpreter: the committed files match the
 * catalog; supported instructions give the config BuildKit would give; anything
 * that would execute or needs more than one stage is refused naming the line.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, mkdirSync, writeFileSync, chmodSync, symlinkSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { catalog } from '../../ci/src/catalog/index.ts';
import { dockerfileDrift, renderDockerfile, dockerfilePath } from '../../ci/src/build/dockerfiles.ts';
import {
  parseDockerfile,
  resolveFrom,
  interpretDockerfile,
  finishConfig,
  copyLayerOptions,
  processWord,
  parseDuration,
  type ImageConfig,
} from '../../ci/src/build/dockerfile.ts';
import { createLayer, listLayer } from '../../ci/src/oci/layer.ts';
import { StellaError } from '../../ci/src/errors.ts';

const ROOT = resolve(import.meta.dirname, '../..');

const baseConfig: ImageConfig = {
  architecture: 'arm64',
  os: 'linux',
  config: { Env: ['PATH=/usr/local/bin:/usr/bin:/bin', 'NODE_ENV=development', 'SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt'], Entrypoint: ['/nodejs/bin/node'], Cmd: ['--version'], User: '0', Labels: { 'org.opencontainers.image.title': 'base', 'base.only': 'yes' } },
  rootfs: { type: 'layers', diff_ids: ['sha256:' + 'a'.repeat(64)] },
  history: [{ created: '1970-01-01T00:00:00Z', created_by: 'base' }],
};

function refusal(text: string): StellaError {
  try {
    parseDockerfile('docker/x.Dockerfile', text);
  } catch (e) {
    expect(e).toBeInstanceOf(StellaError);
    expect((e as StellaError).code).toBe('DOCKERFILE_UNSUPPORTED');
    return e as StellaError;
  }
  throw new Error(`expected a refusal for:\n${text}`);
}

describe('generated Dockerfiles', () => {
  it('match the catalog (regenerate with node ci/src/build/dockerfiles.ts)', () => {
    expect(dockerfileDrift(ROOT)).toEqual([]);
  });

  it('one per service, no RUN, upstream default base, exec-form healthcheck, non-root', () => {
    expect(catalog.services).toHaveLength(11);
    for (const s of catalog.services) {
      const text = readFileSync(join(ROOT, dockerfilePath(s.name)), 'utf8');
      expect(text.split('\n')[0]).toMatch(/^# Generated from ci\/src\/catalog by ci\/src\/build\/dockerfiles\.ts — do not edit; regenerate with /);
      expect(text).not.toMatch(/^RUN /m);
      expect(text).toContain('ARG BASE_IMAGE=gcr.io/distroless/nodejs24-debian12:nonroot\nFROM ${BASE_IMAGE}\n');
      expect(text).toContain(`COPY --chown=0:0 dist/app/${s.name}/ /app/`);
      expect(text).toContain('USER 65532:65532');
      expect(text).toContain('CMD ["/nodejs/bin/node", "/app/healthcheck.js"]');
      // And it is within the interpreter's subset.
      parseDockerfile(dockerfilePath(s.name), text);
    }
  });

  it('a drifted file is reported', () => {
    const dir = mkdtempSync(join(tmpdir(), 'stella-drift-'));
    mkdirSync(join(dir, 'docker'));
    for (const s of catalog.services) writeFileSync(join(dir, dockerfilePath(s.name)), renderDockerfile(s));
    expect(dockerfileDrift(dir)).toEqual([]);
    writeFileSync(join(dir, dockerfilePath('policy')), renderDockerfile(catalog.services.find((s) => s.name === 'policy')!) + 'EXPOSE 9999\n');
    expect(dockerfileDrift(dir)).toEqual(['docker/stella-policy.Dockerfile']);
  });
});

describe('Dockerfile interpreter', () => {
  const conseiller = readFileSync(join(ROOT, 'docker/stella-conseiller.Dockerfile'), 'utf8');
  const buildArgs = { VERSION: 'v1.4.0', GIT_COMMIT: '0123456789abcdef0123456789abcdef01234567', BUILD_DATE: '2023-11-14T22:13:20Z' };

  it('expands FROM with the upstream default or --build-arg BASE_IMAGE', () => {
    const p = parseDockerfile('docker/stella-conseiller.Dockerfile', conseiller);
    expect(resolveFrom(p)).toBe('gcr.io/distroless/nodejs24-debian12:nonroot');
    expect(resolveFrom(p, { buildArgs: { BASE_IMAGE: '127.0.0.1:5000/base@sha256:' + 'b'.repeat(64) } })).toBe('127.0.0.1:5000/base@sha256:' + 'b'.repeat(64));
  });

  it('applies the generated Dockerfile to a base config as BuildKit does', () => {
    const p = parseDockerfile('docker/stella-conseiller.Dockerfile', conseiller);
    const step = interpretDockerfile(p, { buildArgs, baseConfig, platform: { os: 'linux', architecture: 'arm64' } });
    expect(step.copies).toEqual([{ line: expect.any(Number), instruction: 'COPY --chown=0:0 dist/app/conseiller/ /app/', sources: ['dist/app/conseiller/'], dest: '/app/', uid: 0, gid: 0 }]);
    const cfg = finishConfig(step, ['sha256:' + 'c'.repeat(64)], 1700000000);
    const c = cfg.config!;
    expect(c.Env).toEqual(['PATH=/usr/local/bin:/usr/bin:/bin', 'NODE_ENV=production', 'SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt', 'STELLA_DISABLE_MERGE=true']);
    expect(c.User).toBe('65532:65532');
    expect(c.WorkingDir).toBe('/app');
    expect(c.ExposedPorts).toEqual({ '8084/tcp': {} });
    expect(c.Entrypoint).toEqual(['/nodejs/bin/node']);
    expect(c.Cmd).toEqual(['/app/main.js']);
    expect(c.StopSignal).toBe('SIGTERM');
    expect(c.Healthcheck).toEqual({ Test: ['CMD', '/nodejs/bin/node', '/app/healthcheck.js'], Interval: 10e9, Timeout: 3e9, StartPeriod: 20e9, Retries: 3 });
    expect(c.Labels).toMatchObject({
      'base.only': 'yes',
      'org.opencontainers.image.title': 'stella-conseiller',
      'org.opencontainers.image.version': 'v1.4.0',
      'org.opencontainers.image.revision': buildArgs.GIT_COMMIT,
      'org.opencontainers.image.created': '2023-11-14T22:13:20Z',
      'org.opencontainers.image.licenses': 'Apache-2.0',
      'io.stellaops.service': 'conseiller',
      'io.stellaops.ports': '8084/tcp',
    });
    expect(Object.keys(c.Labels!)).toEqual(Object.keys(c.Labels!).sort());
    expect(cfg.created).toBe('2023-11-14T22:13:20Z');
    expect(cfg.architecture).toBe('arm64');
    expect(cfg.rootfs.diff_ids).toEqual(['sha256:' + 'a'.repeat(64), 'sha256:' + 'c'.repeat(64)]);
    const added = cfg.history!.slice(1);
    expect(added.every((h) => h.created === '2023-11-14T22:13:20Z')).toBe(true);
    expect(added.filter((h) => !h.empty_layer).map((h) => h.created_by)).toEqual(['COPY --chown=0:0 dist/app/conseiller/ /app/']);
    // Nothing host-dependent, no expanded build args in history.
    expect(JSON.stringify(cfg.history)).not.toContain(buildArgs.GIT_COMMIT);
    expect(JSON.stringify(cfg)).not.toMatch(/\/tmp\/|\/root\/|\/home\//);
  });

  it('follows BuildKit for ENTRYPOINT/CMD, ENV in place, relative WORKDIR and COPY, quoting', () => {
    const text = [
      'ARG BASE=scratch',
      'FROM $BASE',
      'ARG NAME=world',
      'ARG EMPTY',
      'ENV GREETING="hello ${NAME}" LITERAL=\'$NAME\' DEF=${EMPTY:-fallback} ALT=${NAME:+set}',
      'ENV PATH=/app/bin:$PATH',
      'WORKDIR /srv',
      'WORKDIR sub',
      'LABEL "quoted key"="a \\"b\\"" plain=$NAME',
      'EXPOSE 80 443/udp',
      'ENTRYPOINT ["/bin/app"]',
      'COPY ["a.txt", "rel/"]',
      'HEALTHCHECK NONE',
      'STOPSIGNAL SIGINT',
    ].join('\n');
    const p = parseDockerfile('t.Dockerfile', text);
    expect(resolveFrom(p)).toBe('scratch');
    const step = interpretDockerfile(p, { baseConfig });
    const c = step.config.config!;
    expect(c.Env).toContain('GREETING=hello world');
    expect(c.Env).toContain('LITERAL=$NAME');
    expect(c.Env).toContain('DEF=fallback');
    expect(c.Env).toContain('ALT=set');
    expect(c.Env![0]).toBe('PATH=/app/bin:/usr/local/bin:/usr/bin:/bin');
    expect(c.WorkingDir).toBe('/srv/sub');
    expect(c.Labels!['quoted key']).toBe('a "b"');
    expect(c.Labels!.plain).toBe('world');
    expect(c.ExposedPorts).toEqual({ '443/udp': {}, '80/tcp': {} });
    expect(c.Entrypoint).toEqual(['/bin/app']);
    expect(c.Cmd).toBeNull(); // ENTRYPOINT resets the inherited CMD
    expect(c.Healthcheck).toEqual({ Test: ['NONE'] });
    expect(c.StopSignal).toBe('SIGINT');
    expect(step.copies[0]!.dest).toBe('/srv/sub/rel/');
  });

  it('processes words like the BuildKit shell lexer', () => {
    const v = new Map([['A', 'x'], ['E', '']]);
    expect(processWord('"$A"\'$A\'\\$A${A}', v)).toBe("x$A$Ax");
    expect(processWord('${E:-d} ${E-d} ${U-d} ${E:+p} ${E+p}', v)).toBe('d  d  p');
    expect(processWord('${E-d}', v)).toBe('');
    expect(processWord('${U-d}', v)).toBe('d');
    expect(processWord('${E+p}', v)).toBe('p');
    expect(parseDuration('1m30s', 'x')).toBe(90e9);
    expect(parseDuration('500ms', 'x')).toBe(5e8);
    expect(() => parseDuration('10', 'x')).toThrow(/not a duration/);
  });

  it.each([
    ['RUN', 'FROM base\nCOPY a /a\nRUN npm ci\n', 3, /docker\/x\.Dockerfile:3: RUN is not supported/],
    ['ADD', 'FROM base\nADD https://example.com/x /x\n', 2, /:2: ADD is not supported/],
    ['multi-stage', 'FROM node AS build\nCOPY . .\nFROM base\n', 3, /:3: a second FROM \(multi-stage build\)/],
    ['COPY --from', 'FROM base\nCOPY --from=build /a /a\n', 2, /:2: COPY --from is not supported/],
    ['shell-form CMD', 'FROM base\nCMD node /app/main.js\n', 2, /:2: shell-form CMD/],
    ['shell-form ENTRYPOINT', 'FROM base\nENTRYPOINT node\n', 2, /:2: shell-form ENTRYPOINT/],
    ['shell-form HEALTHCHECK', 'FROM base\nHEALTHCHECK CMD curl -f http://localhost/\n', 2, /:2: shell-form HEALTHCHECK/],
    ['VOLUME', 'FROM base\nVOLUME /data\n', 2, /:2: VOLUME is not supported/],
    ['SHELL', 'FROM base\nSHELL ["/bin/bash", "-c"]\n', 2, /:2: SHELL is not supported/],
    ['FROM --platform', 'FROM --platform=$BUILDPLATFORM base\n', 1, /:1: FROM --platform is not supported/],
    ['COPY --chmod', 'FROM base\nCOPY --chmod=755 a /a\n', 2, /:2: COPY --chmod is not supported/],
    ['instruction before FROM', 'ENV A=b\nFROM base\n', 1, /:1: ENV: only ARG may come before FROM/],
  ])('refuses %s naming the file and line', (_name, text, _line, re) => {
    expect(refusal(text).message).toMatch(re);
  });

  it('refuses a missing FROM and wildcard or escaping COPY sources', () => {
    expect(refusal('ARG A=1\n').message).toMatch(/no FROM/);
    const p1 = parseDockerfile('x', 'FROM b\nCOPY dist/*.js /app/\n');
    expect(() => interpretDockerfile(p1)).toThrow(/x:2: COPY source "dist\/\*\.js" with a wildcard is not supported/);
    const p2 = parseDockerfile('x', 'FROM b\nCOPY ../secret /app/\n');
    expect(() => interpretDockerfile(p2)).toThrow(/may not leave the build context/);
  });

  it('copies with BuildKit semantics: directory contents, files into a dir, --chown on everything', async () => {
    const ctx = mkdtempSync(join(tmpdir(), 'stella-ctx-'));
    mkdirSync(join(ctx, 'dist/app/x/lib'), { recursive: true });
    writeFileSync(join(ctx, 'dist/app/x/main.js'), 'main');
    writeFileSync(join(ctx, 'dist/app/x/lib/run.sh'), '#!/bin/sh');
    chmodSync(join(ctx, 'dist/app/x/lib/run.sh'), 0o750);
    symlinkSync('main.js', join(ctx, 'dist/app/x/current'));
    writeFileSync(join(ctx, 'one.txt'), '1');
    const p = parseDockerfile('x', 'FROM b\nCOPY --chown=10:20 dist/app/x/ /app/\nCOPY one.txt /etc/stella/\nCOPY one.txt /renamed.txt\n');
    const step = interpretDockerfile(p);
    const listings = [];
    for (const op of step.copies) listings.push((await listLayer((await createLayer(await copyLayerOptions(ctx, op, 1700000000))).blob)).map((e) => `${e.type} ${e.name} ${e.mode.toString(8)} ${e.uid}:${e.gid} ${e.mtime}${e.linkname ? ` -> ${e.linkname}` : ''}`));
    expect(listings[0]).toEqual([
      'directory app/ 755 10:20 1700000000',
      'symlink app/current 777 10:20 1700000000 -> main.js',
      'directory app/lib/ 755 10:20 1700000000',
      'file app/lib/run.sh 755 10:20 1700000000',
      'file app/main.js 644 10:20 1700000000',
    ]);
    expect(listings[1]).toEqual(['directory etc/ 755 0:0 1700000000', 'directory etc/stella/ 755 0:0 1700000000', 'file etc/stella/one.txt 644 0:0 1700000000']);
    expect(listings[2]).toEqual(['file renamed.txt 644 0:0 1700000000']);
    await expect(copyLayerOptions(ctx, { ...step.copies[0]!, sources: ['dist/app/missing/'] }, 0, 'x')).rejects.toThrow(/x:2: COPY source "dist\/app\/missing\/" not found in the build context/);
  });
});
