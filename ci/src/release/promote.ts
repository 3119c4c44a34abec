/**
 * promote: an rc (vX.Y.Z-rc.N) becomes the final release vX.Y.Z by tagging the rc's verified
 * digests — the bytes that were smoke-tested — not by rebuilding.
 *
 * Why digests, not a rebuild: a reproducible rebuild from the rc's commit with the final version
 * bakes a different version string into the images (/version, labels, provenance), so it gives
 * new digests: bytes no smoke test ran. Promoting digests makes "what was tested is what ships"
 * hold by construction; the images keep reporting the rc version they were built as, and the
 * final tag and the final release.json (`promotedFrom`) say which final release they are.
 *
 * What it guarantees, in order (nothing is written before all of it holds):
 *   1. the rc record is an rc, from a clean tree, and the final version is its X.Y.Z;
 *   2. the rc passed its smoke tests: at least one smoke record (release.json `smoke`, or
 *      --smoke-records files), every one passed, each for exactly the rc's digests;
 *   3. the rc's tags still point to those digests in the registry;
 *   4. every image verifies: signature (bundle and legacy), signed SBOMs, signed provenance
 *      naming the digests, under the given trust (public key or keyless identity);
 *   5. no final tag exists that points elsewhere (immutable; refused naming the digest).
 * Then the final tags are written (a re-run finds them unchanged). Nothing on the images is
 * re-signed: their signatures, SBOMs and provenance are referrers of the digests and stay valid.
 * The only new signature is over the final release page's checksums.txt (when --key or
 * --identity-token is given). The chart is not re-published here: its version is part of the
 * package, so a final chart is a new artifact (`chart --images <rc build.json> --version vX.Y.Z`,
 * same image digests; docs/release/runbook.md).
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StellaError } from '../errors.ts';
import { planTags } from '../tags/index.ts';
import type { BundleTrust, StatementSigner } from '../sign/index.ts';
import type { BuildDocument, Registries, StepIo } from './context.ts';
import type { ReleaseRecord } from './pipeline.ts';
import type { SmokeRecord } from './hooks.ts';
import { Progress } from './progress.ts';
import type { LiveOptions } from './live.ts';
import { verifyStep } from './verify.ts';
import { publishStep } from './publish.ts';
import { imageCatalogWithDigests } from './catalog-doc.ts';
import { COMPATIBILITY_FILE, compatibilityRow } from './compatibility.ts';
import { CHECKSUMS_BUNDLE, CHECKSUMS_FILE, DIGESTS_FILE, formatChecksums, formatDigests, releaseFiles, writeReleaseOutputs } from './outputs.ts';

export interface PromoteOptions {
  /** The checkout (its chart and quickstart state what the final release supports: ./compatibility.ts). */
  readonly source: string;
  /** The rc's release.json. */
  readonly rcRecord: string;
  /** vX.Y.Z; default: the rc's version without -rc.N. */
  readonly version?: string;
  /** More smoke records (files holding a SmokeRecord or an array of them). */
  readonly smokeRecords?: readonly string[];
  readonly registries: Registries;
  readonly trust: BundleTrust;
  /** Signs the final checksums.txt; without it the page's checksums.txt is written unsigned. */
  readonly signer?: StatementSigner;
  readonly out: string;
  readonly dryRun?: boolean;
  readonly json?: boolean;
  /** Progress as a live view on this terminal (as release: ./live.ts); not with `json`. */
  readonly live?: Omit<LiveOptions, 'images' | 'title'>;
}

export interface PromoteResult extends ReleaseRecord {
  readonly dryRun: boolean;
}

async function readJson(path: string, what: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8'));
  } catch (e) {
    throw new StellaError('INVALID_ARGUMENT', `${what} ${path}: ${(e as Error).message}`);
  }
}

function isSmokeRecord(x: unknown): x is SmokeRecord {
  const r = x as Partial<SmokeRecord> | null;
  return !!r && typeof r.smoke === 'string' && typeof r.passed === 'boolean' && Array.isArray(r.images) && Array.isArray(r.failures ?? []);
}

/** Every smoke record, checked against the rc's digests; throws naming what is missing or failed. */
export function checkSmoke(rc: Pick<ReleaseRecord, 'version' | 'images'>, records: readonly SmokeRecord[]): string {
  if (!records.length) {
    throw new StellaError('VERIFY_FAILED', `promote: ${rc.version} has no smoke record: it did not pass (or did not run) its smoke tests. Run them on the rc (smoke.yml, or smoke-compose / smoke-helm / smoke-airgap) and give their records with --smoke-records`);
  }
  const want = new Map(rc.images.map((i) => [i.service, i.digest]));
  const problems: string[] = [];
  for (const r of records) {
    if (!r.passed) problems.push(`${r.smoke} failed${r.failures.length ? `: ${r.failures.join('; ')}` : ''}`);
    const ran = new Map(r.images.map((i) => [i.service, i.digest]));
    for (const [service, digest] of want) {
      if (ran.get(service) !== digest) problems.push(`${r.smoke} ran ${service} ${ran.get(service) ?? '(not at all)'}, not the rc's ${digest}`);
    }
  }
  if (problems.length) throw new StellaError('VERIFY_FAILED', `promote: ${rc.version} did not pass its smoke tests for its own digests:\n  - ${problems.join('\n  - ')}`);
  return records.map((r) => r.smoke).join(', ');
}

export async function promote(o: PromoteOptions, io: StepIo): Promise<PromoteResult> {
  const p = new Progress(io, o.json === true, o.live ? { live: { ...o.live, title: 'promote' } } : {});
  const sio = p.io;
  p.expect(['read', 'smoke-record', 'rc-tags', 'verify', 'publish', 'record']);
  try {
    const { rc, final } = await p.step('read', async () => {
      const rc = (await readJson(o.rcRecord, '--rc-record')) as ReleaseRecord;
      if (!rc || typeof rc.version !== 'string' || !Array.isArray(rc.images)) throw new StellaError('INVALID_ARGUMENT', `--rc-record ${o.rcRecord} is not a release.json`);
      const rcPlan = planTags({ version: rc.version });
      if (rcPlan.channel !== 'rc') throw new StellaError('INVALID_VERSION', `promote takes a release candidate (vX.Y.Z-rc.N); ${o.rcRecord} records ${rc.version} (${rcPlan.channel})`);
      const wanted = rc.version.replace(/-rc\.\d+$/, '');
      const final = planTags({ version: o.version ?? wanted });
      if (final.channel !== 'release' || final.version !== wanted) throw new StellaError('INVALID_VERSION', `promote: ${rc.version} can only become ${wanted}, not ${final.version}`);
      if (rc.dirty) throw new StellaError('INVALID_ARGUMENT', `promote: ${rc.version} was built from a working tree with uncommitted changes (dirty: true); a final release is never promoted from it: cut a new rc from a clean commit`);
      p.setImages(rc.images.map((i) => i.service));
      return { value: { rc, final }, did: `${rc.version} (${rc.images.length} images, ${rc.gitCommit.slice(0, 12)}) → ${final.version}` };
    });

    const smoke = await p.step('smoke-record', async () => {
      const records: SmokeRecord[] = [...(rc.smoke ?? [])];
      for (const f of o.smokeRecords ?? []) {
        const x = await readJson(f, '--smoke-records');
        for (const r of Array.isArray(x) ? x : [x]) {
          if (!isSmokeRecord(r)) throw new StellaError('INVALID_ARGUMENT', `--smoke-records ${f}: not a smoke record ({smoke, passed, failures, images:[{service, digest}]})`);
          records.push(r);
        }
      }
      return { value: records, did: `passed: ${checkSmoke(rc, records)}` };
    });

    const images: BuildDocument = { images: rc.images.map((i) => ({ service: i.service, repository: i.repository, digest: i.digest, platforms: { ...i.platforms } })) };
    await p.step('rc-tags', async () => {
      for (const i of images.images) {
        const { client, repo } = o.registries.forRepository(i.repository);
        const at = await client.resolve(repo, rc.version);
        if (at !== i.digest) throw new StellaError('VERIFY_FAILED', `promote: ${i.repository}:${rc.version} points to ${at ?? 'nothing'}, not the recorded ${i.digest}`);
      }
      return { value: undefined, did: `${images.images.length} rc tags point to the recorded digests` };
    });
    await p.step('verify', async () => ({ value: await verifyStep({ images, registries: o.registries, trust: o.trust }, sio), did: `${images.images.length} images: signatures, SBOMs, provenance verified` }));
    const tags = await p.step('publish', async () => {
      // publishStep decides every tag first: an immutable final tag pointing elsewhere is refused (IMMUTABLE_TAG, naming its digest) before any tag moves.
      const r = await publishStep({ images, registries: o.registries, trust: o.trust, plan: final, dryRun: o.dryRun === true, verified: true }, sio);
      const written = r.filter((t) => t.written).length;
      return { value: r, did: o.dryRun ? `dry run: ${r.map((t) => `${t.tag} ${t.action}`).join(', ')}` : `${r.length} tags: ${written} written, ${r.length - written} unchanged` };
    });

    const record = await p.step('record', async () => {
      const r: PromoteResult = {
        version: final.version,
        channel: final.channel,
        gitCommit: rc.gitCommit,
        sourceDateEpoch: rc.sourceDateEpoch,
        base: rc.base,
        ...(rc.publicKey ? { publicKey: rc.publicKey } : {}),
        images: rc.images.map((i) => ({ ...i, tags: [...final.tags] })),
        tags,
        dirty: false,
        supportImages: rc.supportImages ?? [],
        smoke,
        promotedFrom: { version: rc.version, gitCommit: rc.gitCommit },
        outputs: { digests: DIGESTS_FILE, checksums: CHECKSUMS_FILE, checksumsBundle: CHECKSUMS_BUNDLE },
        steps: p.steps,
        dryRun: o.dryRun === true,
      };
      if (o.dryRun) return { value: r, did: 'dry run: nothing written' };
      await mkdir(join(o.out, 'docs', 'release'), { recursive: true });
      await writeFile(join(o.out, 'release.json'), `${JSON.stringify(r, null, 2)}\n`);
      const compatibility = compatibilityRow(o.source, r);
      await writeFile(join(o.out, COMPATIBILITY_FILE), `${JSON.stringify(compatibility, null, 2)}\n`);
      await writeFile(join(o.out, 'docs', 'release', 'image-catalog.md'), imageCatalogWithDigests(r, compatibility));
      const digests = [...r.images.map((i) => ({ name: i.repository, digest: i.digest })), ...(r.supportImages ?? []).map((i) => ({ name: i.repository, digest: i.digest }))];
      if (o.signer) {
        const w = await writeReleaseOutputs({ out: o.out, digests, signer: o.signer, trust: o.trust });
        return { value: r, did: `${w.files} files checksummed${w.resigned ? ', checksums.txt signed' : ''}` };
      }
      await writeFile(join(o.out, DIGESTS_FILE), formatDigests(digests));
      const files = releaseFiles(o.out);
      await writeFile(join(o.out, CHECKSUMS_FILE), await formatChecksums(o.out, files));
      if (existsSync(join(o.out, CHECKSUMS_BUNDLE))) p.log(`warning: ${join(o.out, CHECKSUMS_BUNDLE)} is from an earlier run and no longer matches; give --key or --identity-token to sign checksums.txt`);
      return { value: r, did: `${files.length} files checksummed (unsigned: no --key or --identity-token)` };
    });
    p.summary(true);
    return { ...record, steps: p.steps };
  } catch (e) {
    p.summary(false);
    throw e;
  }
}
