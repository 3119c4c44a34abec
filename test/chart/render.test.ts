/**
 * The released chart, rendered with helm on every variant (default, prod, airgap, bundled):
 * lint, the strict schema, image pins and relocation, Pod Security "restricted" (checked by the
 * Kubernetes admission code: tools/pss-check), probes and resources, the default-deny policy,
 * the keys each service gets, the version skew policy, TLS in production, and that no secret
 * value reaches a non-Secret object. Needs helm and go (for pss-check); skipped elsewhere, and
 * then it runs in .ci/run.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { catalog, configFor } from '../../ci/src/catalog/index.ts';
import { SUPPORT_VALUES_KEY } from '../../ci/src/chart/index.ts';
import { skipUnless } from '../helpers/tools.ts';
import { APP_VERSION, ROOT, fixtureBuild, fixtureLock, helm, packageFixture, parseManifests, podSpecOf, pssCheck, type Helm, type K8sObject } from './fixture.ts';

const SKIP = skipUnless(['helm', 'go'], 'chart rendering checks (helm, and go to build tools/pss-check)');
const CHART_DIR = join(ROOT, 'deploy/helm/stella');

const VARIANTS: Record<string, string[]> = {
  default: [],
  prod: ['-f', join(CHART_DIR, 'values-prod.yaml')],
  airgap: ['-f', join(CHART_DIR, 'values-airgap.yaml')],
  bundled: ['--set', 'bundled.enabled=true'],
};

describe.skipIf(SKIP)('the released chart, rendered', () => {
  let dir: string;
  let h: Helm;
  let chart: string;
  let pss: string;
  const build = fixtureBuild();
  const lock = fixtureLock();

  const template = (args: readonly string[]) => h.run(['template', 'stella', chart, '--namespace', 'stella', ...args]);
  const render = (args: readonly string[]): K8sObject[] => {
    const r = template(args);
    if (r.status !== 0) throw new Error(`helm template ${args.join(' ')} failed: ${r.stderr}`);
    return parseManifests(r.stdout);
  };
  const containersOf = (objs: K8sObject[]) =>
    objs.flatMap((o) => {
      const p = podSpecOf(o);
      return p ? [...(p.initContainers ?? []).map((c) => ({ o, c, init: true })), ...p.containers.map((c) => ({ o, c, init: false }))] : [];
    });

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'stella-chart-render-'));
    h = helm();
    chart = packageFixture(dir, build, lock).path;
    const p = pssCheck();
    if (!p.path) throw new Error(p.why);
    pss = p.path;
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** The digest each image must carry: the build document's (by repository) or the lock's. */
  const expectedDigest = (ref: string): string | undefined => {
    const repo = ref.slice(0, ref.indexOf('@')).replace(/^[^/]+\//, '');
    const b = build.images.find((i) => i.repository.replace(/^[^/]+\//, '') === repo);
    if (b) return b.digest;
    const l = Object.values(lock.images).find((e) => e!.repository.replace(/^[^/]+\//, '') === repo);
    return l?.digest;
  };

  describe.each(Object.entries(VARIANTS))('%s', (variant, args) => {
    let objs: K8sObject[];
    beforeAll(() => {
      objs = render(args);
    });

    it('helm lint --strict is clean', () => {
      const r = h.run(['lint', '--strict', chart, ...args]);
      expect(r.status, r.stdout + r.stderr).toBe(0);
      expect(r.stdout).not.toMatch(/\[(WARNING|ERROR)\]/);
    });

    it('every image is pinned by digest, and it is the build document\'s or the lock\'s', () => {
      const refs = containersOf(objs).map(({ c }) => c.image);
      expect(refs.length).toBeGreaterThan(10);
      for (const ref of refs) {
        expect(ref).toMatch(/^[^@:]+(:\d+)?\/[^@]+@sha256:[0-9a-f]{64}$/);
        expect(ref.slice(ref.indexOf('@') + 1), ref).toBe(expectedDigest(ref));
      }
      if (variant === 'airgap') for (const ref of refs) expect(ref.startsWith('registry.local:5000/')).toBe(true);
      if (variant === 'bundled') expect(refs.some((r) => r.includes('/support-postgres@'))).toBe(true);
    });

    it('global.imageRegistry=registry.local:5000 moves every reference and keeps every digest', () => {
      const moved = containersOf(render([...args, '--set', 'global.imageRegistry=registry.local:5000'])).map(({ c }) => c.image);
      const before = containersOf(objs).map(({ c }) => c.image);
      expect(moved.length).toBe(before.length);
      moved.forEach((ref, i) => {
        expect(ref.startsWith('registry.local:5000/'), ref).toBe(true);
        expect(ref.slice(ref.indexOf('/'))).toBe(before[i]!.slice(before[i]!.indexOf('/')));
      });
    });

    it('every pod template passes Pod Security "restricted" (k8s.io/pod-security-admission)', () => {
      const r = spawnSync(pss, ['-level', 'restricted'], { input: template(args).stdout, encoding: 'utf8' });
      expect(r.status, r.stdout + r.stderr).toBe(0);
      const results = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as { kind: string; allowed: boolean });
      expect(results.length).toBe(objs.filter((o) => podSpecOf(o)).length);
      expect(results.every((x) => x.allowed)).toBe(true);
    });

    it('every container has resources; every long-running container has liveness and readiness probes', () => {
      for (const { o, c, init } of containersOf(objs)) {
        const where = `${o.kind}/${o.metadata.name}/${c.name}`;
        expect(c.resources?.requests?.cpu, where).toBeTruthy();
        expect(c.resources?.requests?.memory, where).toBeTruthy();
        expect(c.resources?.limits?.memory, where).toBeTruthy();
        if (!init && (o.kind === 'Deployment' || o.kind === 'StatefulSet')) {
          expect(c.livenessProbe, where).toBeTruthy();
          expect(c.readinessProbe, where).toBeTruthy();
        }
      }
    });

    it('has a default-deny NetworkPolicy over every pod of the release, and a policy per workload', () => {
      const deny = objs.find((o) => o.kind === 'NetworkPolicy' && o.metadata.name.endsWith('-default-deny'));
      expect(deny).toBeDefined();
      const spec = deny!.spec as { podSelector: { matchLabels: Record<string, string> }; policyTypes: string[]; ingress?: unknown; egress?: unknown };
      expect(spec.policyTypes.sort()).toEqual(['Egress', 'Ingress']);
      expect(spec.ingress).toBeUndefined();
      expect(spec.egress).toBeUndefined();
      expect(spec.podSelector.matchLabels).toEqual({ 'app.kubernetes.io/name': 'stella', 'app.kubernetes.io/instance': 'stella' });
      const components = new Set(objs.filter((o) => o.kind === 'NetworkPolicy').map((o) => o.metadata.labels?.['app.kubernetes.io/component']));
      for (const o of objs.filter((x) => podSpecOf(x) && x.kind !== 'CronJob')) {
        const c = (o.spec as any).template.metadata.labels['app.kubernetes.io/component'];
        expect(components.has(c), `${o.kind}/${o.metadata.name} has no NetworkPolicy of its own`).toBe(true);
      }
    });

    it('each StellaOps container gets only STELLA_* keys its service knows (catalog configFor)', () => {
      for (const { o, c } of containersOf(objs)) {
        const component = (podSpecOf(o) && (o.spec as any).template?.metadata?.labels?.['app.kubernetes.io/component']) as string;
        const service = component === 'migrator' ? 'api' : component;
        const spec = catalog.services.find((s) => s.name === service);
        if (!spec) continue;
        const known = new Set(configFor(spec).flatMap((k) => [k.key, `${k.key}_FILE`]));
        for (const e of c.env ?? []) if (e.name.startsWith('STELLA_')) expect(known.has(e.name), `${o.metadata.name}/${c.name}: ${e.name}`).toBe(true);
      }
      const api = objs.find((o) => o.kind === 'Deployment' && o.metadata.name === 'stella-api')!;
      const env = (podSpecOf(api)!.containers[0]!.env ?? []);
      // Bundled: the migrator is a post-install hook, which `helm install --wait` runs only after every
      // pod is Ready, so the API migrates at start (found on the real cluster, test/cluster).
      expect(env.find((e) => e.name === 'STELLA_MIGRATIONS_AUTO')?.value).toBe(variant === 'bundled' ? undefined : 'false');
      expect(env.find((e) => e.name === 'STELLA_DATABASE_URL_FILE')?.value).toBe('/var/run/secrets/stella/database-url');
      expect(env.some((e) => e.name === 'STELLA_DATABASE_URL')).toBe(false);
    });
  });

  it('bundled mode: a StatefulSet with a volume claim for each support service, from the lock', () => {
    const objs = render(VARIANTS.bundled!);
    for (const [name, key] of Object.entries(SUPPORT_VALUES_KEY)) {
      if (name === 'otel-collector') continue;
      const sts = objs.find((o) => o.kind === 'StatefulSet' && o.metadata.name === `stella-${name}`);
      expect(sts, `${name} (${key})`).toBeDefined();
      expect((sts!.spec as any).volumeClaimTemplates[0].metadata.name).toBe('data');
      expect(podSpecOf(sts!)!.containers[0]!.image).toBe(`127.0.0.1:5000/stellaops/support-${name}@${lock.images[name as 'postgres']!.digest}`);
    }
    const api = objs.find((o) => o.kind === 'Deployment' && o.metadata.name === 'stella-api')!;
    expect(podSpecOf(api)!.containers[0]!.env!.find((e) => e.name === 'STELLA_QUEUE_URL')?.value).toBe('nats://stella-queue:4222');
  });

  it('bundled mode: a regular Job of the release (no hook) creates the bucket with the quickstart\'s script, the API image and its own allows', () => {
    const objs = render([...VARIANTS.bundled!, '--set', 'objectStore.bucket=lab-bucket']);
    const job = objs.find((o) => o.kind === 'Job' && o.metadata.name === 'stella-object-store-init-1');
    expect(job, 'the bucket Job, named after the release revision').toBeDefined();
    expect(job!.metadata.annotations?.['helm.sh/hook']).toBeUndefined();
    const c = podSpecOf(job!)!.containers[0]! as any;
    expect(c.image).toBe(`127.0.0.1:5000/stellaops/stella-api@${build.images.find((i) => i.service === 'api')!.digest}`);
    expect([...c.command, ...c.args]).toEqual(['/nodejs/bin/node', '/init/stella-init.mjs', 'bucket']);
    const env = Object.fromEntries((c.env as { name: string; value: string }[]).map((e) => [e.name, e.value]));
    expect(env).toMatchObject({ ENDPOINT: 'http://stella-object-store:9000', BUCKET: 'lab-bucket', REGION: 'us-east-1' });
    expect(Number(env.TIMEOUT_SECONDS)).toBe((job!.spec as any).activeDeadlineSeconds);
    // The script is the Compose quickstart's object-store-init, byte for byte.
    const cm = objs.find((o) => o.kind === 'ConfigMap' && o.metadata.name === 'stella-object-store-init') as any;
    expect(cm.data['stella-init.mjs']).toBe(readFileSync(join(ROOT, 'deploy/compose/init/stella-init.mjs'), 'utf8'));
    const creds = (podSpecOf(job!) as any).volumes.find((v: any) => v.secret).secret;
    expect(creds.secretName).toBe('stella-bundled-credentials');
    expect(creds.items.map((i: any) => i.key).sort()).toEqual(['object-store-access-key', 'object-store-secret-key']);
    // The default deny is lifted for it: DNS and the store's S3 port out; the store lets it in.
    const own = objs.find((o) => o.kind === 'NetworkPolicy' && o.metadata.name === 'stella-object-store-init') as any;
    expect(own.spec.ingress).toEqual([]);
    const toStore = own.spec.egress.find((e: any) => e.to[0].podSelector?.matchLabels['app.kubernetes.io/component'] === 'object-store');
    expect(toStore.ports).toEqual([{ protocol: 'TCP', port: 9000 }]);
    const store = objs.find((o) => o.kind === 'NetworkPolicy' && o.metadata.name === 'stella-object-store') as any;
    expect(store.spec.ingress.some((r: any) => r.from[0].podSelector.matchLabels['app.kubernetes.io/component'] === 'object-store-init' && r.ports[0].port === 9000)).toBe(true);
    // External mode: the operator's bucket; the chart renders no bucket Job.
    expect(render([]).some((o) => o.metadata.name.startsWith('stella-object-store-init'))).toBe(false);
  });

  it('the schema refuses an unknown key, naming its path', () => {
    const r = template(['--set', 'api.replicaCont=2']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/values don't meet the specifications of the schema/);
    expect(r.stderr).toMatch(/\/api/);
    expect(r.stderr).toMatch(/replicaCont/);
  });

  it('the schema refuses a wrong type, naming its path', () => {
    const r = template(['--set-string', 'api.replicaCount=two']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/\/api\/replicaCount/);
    expect(r.stderr).toMatch(/integer/);
    const deep = template(['--set', 'conseiller.config.feedMaxInflight=0']);
    expect(deep.status).not.toBe(0);
    expect(deep.stderr).toMatch(/\/conseiller\/config\/feedMaxInflight/);
  });

  it('version skew: refuses a newer or a too old component, accepts one minor version back', () => {
    const newer = template(['--set', 'orchestrator.image.tag=v1.5.0']);
    expect(newer.status).not.toBe(0);
    expect(newer.stderr).toMatch(/version skew: orchestrator runs version v1\.5\.0, outside the supported skew of this chart \(appVersion v1\.4\.0-rc\.1\)/);
    const major = template(['--set', 'api.image.tag=v2.4.0']);
    expect(major.stderr).toMatch(/version skew: api runs version v2\.4\.0/);
    const old = template(['--set', 'ledger.image.tag=v1.2.9']);
    expect(old.stderr).toMatch(/version skew: ledger runs version v1\.2\.9/);
    expect(template(['--set', 'ledger.image.tag=v1.3.2']).status).toBe(0);
    expect(template(['--set', 'ledger.image.tag=edge']).stderr).toMatch(/version skew: ledger runs version edge/);
    expect(template(['--set', 'ledger.image.tag=v1.2.9', '--set', 'versionSkew.maxMinorSkew=2']).status).toBe(0);
  });

  it('production values refuse an Ingress without TLS', () => {
    const r = template([...VARIANTS.prod!, '--set', 'ingress.api.tlsSecretName=']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/ingress\.api\.tlsSecretName is empty and ingress\.tlsRequired is true/);
    const objs = render(VARIANTS.prod!);
    const ingresses = objs.filter((o) => o.kind === 'Ingress');
    expect(ingresses.map((o) => (o.spec as any).tls[0].secretName).sort()).toEqual(['stella-api-tls', 'stella-console-tls']);
    expect(objs.filter((o) => o.kind === 'HorizontalPodAutoscaler').length).toBe(catalog.services.filter((s) => s.enabledByDefault).length);
    expect(objs.filter((o) => o.kind === 'PodDisruptionBudget').length).toBe(catalog.services.filter((s) => s.enabledByDefault).length);
  });

  it('global.requireDigests refuses an unpinned image', () => {
    const r = template(['--set', 'global.requireDigests=true', '--set', 'policy.image.digest=']);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/policy image 127\.0\.0\.1:5000\/stellaops\/stella-policy has no digest/);
  });

  it('no secret value given through values appears in any object but a Secret', () => {
    const canary = { postgresPassword: 'CANARY-pg-7f3a91', redisPassword: 'CANARY-redis-c2e8', objectStoreAccessKey: 'CANARY-ak-55d0', objectStoreSecretKey: 'CANARY-sk-9b1e' };
    const args = [...VARIANTS.bundled!, ...Object.entries(canary).flatMap(([k, v]) => ['--set', `bundled.auth.${k}=${v}`])];
    const objs = render(args);
    const secrets = objs.filter((o) => o.kind === 'Secret');
    expect(secrets.length).toBe(1);
    const decoded = Object.values((secrets[0] as any).data as Record<string, string>).map((b) => Buffer.from(b, 'base64').toString()).join('\n');
    for (const v of Object.values(canary)) expect(decoded).toContain(v);
    for (const o of objs.filter((x) => x.kind !== 'Secret')) {
      const text = JSON.stringify(o);
      for (const v of Object.values(canary)) {
        expect(text.includes(v), `${o.kind}/${o.metadata.name} contains ${v}`).toBe(false);
        expect(text.includes(Buffer.from(v).toString('base64')), `${o.kind}/${o.metadata.name} contains ${v} in base64`).toBe(false);
      }
    }
  });

  it('the Pod Security checker rejects a non-compliant pod (the check can fail)', () => {
    const bad = template([]).stdout.replace('allowPrivilegeEscalation: false', 'allowPrivilegeEscalation: true');
    const r = spawnSync(pss, ['-level', 'restricted'], { input: bad, encoding: 'utf8' });
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/"allowed":false.*allowPrivilegeEscalation/);
  });

  it('the upgrade gate polls the aggregators\' GET /status/watermark; the migrator is a pre-install/pre-upgrade hook', () => {
    const objs = render([]);
    const gate = objs.find((o) => o.kind === 'Job' && o.metadata.name === 'stella-upgrade-gate')!;
    expect(gate.metadata.annotations?.['helm.sh/hook']).toBe('post-install,post-upgrade');
    const args = (podSpecOf(gate)!.containers[0] as any).args as string[];
    expect(args).toContain('http://stella-conseiller:8084/status/watermark');
    expect(args).toContain('http://stella-excitator:8085/status/watermark');
    const migrator = objs.find((o) => o.kind === 'Job' && o.metadata.name === 'stella-migrator')!;
    expect(migrator.metadata.annotations?.['helm.sh/hook']).toBe('pre-install,pre-upgrade');
    expect((podSpecOf(migrator)!.containers[0] as any).args).toEqual(['/app/main.js', 'migrate']);
    const worker = objs.find((o) => o.kind === 'Deployment' && o.metadata.name === 'stella-ledger')!;
    expect(podSpecOf(worker)!.initContainers?.[0]?.name).toBe('wait-for-api');
    expect(APP_VERSION).toBe('v1.4.0-rc.1');
  });
});
