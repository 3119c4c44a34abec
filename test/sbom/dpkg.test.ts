import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { gzipSync } from 'node:zlib';
import * as tar from 'tar-stream';
import { afterAll, describe, expect, it } from 'vitest';
import { dep5License, readDpkgStatus, readOsPackagesFromLayer, readOsPackagesFromRootfs } from '../../ci/src/sbom/index.ts';
import { StellaError } from '../../ci/src/errors.ts';
import { BASE_PACKAGES, FIXTURES } from './fixtures.ts';
import { file, skipUnless } from '../helpers/tools.ts';

const HOST_STATUS = '/var/lib/dpkg/status';
const hostHasDpkg = !skipUnless([file(HOST_STATUS, 'the host\'s dpkg database', 'a Debian host'), 'dpkg-query'], 'dpkg: agrees with dpkg-query on this host');

describe('readDpkgStatus', () => {
  const pkgs = readDpkgStatus(readFileSync(resolve(FIXTURES, 'status'), 'utf8'), 'fixture status');

  it('reads every installed stanza and leaves out packages that are not installed', () => {
    expect(pkgs.map((p) => p.name)).toEqual(['libc6', 'libstdc++6', 'tzdata']);
  });

  it('keeps fields across continuation lines and " ." paragraph breaks', () => {
    const libc = pkgs.find((p) => p.name === 'libc6')!;
    expect(libc).toEqual({
      name: 'libc6', version: '2.36-9+deb12u14', architecture: 'amd64', source: 'glibc',
      maintainer: 'GNU Libc Maintainers <debian-glibc@lists.debian.org>', homepage: 'https://www.gnu.org/software/libc/libc.html',
    });
  });

  it('splits "Source: name (version)" and defaults the source to the package', () => {
    expect(pkgs.find((p) => p.name === 'libstdc++6')).toMatchObject({ source: 'gcc-12', version: '12.2.0-14+deb12u1' });
    expect(pkgs.find((p) => p.name === 'libstdc++6')!.sourceVersion).toBeUndefined(); // same as the binary version
    expect(pkgs.find((p) => p.name === 'tzdata')).toMatchObject({ source: 'tzdata', architecture: 'all' });
  });

  it('reads a distroless status.d file (one stanza, no Status field)', () => {
    const one = readDpkgStatus('Package: tzdata\nVersion: 2025b-0+deb12u2\nArchitecture: all\nSource: tzdata (2025b-0+deb12u1)\n');
    expect(one).toEqual([{ name: 'tzdata', version: '2025b-0+deb12u2', architecture: 'all', source: 'tzdata', sourceVersion: '2025b-0+deb12u1' }]);
  });

  it('rejects an installed stanza without Version, naming the file and line', () => {
    const text = 'Package: a\nVersion: 1\n\nPackage: broken\nStatus: install ok installed\nArchitecture: amd64\n';
    const err = (() => {
      try {
        readDpkgStatus(text, '/var/lib/dpkg/status.d/broken');
        return undefined;
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(StellaError);
    expect((err as StellaError).code).toBe('SBOM_INVALID');
    expect((err as StellaError).message).toBe('/var/lib/dpkg/status.d/broken: the stanza at line 4 (package broken) has no Version field (expected both in every installed package\'s stanza)');
  });

  it.skipIf(!hostHasDpkg)('agrees with dpkg-query on this host for the base image packages', () => {
    const host = readDpkgStatus(readFileSync(HOST_STATUS, 'utf8'), HOST_STATUS);
    for (const name of BASE_PACKAGES) {
      const [version, arch] = execFileSync('dpkg-query', ['-W', '-f=${Version} ${Architecture}', name], { encoding: 'utf8' }).split(' ');
      expect(host.find((p) => p.name === name), name).toMatchObject({ version, architecture: arch });
    }
  });
});

describe('DEP-5 licenses', () => {
  it('turns Files-paragraph licenses into one SPDX expression, with LicenseRefs where SPDX has no exact id', () => {
    const lic = dep5License(readFileSync(resolve(FIXTURES, 'copyright-dep5'), 'utf8'));
    expect(lic.expression).toBe('(GPL-2.0-or-later OR LicenseRef-Artistic) AND (LGPL-2.1-or-later AND MIT) AND LicenseRef-GPL-3-with-GCC-exception');
    expect(lic.extracted.map((e) => e.licenseId)).toEqual(['LicenseRef-Artistic', 'LicenseRef-GPL-3-with-GCC-exception']);
  });

  it('gives NOASSERTION for a copyright file that is not machine-readable', () => {
    expect(dep5License('This is the Debian prepackaged version of the GNU C Library.\n\nLicense: LGPL\n').expression).toBe('NOASSERTION');
  });

  it.skipIf(skipUnless([file('/usr/share/doc/ca-certificates/copyright', 'the host\'s ca-certificates copyright file', 'a Debian host with ca-certificates')], 'dpkg: real Debian copyright files'))('reads the real Debian copyright files of this host', () => {
    const doc = (p: string): string => readFileSync(`/usr/share/doc/${p}/copyright`, 'utf8');
    expect(dep5License(doc('ca-certificates')).expression).toBe('GPL-2.0-or-later AND MPL-2.0');
    expect(dep5License(doc('tzdata')).expression).toBe('LicenseRef-public-domain');
    expect(dep5License(doc('libc6')).expression).toBe('NOASSERTION'); // glibc's copyright is free text
  });
});

/** A distroless-style base: status.d stanzas + copyright files, one doc dir a relative symlink, one an absolute symlink. */
function baseEntries(): { path: string; content?: string; link?: string }[] {
  const status = (name: string, version: string, arch: string, source?: string): string =>
    `Package: ${name}\nVersion: ${version}\nArchitecture: ${arch}\n${source ? `Source: ${source}\n` : ''}Maintainer: Debian Maintainers <debian@lists.debian.org>\n`;
  const dep5 = (lic: string): string => `Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\nFiles: *\nCopyright: someone\nLicense: ${lic}\n`;
  return [
    { path: 'var/lib/dpkg/status.d/libc6', content: status('libc6', '2.36-9+deb12u14', 'arm64', 'glibc') },
    { path: 'var/lib/dpkg/status.d/libc6.md5sums', content: 'd41d8cd98f00b204e9800998ecf8427e  lib/x\n' },
    { path: 'var/lib/dpkg/status.d/libgcc-s1', content: status('libgcc-s1', '12.2.0-14+deb12u1', 'arm64', 'gcc-12') },
    { path: 'var/lib/dpkg/status.d/ca-certificates', content: status('ca-certificates', '20230311+deb12u1', 'all') },
    { path: 'usr/share/doc/libc6/copyright', content: 'Free text, not DEP-5.\n' },
    { path: 'usr/share/doc/gcc-12-base/copyright', content: dep5('GPL-3+') },
    { path: 'usr/share/doc/libgcc-s1', link: 'gcc-12-base' },
    // An absolute link must resolve inside the image, never to this host's /usr/share/doc.
    { path: 'usr/share/doc/ca-certificates', link: '/usr/share/doc/ca-certificates-real' },
    { path: 'usr/share/doc/ca-certificates-real/copyright', content: dep5('MPL-2.0') },
  ];
}

const EXPECTED_BASE = [
  { name: 'ca-certificates', version: '20230311+deb12u1', architecture: 'all', license: 'MPL-2.0' },
  { name: 'libc6', version: '2.36-9+deb12u14', architecture: 'arm64', license: 'NOASSERTION' },
  { name: 'libgcc-s1', version: '12.2.0-14+deb12u1', architecture: 'arm64', license: 'GPL-3.0-or-later' },
];

describe('OS packages of a base image', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'stella-sbom-'));
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('reads a rootfs directory: status.d, .md5sums skipped, licenses through symlinked doc dirs, never outside the root', async () => {
    const root = join(tmp, 'rootfs');
    for (const e of baseEntries()) {
      mkdirSync(join(root, e.path, '..'), { recursive: true });
      if (e.link) symlinkSync(e.link, join(root, e.path));
      else writeFileSync(join(root, e.path), e.content!);
    }
    const pkgs = await readOsPackagesFromRootfs(root);
    expect(pkgs.map((p) => ({ name: p.name, version: p.version, architecture: p.architecture, license: p.license?.expression }))).toEqual(EXPECTED_BASE);
  });

  it('reads the same packages from a gzip layer tar', async () => {
    const pack = tar.pack();
    for (const e of baseEntries()) {
      if (e.link) pack.entry({ name: `./${e.path}`, type: 'symlink', linkname: e.link });
      else pack.entry({ name: `./${e.path}`, type: 'file', mode: 0o644 }, e.content!);
    }
    pack.entry({ name: './nodejs/bin/node', type: 'file' }, 'not really node');
    pack.finalize();
    const chunks: Buffer[] = [];
    for await (const c of pack) chunks.push(c as Buffer);
    const pkgs = await readOsPackagesFromLayer(gzipSync(Buffer.concat(chunks)), 'base layer');
    expect(pkgs.map((p) => ({ name: p.name, version: p.version, architecture: p.architecture, license: p.license?.expression }))).toEqual(EXPECTED_BASE);
  });

  it('fails clearly on a layer that is not a tar', async () => {
    await expect(readOsPackagesFromLayer(gzipSync(Buffer.from('definitely not a tar archive'.repeat(40))), 'base layer sha256:…')).rejects.toThrow(/base layer sha256:…: cannot read the layer as a tar archive/);
  });
});
