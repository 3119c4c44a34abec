/**
 * Installed Debian packages, read the way vulnerability scanners read them: from
 * `/var/lib/dpkg/status` (a full system) or `/var/lib/dpkg/status.d/<package>`
 * (distroless-style images, one stanza per file, `.md5sums` files beside them),
 * with the license taken from `/usr/share/doc/<package>/copyright` when that file is
 * machine-readable (DEP-5).
 */
import { lstat, readFile, readdir, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { Readable } from 'node:stream';
import { readTar } from '../oci/tar.ts';
import { StellaError } from '../errors.ts';
import { parseControlParagraphs } from './control.ts';
import { dep5License } from './license.ts';
import { byCodeUnit } from './spdx.ts';
import type { OsPackage } from './types.ts';

export const DPKG_STATUS = 'var/lib/dpkg/status';
export const DPKG_STATUS_D = 'var/lib/dpkg/status.d';
/** Larger files are not metadata we want; they are skipped rather than buffered. */
const MAX_METADATA_BYTES = 32 * 1024 * 1024;
const MAX_SYMLINK_HOPS = 16;

/**
 * The installed packages of a dpkg status file or of one status.d file. Stanzas whose
 * `Status` says the package is not installed (removed, config-files only, half-installed)
 * are left out; a stanza of an installed package without `Package` or `Version` is an
 * error naming `source` and the line.
 */
export function readDpkgStatus(text: string, source = 'dpkg status'): OsPackage[] {
  const out: OsPackage[] = [];
  for (const p of parseControlParagraphs(text)) {
    const f = p.fields;
    const status = f.get('status');
    if (status !== undefined && status.split(/\s+/)[2] !== 'installed') continue;
    const name = f.get('package');
    const version = f.get('version');
    if (!name || !version) {
      const missing = [!name && 'Package', !version && 'Version'].filter(Boolean).join(' and ');
      throw new StellaError('SBOM_INVALID', `${source}: the stanza at line ${p.line}${name ? ` (package ${name})` : ''} has no ${missing} field (expected both in every installed package's stanza)`);
    }
    const src = /^(\S+)(?:\s+\((\S+)\))?$/.exec(f.get('source') ?? '');
    const sourceName = src?.[1] ?? name;
    const sourceVersion = src?.[2] && src[2] !== version ? src[2] : undefined;
    const architecture = f.get('architecture') || undefined;
    const maintainer = f.get('maintainer') || undefined;
    const homepage = f.get('homepage') || undefined;
    out.push({
      name,
      version,
      ...(architecture ? { architecture } : {}),
      source: sourceName,
      ...(sourceVersion ? { sourceVersion } : {}),
      ...(maintainer ? { maintainer } : {}),
      ...(homepage ? { homepage } : {}),
    });
  }
  return out;
}

/** A read-only view of a file tree: a rootfs directory or the entries of a layer tar. */
interface TreeView {
  /** `file` with content, `symlink` with target, `dir`, or undefined when absent. */
  entry(path: string): Promise<{ kind: 'file'; data: Uint8Array } | { kind: 'symlink'; target: string } | { kind: 'dir' } | undefined>;
  list(dir: string): Promise<string[]>;
}

/** Clean a path to root-relative form; `..` stops at the root (chroot semantics), so nothing escapes the tree. */
function clean(p: string): string {
  return posix.normalize(`/${p}`).replace(/^\/+/, '').replace(/\/+$/, '');
}

/** Resolves symlinks inside the tree, component by component, never leaving it. */
async function resolveInTree(view: TreeView, path: string): Promise<string | undefined> {
  let parts = clean(path).split('/').filter(Boolean);
  let done: string[] = [];
  let hops = 0;
  while (parts.length > 0) {
    const next = [...done, parts[0]!].join('/');
    const e = await view.entry(next);
    if (e?.kind === 'symlink') {
      if (++hops > MAX_SYMLINK_HOPS) return undefined;
      const target = e.target.startsWith('/') ? e.target : posix.join(done.join('/'), e.target);
      parts = [...clean(target).split('/').filter(Boolean), ...parts.slice(1)];
      done = [];
      continue;
    }
    if (!e) return undefined;
    done.push(parts[0]!);
    parts = parts.slice(1);
  }
  return done.join('/');
}

/** A regular file's text, its path resolved inside the tree first (so no read follows a link out of it). */
async function readTreeText(view: TreeView, path: string): Promise<string | undefined> {
  const real = await resolveInTree(view, path);
  const e = real === undefined ? undefined : await view.entry(real);
  return e?.kind === 'file' ? new TextDecoder().decode(e.data) : undefined;
}

async function readPackagesFromView(view: TreeView, what: string): Promise<OsPackage[]> {
  const sources: { name: string; text: string }[] = [];
  const status = await readTreeText(view, DPKG_STATUS);
  if (status !== undefined) sources.push({ name: `${what}: /${DPKG_STATUS}`, text: status });
  for (const f of (await view.list(DPKG_STATUS_D)).sort(byCodeUnit)) {
    if (f.endsWith('.md5sums') || f.startsWith('.')) continue;
    const text = await readTreeText(view, `${DPKG_STATUS_D}/${f}`);
    if (text !== undefined) sources.push({ name: `${what}: /${DPKG_STATUS_D}/${f}`, text });
  }
  const byKey = new Map<string, OsPackage>();
  for (const s of sources) {
    for (const p of readDpkgStatus(s.text, s.name)) {
      const key = `${p.name}:${p.architecture ?? ''}`;
      const prev = byKey.get(key);
      if (prev && prev.version !== p.version) {
        throw new StellaError('SBOM_INVALID', `${s.name}: package ${key} is listed twice with different versions (${prev.version} and ${p.version}); expected one installed version`);
      }
      byKey.set(key, p);
    }
  }
  const out: OsPackage[] = [];
  for (const p of byKey.values()) {
    const copyright = await readTreeText(view, `usr/share/doc/${p.name}/copyright`);
    const license = copyright !== undefined ? dep5License(copyright) : { expression: 'NOASSERTION', extracted: [] };
    out.push({ ...p, license });
  }
  return out.sort((a, b) => byCodeUnit(a.name, b.name) || byCodeUnit(a.architecture ?? '', b.architecture ?? ''));
}

/** The OS packages of an unpacked root filesystem (e.g. the assembled distroless base). */
export async function readOsPackagesFromRootfs(root: string): Promise<OsPackage[]> {
  const view: TreeView = {
    async entry(path) {
      const full = join(root, clean(path));
      try {
        const st = await lstat(full);
        if (st.isSymbolicLink()) return { kind: 'symlink', target: await readlink(full) };
        if (st.isDirectory()) return { kind: 'dir' };
        if (st.isFile() && st.size <= MAX_METADATA_BYTES) return { kind: 'file', data: await readFile(full) };
        return undefined;
      } catch {
        return undefined;
      }
    },
    async list(dir) {
      const real = await resolveInTree(view, dir);
      if (real === undefined) return [];
      try {
        return await readdir(join(root, real));
      } catch {
        return [];
      }
    },
  };
  return readPackagesFromView(view, `rootfs ${root}`);
}

function wantedInLayer(path: string): boolean {
  return path === DPKG_STATUS || path.startsWith(`${DPKG_STATUS_D}/`) || /^usr\/share\/doc\/[^/]+\/copyright$/.test(path);
}

/**
 * The OS packages of a layer tar (plain or gzip), e.g. the base image's layer. Only
 * dpkg metadata, copyright files and symlinks are kept in memory; everything else is
 * streamed past.
 */
export async function readOsPackagesFromLayer(layer: Uint8Array | Readable, what = 'layer'): Promise<OsPackage[]> {
  const files = new Map<string, Uint8Array>();
  const links = new Map<string, string>();
  const dirs = new Set<string>();
  try {
    await readTar(layer, async (e) => {
      const h = e.header;
      const path = clean(h.name);
      if (e.type === 'symlink' && h.linkname) links.set(path, h.linkname);
      else if (e.type === 'directory') dirs.add(path);
      else if ((e.type === 'file' || e.type === 'contiguous-file') && wantedInLayer(path) && (h.size ?? 0) <= MAX_METADATA_BYTES) files.set(path, await e.content());
    });
  } catch (err) {
    throw new StellaError('SBOM_INVALID', `${what}: cannot read the layer as a tar archive (${err instanceof Error ? err.message : String(err)})`, { cause: err });
  }
  for (const p of [...files.keys(), ...links.keys()]) {
    const parts = p.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  const view: TreeView = {
    async entry(path) {
      const p = clean(path);
      const data = files.get(p);
      if (data) return { kind: 'file', data };
      const target = links.get(p);
      if (target !== undefined) return { kind: 'symlink', target };
      return dirs.has(p) ? { kind: 'dir' } : undefined;
    },
    async list(dir) {
      const real = await resolveInTree(view, dir);
      if (real === undefined) return [];
      const prefix = `${real}/`;
      return [...files.keys()].filter((k) => k.startsWith(prefix) && !k.slice(prefix.length).includes('/')).map((k) => k.slice(prefix.length));
    },
  };
  return readPackagesFromView(view, what);
}
