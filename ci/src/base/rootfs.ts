/**
 * What every rootfs assembled from unpacked Debian packages needs, for the Node base and the
 * support images alike: pruning the docs down to their copyright files, and the CA bundle as
 * update-ca-certificates would write it (no maintainer scripts run here).
 */
import { lstat, readdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { StellaError } from '../errors.ts';

export const CA_BUNDLE_PATH = '/etc/ssl/certs/ca-certificates.crt';

export async function pathExists(p: string): Promise<boolean> {
  return lstat(p).then(
    () => true,
    () => false,
  );
}

/** Keeps only `copyright` in each /usr/share/doc/<pkg>/ (symlinked doc dirs stay as links). */
export async function pruneDocs(root: string): Promise<void> {
  const docs = join(root, 'usr/share/doc');
  if (!(await pathExists(docs))) return;
  for (const pkg of await readdir(docs)) {
    const dir = join(docs, pkg);
    if (!(await lstat(dir)).isDirectory()) continue;
    for (const f of await readdir(dir)) if (f !== 'copyright') await rm(join(dir, f), { recursive: true, force: true });
  }
}

async function listFiles(dir: string, suffix: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const n of await readdir(d)) {
      const p = join(d, n);
      const st = await lstat(p);
      if (st.isDirectory()) await walk(p);
      else if (n.endsWith(suffix)) out.push(p);
    }
  };
  if (await pathExists(dir)) await walk(dir);
  return out;
}

/**
 * The ca-certificates bundle: every .crt under usr/share/ca-certificates, sorted by path,
 * concatenated. `what` names the rootfs in the error when there is none.
 */
export async function caBundle(root: string, what: string): Promise<Buffer> {
  const base = join(root, 'usr/share/ca-certificates');
  const files = (await listFiles(base, '.crt')).map((p) => p.slice(base.length + 1)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  if (files.length === 0) throw new StellaError('BUILD_FAILED', `${what}: no certificates under /usr/share/ca-certificates (expected the ca-certificates package)`);
  const parts: Buffer[] = [];
  for (const f of files) {
    let pem = await readFile(join(base, f));
    if (pem.length > 0 && pem[pem.length - 1] !== 0x0a) pem = Buffer.concat([pem, Buffer.from('\n')]);
    parts.push(pem);
  }
  return Buffer.concat(parts);
}
