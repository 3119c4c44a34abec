/**
 * stella-console (Web UI): serves the static console (ui/: plain HTML, CSS, JS) with the
 * onboarding wizard and, in quickstart mode, the "Connected to Quickstart" banner; an
 * offline copy of the install docs (docs/install/); and proxies /api/* and /welcome to
 * STELLA_API_URL.
 */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { readFile } from 'node:fs/promises';
import { extname, join, normalize, sep } from 'node:path';
import { runService } from '../runtime/service.ts';
import { HttpError, sendText, type RequestContext } from '../runtime/http.ts';

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

await runService({
  name: 'console',
  setup(ctx) {
    const ui = join(ctx.appDir, 'ui');
    const docs = join(ctx.appDir, 'docs');
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
        { method: 'GET', path: /^\/docs\/(?<file>[A-Za-z0-9._/-]+\.md)$/, name: '/docs/:file', handler: (c) => serveFile(docs, c.params.file!, c) },
        { method: '*', path: /^\/api\//, name: '/api/*', handler: proxy },
        { method: '*', path: /^\/welcome(\/.*)?$/, name: '/welcome', handler: proxy },
      ],
    };
  },
});
