/**
 * stella-policy (Policy Engine): evaluates a finding against a policy version (the
 * baseline by default), with the rules cached in Redis for STELLA_POLICY_CACHE_TTL.
 * POST /api/v1/evaluate { finding: { severity, vexStatus, ... }, policyVersion? }.
 */
import { runService } from '../runtime/service.ts';
import { HttpError, readJson, sendJson } from '../runtime/http.ts';
import { migrate } from '../shared/migrate.ts';
import { requireKeys } from '../shared/require.ts';
import baseline from '../../seed/policy-baseline.json' with { type: 'json' };

interface Rule {
  id: string;
  when: Record<string, string[]>;
  decision: 'pass' | 'warn' | 'fail';
  reason: string;
}
interface PolicyDoc {
  version: string;
  name: string;
  rules: Rule[];
  default: { decision: string; reason: string };
}

const MIGRATIONS = [
  { version: 1, name: 'policy versions', sql: 'CREATE TABLE policy_versions (version text PRIMARY KEY, document jsonb NOT NULL, created_at timestamptz NOT NULL DEFAULT now());' },
];

export function evaluate(policy: PolicyDoc, finding: Record<string, unknown>): { decision: string; rule: string | null; reason: string } {
  for (const rule of policy.rules) {
    const matches = Object.entries(rule.when).every(([field, allowed]) => allowed.includes(String(finding[field] ?? '')));
    if (matches) return { decision: rule.decision, rule: rule.id, reason: rule.reason };
  }
  return { decision: policy.default.decision, rule: null, reason: policy.default.reason };
}

await runService({
  name: 'policy',
  validate: (config) => requireKeys(config, 'policy', ['STELLA_DATABASE_URL']),
  setup(ctx) {
    const pool = ctx.deps.postgres!;
    const redis = ctx.deps.redis;
    const ttlS = Math.max(1, Math.round(ctx.config.ms('STELLA_POLICY_CACHE_TTL') / 1000));
    const defaultVersion = ctx.config.str('STELLA_POLICY_DEFAULT_VERSION');

    const rules = async (version: string): Promise<{ policy: PolicyDoc; cache: 'hit' | 'miss' | 'off' }> => {
      const key = `stella:policy:rules:${version}`;
      if (redis) {
        const hit = await redis.get(key).catch(() => null);
        if (hit) return { policy: JSON.parse(hit) as PolicyDoc, cache: 'hit' };
      }
      const r = await pool.query<{ document: PolicyDoc }>('SELECT document FROM policy_versions WHERE version = $1', [version]);
      const policy = r.rows[0]?.document;
      if (!policy) throw new HttpError(404, `policy version ${version} not found`);
      if (redis) await redis.set(key, JSON.stringify(policy), 'EX', ttlS).catch(() => undefined);
      return { policy, cache: redis ? 'miss' : 'off' };
    };

    return {
      async start() {
        await migrate(pool, 'policy', MIGRATIONS, ctx.log);
        await pool.query('INSERT INTO policy_versions (version, document) VALUES ($1, $2) ON CONFLICT DO NOTHING', [baseline.version, JSON.stringify(baseline)]);
      },
      routes: [
        {
          method: 'POST',
          path: '/api/v1/evaluate',
          handler: async ({ req, res }) => {
            const body = await readJson<{ finding?: unknown; policyVersion?: unknown }>(req, 64 * 1024);
            if (!body || typeof body.finding !== 'object' || body.finding === null) throw new HttpError(400, 'expected {"finding": {"severity": "...", "vexStatus": "..."}}');
            const version = typeof body.policyVersion === 'string' ? body.policyVersion : defaultVersion;
            const { policy, cache } = await rules(version);
            sendJson(res, 200, { policyVersion: version, cache, ...evaluate(policy, body.finding as Record<string, unknown>) });
          },
        },
      ],
    };
  },
});
