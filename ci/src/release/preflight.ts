/**
 * Pre-flight: everything a release can check before it builds, signs or pushes anything, with
 * no side effect on the registry's content. Each check fails with a StellaError naming what is
 * wrong and how to fix it; the result lists every check with what it found.
 *
 *   version   the version is in the tag scheme and agrees with the ref (planTags, before this)
 *   tree      a final release (vX.Y.Z) is never built from a working tree with uncommitted
 *             changes unless --allow-dirty; other channels warn and record `dirty: true`
 *             (promote refuses a dirty rc, so a final never carries uncommitted changes)
 *   registry  answers /v2/ with our credentials (reachable, authenticated) and, unless this is a
 *             re-run of a release recorded in <out>, is writable: an upload session is opened
 *             with push scope and cancelled (DELETE) — no blob, manifest or tag is created
 *   signing   the key decrypts and signs (a test signature is verified with its public half), or
 *             the OIDC identity token is a JWT that has not expired and the identity to verify
 *             against is complete; with neither, only a loopback registry accepts a locally
 *             generated key (a release to a real registry is never signed with a throwaway key)
 *   tags      no immutable tag (vX.Y.Z, vX.Y.Z-rc.N) of this version exists in any image
 *             repository, unless it points to the digest that <out>/build.json (a previous,
 *             interrupted run of the same release) recorded — then the run resumes
 */
import { existsSync, readFileSync } from 'node:fs';
import { createVerify } from 'node:crypto';
import { join } from 'node:path';
import { StellaError } from '../errors.ts';
import type { TagPlan } from '../tags/index.ts';
import { transportOf } from '../registry/client.ts';
import { loadPrivateKey, signBytes, type SigningKey } from '../sign/index.ts';
import { identityTrust, type IdentityOptions, type KeylessOptions, type Registries } from './context.ts';
import type { SourceRevision } from './git.ts';

export interface PreflightOptions {
  readonly plan: TagPlan;
  readonly revision: SourceRevision;
  readonly allowDirty: boolean;
  readonly registry: string;
  readonly namespace: string;
  /** Service names; their repositories are <registry>/<namespace>/stella-<service>. */
  readonly services: readonly string[];
  readonly registries: Registries;
  readonly key?: string;
  readonly keyPassword?: string;
  readonly keyless?: KeylessOptions;
  readonly identity?: IdentityOptions;
  /** The output directory: a previous run's build.json / release.json make this a resume. */
  readonly out: string;
}

export interface PreflightCheck {
  readonly check: 'version' | 'tree' | 'registry' | 'signing' | 'tags';
  readonly detail: string;
}

export interface TakenTag {
  readonly repository: string;
  readonly tag: string;
  readonly digest: string;
}

export interface PreflightResult {
  readonly checks: readonly PreflightCheck[];
  /** Immutable tags already present and pointing to what the previous run of this release built. */
  readonly resumed: readonly TakenTag[];
  /** How the release will sign: 'key', 'keyless' or 'local-key' (generated or reused in <out>/keys). */
  readonly signing: 'key' | 'keyless' | 'local-key';
  readonly warnings: readonly string[];
  /** The given key, decrypted and checked (the release signs with it: decrypting it again costs a scrypt). */
  readonly key?: SigningKey;
}

/** Loopback registries (a developer's or a test's), where a generated local key is acceptable. */
export function isLoopbackRegistry(registry: string): boolean {
  const host = registry.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** The digests a previous run of the same release recorded in <out> (build.json), by repository. */
export function previousDigests(out: string): Map<string, string> {
  const m = new Map<string, string>();
  const f = join(out, 'build.json');
  if (!existsSync(f)) return m;
  try {
    const doc = JSON.parse(readFileSync(f, 'utf8')) as { images?: { repository?: unknown; digest?: unknown }[] };
    for (const i of doc.images ?? []) if (typeof i.repository === 'string' && typeof i.digest === 'string') m.set(i.repository, i.digest);
  } catch {
    // an unreadable previous record resumes nothing
  }
  return m;
}

/** True when <out>/release.json records this very release (same version and commit): a re-run. */
export function isRecordedRelease(out: string, version: string, commit: string): boolean {
  const f = join(out, 'release.json');
  if (!existsSync(f)) return false;
  try {
    const r = JSON.parse(readFileSync(f, 'utf8')) as { version?: unknown; gitCommit?: unknown };
    return r.version === version && r.gitCommit === commit;
  } catch {
    return false;
  }
}

function checkTree(o: PreflightOptions, warnings: string[]): string {
  if (!o.revision.dirty) return `clean at ${o.revision.commit.slice(0, 12)}`;
  if (o.plan.channel === 'release' && !o.allowDirty) {
    throw new StellaError('INVALID_ARGUMENT', `pre-flight: the working tree has uncommitted changes; a final release (${o.plan.version}) is built only from a clean commit. Commit or stash them, or pass --allow-dirty (recorded as dirty: true in release.json)`);
  }
  const w = `the working tree has uncommitted changes: the images are labelled ${o.revision.commit} but include them (recorded as dirty: true; promote refuses a dirty rc)`;
  warnings.push(w);
  return `dirty (${o.allowDirty ? '--allow-dirty' : `allowed for ${o.plan.channel}`})`;
}

async function checkRegistry(o: PreflightOptions, probeWrite: boolean): Promise<string> {
  const client = o.registries.client(o.registry);
  await client.ping().catch((e: unknown) => {
    const msg = e instanceof Error ? e.message : String(e);
    throw new StellaError(e instanceof StellaError ? e.code : 'REGISTRY_ERROR', `pre-flight: registry ${o.registry} is not reachable with the given credentials: ${msg}. Check --registry, the credentials (--registry-username/--registry-password or --docker-config) and the network`);
  });
  if (!probeWrite) return `${o.registry} reachable; writability not probed (a re-run of the release recorded in ${o.out})`;
  const repo = `${o.namespace}/stella-${o.services[0] ?? 'api'}`;
  const t = transportOf(client);
  const ctx = { op: 'check push access', repo };
  const res = await t.withRetry(ctx, () => t.exchange(ctx, 'POST', `/v2/${repo}/blobs/uploads/`, { repo, push: true }, { headers: { 'content-length': '0' } }));
  if (res.status !== 202) {
    const excerpt = await t.excerpt(res);
    throw new StellaError(res.status === 401 || res.status === 403 ? 'REGISTRY_AUTH' : 'REGISTRY_ERROR', `pre-flight: registry ${o.registry} does not accept pushes to ${repo} (HTTP ${res.status}${excerpt ? `: ${excerpt}` : ''}); give credentials with push access`);
  }
  await res.body?.cancel();
  const location = t.location(ctx, res);
  const del = await t.exchange(ctx, 'DELETE', location.href, { repo, push: true });
  await del.body?.cancel();
  return `${o.registry} reachable and writable (an upload session to ${repo} opened and cancelled${del.status === 204 ? '' : `; the registry answered the cancel with HTTP ${del.status}`})`;
}

function jwtClaims(token: string): { exp?: number; iss?: string; sub?: string; email?: string } {
  const parts = token.split('.');
  if (parts.length !== 3) throw new StellaError('INVALID_ARGUMENT', 'pre-flight: --identity-token is not a JWT (three base64url parts); give the OIDC token of the signing identity');
  try {
    return JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as { exp?: number; iss?: string; sub?: string };
  } catch {
    throw new StellaError('INVALID_ARGUMENT', 'pre-flight: --identity-token has no readable JWT claims');
  }
}

function checkSigning(o: PreflightOptions, warnings: string[]): { detail: string; mode: PreflightResult['signing']; key?: SigningKey } {
  if (o.keyless) {
    if (o.key) throw new StellaError('INVALID_ARGUMENT', 'give --key or --identity-token, not both');
    const c = jwtClaims(o.keyless.identityToken);
    if (typeof c.exp === 'number' && c.exp * 1000 <= Date.now()) {
      throw new StellaError('INVALID_ARGUMENT', `pre-flight: the OIDC identity token expired at ${new Date(c.exp * 1000).toISOString()}; request a new one`);
    }
    if (!identityTrust(o.identity ?? {})) {
      throw new StellaError('INVALID_ARGUMENT', 'pre-flight: keyless signing (--identity-token) needs --certificate-identity, --certificate-oidc-issuer and --trusted-root, so that the release can be verified before it is tagged');
    }
    return { detail: `keyless: token from ${c.iss ?? 'an unnamed issuer'}${c.exp ? `, valid until ${new Date(c.exp * 1000).toISOString()}` : ''}; verified as ${o.identity?.certificateIdentity}`, mode: 'keyless' };
  }
  if (o.key) {
    const key = loadPrivateKey(o.key, o.keyPassword, 'signing key');
    const probe = Buffer.from(`stella-release pre-flight ${o.plan.version}`);
    const sig = signBytes(key, probe);
    const v = createVerify('sha256');
    v.update(probe);
    if (!v.verify(key.publicKeyPem, sig)) throw new StellaError('KEY_INVALID', 'pre-flight: the signing key does not verify under its own public key');
    return { detail: `key ${key.algorithm} (${key.hint.slice(0, 16)}…): signs and verifies`, mode: 'key', key };
  }
  if (!isLoopbackRegistry(o.registry)) {
    throw new StellaError('INVALID_ARGUMENT', `pre-flight: no signing key (--key) and no OIDC identity (--identity-token) for a release to ${o.registry}; a release to a real registry is never signed with a generated key. Give --key env:COSIGN_KEY (and --key-password) or --identity-token`);
  }
  warnings.push(`no signing key or identity given; the local key in ${join(o.out, 'keys')} signs this release (loopback registry ${o.registry} only)`);
  return { detail: `local key in ${join(o.out, 'keys')} (loopback registry only)`, mode: 'local-key' };
}

async function checkTags(o: PreflightOptions): Promise<{ detail: string; resumed: TakenTag[] }> {
  if (!o.plan.immutable) return { detail: `${o.plan.tags.join(', ')}: mutable, will move`, resumed: [] };
  const client = o.registries.client(o.registry);
  const previous = previousDigests(o.out);
  const resumed: TakenTag[] = [];
  const refused: string[] = [];
  for (const service of o.services) {
    const repo = `${o.namespace}/stella-${service}`;
    const repository = `${o.registry}/${repo}`;
    for (const tag of o.plan.tags) {
      const digest = await client.resolve(repo, tag);
      if (!digest) continue;
      if (previous.get(repository) === digest) resumed.push({ repository, tag, digest });
      else refused.push(`${repository}:${tag} already points to ${digest}`);
    }
  }
  if (refused.length) {
    throw new StellaError('IMMUTABLE_TAG', `pre-flight: ${o.plan.version} is immutable and already published:\n  - ${refused.join('\n  - ')}\nRelease and rc tags are never moved: cut a new version (e.g. the next -rc.N), or re-run with --out pointing to the output directory of the run that published them to resume it`);
  }
  return { detail: resumed.length ? `${resumed.length} immutable tag(s) already point to this release's recorded digests (resuming)` : `${o.plan.tags.join(', ')}: immutable, not taken`, resumed };
}

export async function preflight(o: PreflightOptions): Promise<PreflightResult> {
  const warnings: string[] = [];
  const checks: PreflightCheck[] = [];
  checks.push({ check: 'version', detail: `${o.plan.version} (${o.plan.channel}) → tags ${o.plan.tags.join(', ')}${o.plan.immutable ? ' (immutable)' : ''}, chart ${o.plan.chartVersion}` });
  checks.push({ check: 'tree', detail: checkTree(o, warnings) });
  const signing = checkSigning(o, warnings);
  checks.push({ check: 'registry', detail: await checkRegistry(o, !isRecordedRelease(o.out, o.plan.version, o.revision.commit)) });
  checks.push({ check: 'signing', detail: signing.detail });
  const tags = await checkTags(o);
  checks.push({ check: 'tags', detail: tags.detail });
  return { checks, resumed: tags.resumed, signing: signing.mode, warnings, ...(signing.key ? { key: signing.key } : {}) };
}
