/**
 * The aggregation-only core of Conseiller (advisories) and Excitator (VEX), the AOC rule:
 * each source document is stored as an IMMUTABLE record linked to its original
 * (source URL, content SHA-256, fetched-at). PostgreSQL itself enforces it: a trigger
 * rejects UPDATE, DELETE and TRUNCATE on the source and link tables. Re-ingesting the
 * same document changes nothing; a conflicting version becomes a new record with a
 * `conflicts-with` link to the earlier ones. There is no merge code path; the
 * STELLA_DISABLE_MERGE key is locked to true by the configuration loader.
 *
 * Feed watermark (`GET /status/watermark`, polled by the chart's upgrade hook): the
 * state of every configured source (`<name>_feed_state`: last attempt, last success,
 * last error; a mutable table apart from the immutable records), the newest record, and
 * whether the service is caught up: start-up (seed) done, every source fetched on its last
 * attempt, and nothing left in its work queue. 200 when caught up, 503 otherwise.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type pg from 'pg';
import type { ServiceContext, ServiceDefinition, ServiceParts } from '../runtime/service.ts';
import { HttpError, sendJson } from '../runtime/http.ts';
import { errorMessage } from '../runtime/log.ts';
import { withTimeout } from '../runtime/deps.ts';
import { BadWork, WORK_STREAM, consumerName } from '../runtime/queue.ts';
import { migrate, type Migration } from './migrate.ts';
import { requireKeys } from './require.ts';

export interface AggregatorSpec {
  readonly name: 'conseiller' | 'excitator';
  /** What a document is, for messages: "advisory", "VEX statement". */
  readonly kind: string;
  /** The bundled seed file (in seed/) ingested at start when no feed source is configured. */
  readonly seedFile: string;
  /** The stable identity inside a document (an advisory id, a VEX statement's vulnerability+product). */
  readonly documentId: (doc: unknown) => string | undefined;
}

export interface IngestResult {
  readonly id: string;
  readonly duplicate: boolean;
  readonly contentSha256: string;
  readonly documentId: string | null;
  readonly linkedTo: string[];
}

export function tables(name: string) {
  return { docs: `${name}_source_documents`, links: `${name}_document_links`, fn: `${name}_reject_mutation`, state: `${name}_feed_state` };
}

export function aggregatorMigrations(name: string): Migration[] {
  const t = tables(name);
  return [
    {
      version: 1,
      name: 'immutable source documents and links',
      sql: `
CREATE TABLE ${t.docs} (
  id bigserial PRIMARY KEY,
  source_url text NOT NULL,
  document_id text,
  content_sha256 text NOT NULL CHECK (content_sha256 ~ '^[0-9a-f]{64}$'),
  content bytea NOT NULL,
  media_type text NOT NULL,
  fetched_at timestamptz NOT NULL,
  ingested_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (source_url, content_sha256)
);
CREATE INDEX ${t.docs}_document_id ON ${t.docs} (document_id);
CREATE TABLE ${t.links} (
  id bigserial PRIMARY KEY,
  from_id bigint NOT NULL REFERENCES ${t.docs} (id),
  to_id bigint NOT NULL REFERENCES ${t.docs} (id),
  relation text NOT NULL CHECK (relation IN ('conflicts-with', 'same-content-as')),
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (from_id, to_id, relation)
);
CREATE FUNCTION ${t.fn}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  RAISE EXCEPTION '% on % rejected: source records are immutable (AOC: aggregate and link, never merge or mutate)', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'insufficient_privilege';
END
$fn$;
CREATE TRIGGER ${t.docs}_immutable BEFORE UPDATE OR DELETE ON ${t.docs} FOR EACH ROW EXECUTE FUNCTION ${t.fn}();
CREATE TRIGGER ${t.docs}_no_truncate BEFORE TRUNCATE ON ${t.docs} FOR EACH STATEMENT EXECUTE FUNCTION ${t.fn}();
CREATE TRIGGER ${t.links}_immutable BEFORE UPDATE OR DELETE ON ${t.links} FOR EACH ROW EXECUTE FUNCTION ${t.fn}();
CREATE TRIGGER ${t.links}_no_truncate BEFORE TRUNCATE ON ${t.links} FOR EACH STATEMENT EXECUTE FUNCTION ${t.fn}();
`,
    },
    {
      version: 2,
      name: 'feed watermark state',
      sql: `
CREATE TABLE ${t.state} (
  source_url text PRIMARY KEY,
  last_attempt_at timestamptz NOT NULL,
  last_success_at timestamptz,
  last_sha256 text,
  last_error text,
  consecutive_failures integer NOT NULL DEFAULT 0);`,
    },
  ];
}

export async function ingest(pool: pg.Pool, spec: AggregatorSpec, input: { sourceUrl: string; content: Buffer; mediaType: string; fetchedAt: Date }): Promise<IngestResult> {
  const t = tables(spec.name);
  const sha = createHash('sha256').update(input.content).digest('hex');
  let documentId: string | null = null;
  try {
    documentId = spec.documentId(JSON.parse(input.content.toString('utf8'))) ?? null;
  } catch {
    documentId = null;
  }
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const ins = await client.query<{ id: string }>(
      `INSERT INTO ${t.docs} (source_url, document_id, content_sha256, content, media_type, fetched_at)
       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (source_url, content_sha256) DO NOTHING RETURNING id`,
      [input.sourceUrl, documentId, sha, input.content, input.mediaType, input.fetchedAt],
    );
    if (!ins.rows[0]) {
      const existing = await client.query<{ id: string }>(`SELECT id FROM ${t.docs} WHERE source_url = $1 AND content_sha256 = $2`, [input.sourceUrl, sha]);
      await client.query('COMMIT');
      return { id: String(existing.rows[0]!.id), duplicate: true, contentSha256: sha, documentId, linkedTo: [] };
    }
    const id = String(ins.rows[0].id);
    // Link (never merge) to earlier records of the same document or the same content.
    const related = await client.query<{ id: string; content_sha256: string }>(
      `SELECT id, content_sha256 FROM ${t.docs} WHERE id <> $1 AND ((document_id IS NOT NULL AND document_id = $2) OR source_url = $3 OR content_sha256 = $4) ORDER BY id`,
      [id, documentId, input.sourceUrl, sha],
    );
    const linkedTo: string[] = [];
    for (const r of related.rows) {
      const relation = r.content_sha256 === sha ? 'same-content-as' : 'conflicts-with';
      await client.query(`INSERT INTO ${t.links} (from_id, to_id, relation) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, [id, r.id, relation]);
      linkedTo.push(String(r.id));
    }
    await client.query('COMMIT');
    return { id, duplicate: false, contentSha256: sha, documentId, linkedTo };
  } catch (e) {
    await client.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    client.release();
  }
}

function decodeContent(d: Record<string, unknown>): Buffer {
  if (typeof d.contentBase64 === 'string') return Buffer.from(d.contentBase64, 'base64');
  if (typeof d.content === 'string') return Buffer.from(d.content, 'utf8');
  if (d.content !== undefined) return Buffer.from(JSON.stringify(d.content), 'utf8');
  throw new BadWork('work item has no content (expected content or contentBase64)');
}

export function aggregatorService(spec: AggregatorSpec): ServiceDefinition {
  const t = tables(spec.name);
  return {
    name: spec.name,
    validate: (config) => requireKeys(config, spec.name, ['STELLA_DATABASE_URL']),
    setup(ctx: ServiceContext): ServiceParts {
      const pool = ctx.deps.postgres!;
      const { config, log } = ctx;
      let pollTimer: NodeJS.Timeout | undefined;
      let started = false;
      let firstPollDone = false;
      const recordAttempt = async (url: string, ok: { sha256: string } | { error: string }) => {
        const q =
          'sha256' in ok
            ? pool.query(
                `INSERT INTO ${t.state} (source_url, last_attempt_at, last_success_at, last_sha256, last_error, consecutive_failures) VALUES ($1, now(), now(), $2, NULL, 0)
                 ON CONFLICT (source_url) DO UPDATE SET last_attempt_at = now(), last_success_at = now(), last_sha256 = $2, last_error = NULL, consecutive_failures = 0`,
                [url, ok.sha256],
              )
            : pool.query(
                `INSERT INTO ${t.state} (source_url, last_attempt_at, last_error, consecutive_failures) VALUES ($1, now(), $2, 1)
                 ON CONFLICT (source_url) DO UPDATE SET last_attempt_at = now(), last_error = $2, consecutive_failures = ${t.state}.consecutive_failures + 1`,
                [url, ok.error.slice(0, 500)],
              );
        await q.catch((e: unknown) => log.warn('could not record the feed state', { sourceUrl: url, error: errorMessage(e) }));
      };

      const ingestFromFeed = async (url: string): Promise<void> => {
        let backoff = config.ms('STELLA_FEED_RETRY_BACKOFF');
        for (let attempt = 1; attempt <= 10 && !ctx.isDraining(); attempt++) {
          try {
            const res = await fetch(url, { signal: AbortSignal.timeout(30_000) });
            if (!res.ok) throw new Error(`HTTP ${res.status}`);
            const content = Buffer.from(await res.arrayBuffer());
            const r = await ingest(pool, spec, { sourceUrl: url, content, mediaType: res.headers.get('content-type') ?? 'application/octet-stream', fetchedAt: new Date() });
            log.info(`${spec.kind} source fetched`, { sourceUrl: url, id: r.id, duplicate: r.duplicate, sha256: r.contentSha256 });
            await recordAttempt(url, { sha256: r.contentSha256 });
            return;
          } catch (e) {
            log.warn(`fetching ${spec.kind} source failed`, { sourceUrl: url, attempt, error: errorMessage(e) });
            await recordAttempt(url, { error: errorMessage(e) });
            await new Promise((r) => setTimeout(r, backoff));
            backoff *= 2;
          }
        }
      };

      const poll = async () => {
        const sources = config.list('STELLA_FEED_SOURCES');
        if (!sources.length) return;
        if (config.bool('STELLA_OFFLINE')) {
          log.info(`offline mode: not polling ${sources.length} ${spec.kind} source(s); ingest through the queue instead`);
          return;
        }
        const max = config.int('STELLA_FEED_MAX_INFLIGHT');
        const queue = [...sources];
        await Promise.all(
          Array.from({ length: Math.min(max, queue.length) }, async () => {
            for (let u = queue.shift(); u !== undefined && !ctx.isDraining(); u = queue.shift()) await ingestFromFeed(u);
          }),
        );
      };

      ctx.work(`stella.${spec.name}.work`, async (data) => {
        if (!data || typeof data !== 'object') throw new BadWork(`work item is not a JSON object`);
        const d = data as Record<string, unknown>;
        if (typeof d.sourceUrl !== 'string' || !d.sourceUrl) throw new BadWork('work item has no sourceUrl');
        const fetchedAt = typeof d.fetchedAt === 'string' ? new Date(d.fetchedAt) : new Date();
        if (Number.isNaN(fetchedAt.getTime())) throw new BadWork(`fetchedAt ${JSON.stringify(d.fetchedAt)} is not a date`);
        const r = await ingest(pool, spec, { sourceUrl: d.sourceUrl, content: decodeContent(d), mediaType: typeof d.mediaType === 'string' ? d.mediaType : 'application/json', fetchedAt });
        log.info(`${spec.kind} ingested`, { id: r.id, duplicate: r.duplicate, sourceUrl: d.sourceUrl, sha256: r.contentSha256, linkedTo: r.linkedTo });
        return r;
      });

      const docRow = (r: Record<string, unknown>) => ({
        id: String(r.id),
        sourceUrl: r.source_url,
        documentId: r.document_id,
        contentSha256: r.content_sha256,
        mediaType: r.media_type,
        fetchedAt: (r.fetched_at as Date).toISOString(),
        ingestedAt: (r.ingested_at as Date).toISOString(),
        original: `/api/v1/documents/${String(r.id)}/original`,
      });

      return {
        async start() {
          await migrate(pool, spec.name, aggregatorMigrations(spec.name), log);
          if (!config.list('STELLA_FEED_SOURCES').length) {
            let docs: unknown[] = [];
            try {
              docs = JSON.parse(readFileSync(join(ctx.appDir, 'seed', spec.seedFile), 'utf8')) as unknown[];
            } catch {
              log.info(`no bundled ${spec.kind} seed at seed/${spec.seedFile}; nothing to ingest`);
            }
            for (const doc of docs) {
              const id = spec.documentId(doc) ?? createHash('sha256').update(JSON.stringify(doc)).digest('hex').slice(0, 16);
              await ingest(pool, spec, { sourceUrl: `seed:${spec.seedFile}#${id}`, content: Buffer.from(JSON.stringify(doc)), mediaType: 'application/json', fetchedAt: new Date(0) });
            }
            if (docs.length) log.info(`bundled ${spec.kind} seed ingested (existing records unchanged)`, { documents: docs.length });
          }
          const interval = config.ms('STELLA_FEED_POLL_INTERVAL');
          started = true;
          const loop = () => {
            void poll().finally(() => {
              firstPollDone = true;
              if (!ctx.isDraining()) pollTimer = setTimeout(loop, interval);
            });
          };
          loop();
        },
        async stop() {
          if (pollTimer) clearTimeout(pollTimer);
        },
        routes: [
          { method: 'GET', path: '/capabilities', handler: ({ res }) => sendJson(res, 200, { merge: false, aggregation: 'link-only', immutableSources: true, kind: spec.kind }) },
          {
            method: 'GET',
            path: '/status/watermark',
            handler: async ({ res }) => {
              const sources = config.list('STELLA_FEED_SOURCES');
              const offline = config.bool('STELLA_OFFLINE');
              const last = await pool.query<{ at: Date | null; n: string }>(`SELECT max(ingested_at) AS at, count(*) AS n FROM ${t.docs}`).catch(() => ({ rows: [{ at: null, n: '0' }] }));
              const state = await pool
                .query<{ source_url: string; last_attempt_at: Date; last_success_at: Date | null; last_sha256: string | null; last_error: string | null; consecutive_failures: number }>(`SELECT * FROM ${t.state}`)
                .catch(() => ({ rows: [] }));
              const byUrl = new Map(state.rows.map((r) => [r.source_url, r]));
              const iso = (d: Date | null | undefined) => (d ? d.toISOString() : null);
              const report = sources.map((url) => {
                const r = byUrl.get(url);
                return { url, ok: !!r && r.last_error === null && r.last_success_at !== null, lastAttemptAt: iso(r?.last_attempt_at), lastSuccessAt: iso(r?.last_success_at), lastSha256: r?.last_sha256 ?? null, lastError: r?.last_error ?? null, consecutiveFailures: r?.consecutive_failures ?? 0 };
              });
              // Work queued for ingestion (through JetStream) that is not done yet.
              let queuePending: number | null = null;
              try {
                const jsm = await withTimeout(ctx.deps.jetstreamManager(), 2000, 'nats');
                const ci = await jsm.consumers.info(WORK_STREAM, consumerName(`stella.${spec.name}.work`));
                queuePending = ci.num_pending + ci.num_ack_pending;
              } catch {
                queuePending = null;
              }
              const feedsDone = offline || !sources.length || (firstPollDone && report.every((s) => s.ok));
              const caughtUp = started && feedsDone && queuePending === 0;
              sendJson(res, caughtUp ? 200 : 503, {
                caughtUp,
                lastIngestedAt: iso(last.rows[0]?.at),
                records: Number(last.rows[0]?.n ?? 0),
                startupDone: started,
                offline,
                queuePending,
                sources: report,
              });
            },
          },
          {
            method: 'GET',
            path: '/api/v1/documents',
            handler: async ({ res, url }) => {
              const limit = Math.min(500, Math.max(1, Number(url.searchParams.get('limit') ?? 100) || 100));
              const r = await pool.query(`SELECT id, source_url, document_id, content_sha256, media_type, fetched_at, ingested_at FROM ${t.docs} ORDER BY id LIMIT $1`, [limit]);
              sendJson(res, 200, { documents: r.rows.map(docRow) });
            },
          },
          {
            method: 'GET',
            path: /^\/api\/v1\/documents\/(?<id>\d+)$/,
            name: '/api/v1/documents/:id',
            handler: async ({ res, params }) => {
              const r = await pool.query(`SELECT id, source_url, document_id, content_sha256, media_type, fetched_at, ingested_at FROM ${t.docs} WHERE id = $1`, [params.id]);
              if (!r.rows[0]) throw new HttpError(404, `${spec.kind} record ${params.id} not found`);
              const links = await pool.query(`SELECT from_id, to_id, relation FROM ${t.links} WHERE from_id = $1 OR to_id = $1 ORDER BY id`, [params.id]);
              sendJson(res, 200, { ...docRow(r.rows[0]), links: links.rows.map((l) => ({ from: String(l.from_id), to: String(l.to_id), relation: l.relation })) });
            },
          },
          {
            method: 'GET',
            path: /^\/api\/v1\/documents\/(?<id>\d+)\/original$/,
            name: '/api/v1/documents/:id/original',
            handler: async ({ res, params }) => {
              const r = await pool.query<{ content: Buffer; media_type: string; content_sha256: string; source_url: string }>(`SELECT content, media_type, content_sha256, source_url FROM ${t.docs} WHERE id = $1`, [params.id]);
              const row = r.rows[0];
              if (!row) throw new HttpError(404, `${spec.kind} record ${params.id} not found`);
              res.writeHead(200, { 'content-type': row.media_type, 'content-length': String(row.content.length), 'x-content-sha256': row.content_sha256, 'x-source-url': row.source_url });
              res.end(row.content);
            },
          },
        ],
      };
    },
  };
}
