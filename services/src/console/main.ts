/**
 * stella-console (Web UI): serves the static console (ui/: plain HTML, CSS, JS): sign-in, the
 * onboarding wizard and, in quickstart mode, the "Connected to Quickstart" banner; the install
 * docs (docs/install/*.md, copied in at build time) rendered to HTML (./docs.ts); and proxies
 * /api/* and /welcome to STELLA_API_URL.
 *
 * The same bundle is the `stella` CLI the console's "Copy CLI" buttons hand out:
 * `node main.js <command>` (in the quickstart: `docker compose run --rm --no-deps console
 * <command>`, the console image on the stack's network) with the token in STELLAOPS_TOKEN:
 *   whoami        who the token belongs to          GET  /api/v1/auth/whoami
 *   import-scan   the sample scan import            POST /api/v1/scans/import
 *   findings      the Vulnerability Explorer's rows GET  /api/v1/findings
 *   export-pack   the Task Pack of the tenant's data, written to stdout
 */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize, sep } from 'node:path';
import { runService, type ServiceContext } from '../runtime/service.ts';
import { HttpError, sendText, type RequestContext } from '../runtime/http.ts';
import { InstallDocs } from './docs.ts';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.md': 'text/markdown; charset=utf-8',
  '.json': 'application/json',
};
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'host']);

/** Serves a file below `root`; paths escaping it are refused. */
async function serveFile(root: string, rel: string, { res }: RequestContext): Promise<void> {
  const path = normalize(join(root, rel));
  if (path !== root && !path.startsWith(root + sep)) throw new HttpError(400, 'path escapes the served directory');
  let data: Buffer;
  try {
    data = await readFile(path);
  } catch {
    throw new HttpError(404, `not found: ${rel}`);
  }
  res.setHeader('x-content-type-options', 'nosniff');
  res.setHeader('cache-control', 'no-cache');
  sendText(res, 200, data, TYPES[extname(path)] ?? 'application/octet-stream');
}

function forwardHeaders(h: IncomingHttpHeaders): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined && !HOP_BY_HOP.has(k)) out[k] = v;
  return out;
}

/** The CLI's one call: the API at STELLA_API_URL with the token in STELLAOPS_TOKEN; the JSON answer. */
async function call(ctx: ServiceContext, method: string, path: string, body?: unknown): Promise<unknown> {
  const token = process.env.STELLAOPS_TOKEN;
  if (!token) throw new Error('STELLAOPS_TOKEN is not set: generate an API token (console: Welcome, step 2; or POST /api/v1/tokens) and export STELLAOPS_TOKEN=<token>');
  const url = new URL(path, ctx.config.str('STELLA_API_URL'));
  let r: Response;
  try {
    r = await fetch(url, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body), signal: AbortSignal.timeout(30_000) });
  } catch (e) {
    throw new Error(`the API at ${url.origin} is unreachable (${(e as Error).message}); check STELLA_API_URL`);
  }
  const text = await r.text();
  if (!r.ok) throw new Error(`${method} ${path}: HTTP ${r.status} ${text.trim()}`);
  return path.endsWith('/download') ? text : JSON.parse(text);
}

const print = (v: unknown) => process.stdout.write(typeof v === 'string' ? v : `${JSON.stringify(v, null, 2)}\n`);

/** Errors of a CLI command: one line on stderr, exit 1 (the runtime's JSON log is for services). */
const cli = (run: (ctx: ServiceContext) => Promise<unknown>) => async (ctx: ServiceContext) => {
  try {
    print(await run(ctx));
    return 0;
  } catch (e) {
    process.stderr.write(`stella: ${(e as Error).message}\n`);
    return 1;
  }
};

await runService({
  name: 'console',
  commands: {
    whoami: cli((ctx) => call(ctx, 'GET', '/api/v1/auth/whoami')),
    'import-scan': cli((ctx) => call(ctx, 'POST', '/api/v1/scans/import', {})),
    findings: cli((ctx) => call(ctx, 'GET', '/api/v1/findings')),
    'export-pack': cli(async (ctx) => {
      const req = (await call(ctx, 'POST', '/api/v1/exports', { target: 'production', format: 'json', kind: 'task-pack' })) as { exportId: string };
      for (let i = 0; i < 60; i++) {
        const st = (await call(ctx, 'GET', `/api/v1/exports/${req.exportId}`)) as { status: string };
        if (st.status === 'written') return call(ctx, 'GET', `/api/v1/exports/${req.exportId}/download`);
        await new Promise((r) => setTimeout(r, 1000));
      }
      throw new Error(`export ${req.exportId} was not written within 60 s: is the Export Center (export) running?`);
    }),
  },
  setup(ctx) {
    const ui = join(ctx.appDir, 'ui');
    const docs = new InstallDocs(join(ctx.appDir, 'docs', 'install'));
    const api = new URL(ctx.config.str('STELLA_API_URL'));
    const timeoutMs = 30_000;

    const proxy = ({ req, res, url }: RequestContext) =>
      new Promise<void>((resolve) => {
        const target = new URL(url.pathname + url.search, api);
        const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
        const up = send(target, { method: req.method, headers: { ...forwardHeaders(req.headers), 'x-forwarded-host': req.headers.host ?? '' }, timeout: timeoutMs }, (ur) => {
          res.writeHead(ur.statusCode ?? 502, forwardHeaders(ur.headers));
          ur.pipe(res);
          ur.on('end', () => resolve());
          ur.on('error', () => {
            res.destroy();
            resolve();
          });
        });
        up.on('timeout', () => up.destroy(new Error(`no answer within ${timeoutMs} ms`)));
        up.on('error', (e) => {
          if (!res.headersSent) {
            const body = JSON.stringify({ error: `the API at ${api.origin} is unreachable: ${e.message}` });
            res.writeHead(502, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) });
            res.end(body);
          } else res.destroy();
          resolve();
        });
        req.pipe(up);
      });

    return {
      routes: [
        { method: 'GET', path: '/', handler: (c) => serveFile(ui, 'index.html', c) },
        { method: 'GET', path: /^\/ui\/(?<file>[A-Za-z0-9._-]+)$/, name: '/ui/:file', handler: (c) => serveFile(ui, c.params.file!, c) },
        // The install docs, rendered; the .md addresses (STELLA_DOCS_URL's default) lead to them.
        { method: 'GET', path: /^\/docs\/install\/?$/, name: '/docs/install/', handler: ({ res }) => void res.writeHead(302, { location: '/docs/install/overview.html' }).end() },
        { method: 'GET', path: /^\/docs\/install\/(?<page>[A-Za-z0-9_-]+)\.md$/, name: '/docs/install/:page.md', handler: ({ res, params }) => void res.writeHead(302, { location: `/docs/install/${params.page}.html` }).end() },
        {
          method: 'GET',
          path: /^\/docs\/install\/(?<page>[A-Za-z0-9_-]+)\.html$/,
          name: '/docs/install/:page.html',
          handler: async ({ res, params }) => {
            const page = await docs.page(params.page!);
            if (!page) throw new HttpError(404, `no install doc named ${params.page}; the offline copy has: ${(await docs.pages()).join(', ')}`);
            res.setHeader('x-content-type-options', 'nosniff');
            res.setHeader('cache-control', 'no-cache');
            sendText(res, 200, page.html, 'text/html; charset=utf-8');
          },
        },
        { method: '*', path: /^\/api\//, name: '/api/*', handler: proxy },
        { method: '*', path: /^\/welcome(\/.*)?$/, name: '/welcome', handler: proxy },
      ],
    };
  },
});
