/**
 * A loopback HTTP proxy in front of a real registry that injects faults on
 * request, counts what passes, and can demand auth:
 *
 *   const proxy = await startFaultProxy({ upstream: registry.host });
 *   proxy.fault({ method: 'PUT', path: /\/blobs\/uploads\//, action: { kind: 'reset', afterBytes: 1000 } });
 *   proxy.fault({ method: 'GET', action: { kind: 'status', status: 429, headers: { 'retry-after': '1' } } });
 *   proxy.count('PUT')                                   // requests seen
 *
 * Auth modes: `bearer` answers 401 with a Bearer challenge until a request
 * carries the token its `/token` endpoint issues (for the right Basic
 * credentials); `basic` demands the Basic credentials on every /v2/ request.
 * Rejections echo the Authorization header they got, as careless servers do,
 * so tests can prove the client redacts what servers send back.
 * The upstream never sees an Authorization header. The Host header is passed
 * through, so the registry's Location headers point back at the proxy.
 */
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type FaultAction =
  /** Answer with this status (and headers/body) instead of forwarding. */
  | { readonly kind: 'status'; readonly status: number; readonly headers?: Record<string, string>; readonly body?: string }
  /** Forward, but destroy both connections after this many request-body bytes. */
  | { readonly kind: 'reset'; readonly afterBytes: number }
  /** Forward, then destroy the client connection after this many response-body bytes. */
  | { readonly kind: 'reset-response'; readonly afterBytes: number };

export interface FaultRule {
  readonly method?: string;
  readonly path?: RegExp;
  /** How many matching requests get the fault; default 1. */
  readonly times?: number;
  readonly action: FaultAction;
}

export interface SeenRequest {
  readonly method: string;
  readonly path: string;
  readonly query: string;
  readonly status: number;
  readonly fault?: FaultAction['kind'];
  readonly authorization?: string;
}

export interface FaultProxyOptions {
  /** host:port of the real registry. */
  readonly upstream: string;
  /** Rewrite absolute Location headers to path-only ones (as some registries send). */
  readonly relativeLocations?: boolean;
  readonly auth?: {
    readonly mode: 'bearer' | 'basic';
    readonly username: string;
    readonly password: string;
    /** The token `/token` issues (bearer mode). */
    readonly token: string;
  };
}

export interface FaultProxy {
  readonly host: string;
  readonly url: string;
  readonly requests: SeenRequest[];
  fault(rule: FaultRule): void;
  clearFaults(): void;
  /** Requests seen (excluding the token endpoint), optionally filtered. */
  count(method?: string, path?: RegExp): number;
  /** Calls to /token: [granted, refused]. */
  readonly tokenCalls: { granted: number; refused: number };
  reset(): void;
  stop(): Promise<void>;
}

interface LiveRule {
  readonly rule: FaultRule;
  left: number;
}

function repoOf(path: string): string | undefined {
  const m = /^\/v2\/(.+?)\/(?:blobs|manifests|tags|referrers)\//.exec(path);
  return m?.[1];
}

export async function startFaultProxy(opts: FaultProxyOptions): Promise<FaultProxy> {
  const rules: LiveRule[] = [];
  const requests: SeenRequest[] = [];
  const tokenCalls = { granted: 0, refused: 0 };
  const [upHost, upPort] = [opts.upstream.slice(0, opts.upstream.lastIndexOf(':')), Number(opts.upstream.slice(opts.upstream.lastIndexOf(':') + 1))];
  let selfHost = '';
  const basicExpected = opts.auth ? `Basic ${Buffer.from(`${opts.auth.username}:${opts.auth.password}`).toString('base64')}` : '';

  const take = (method: string, path: string): FaultAction | undefined => {
    for (const r of rules) {
      if (r.left <= 0) continue;
      if (r.rule.method && r.rule.method !== method) continue;
      if (r.rule.path && !r.rule.path.test(path)) continue;
      r.left--;
      return r.rule.action;
    }
    return undefined;
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const url = new URL(req.url ?? '/', `http://${selfHost}`);
    const method = req.method ?? 'GET';
    const authz = req.headers.authorization;
    const record = (status: number, fault?: FaultAction['kind']) =>
      requests.push({ method, path: url.pathname, query: url.search, status, ...(fault ? { fault } : {}), ...(authz ? { authorization: authz } : {}) });

    // Token endpoint (bearer mode).
    if (url.pathname === '/token' && opts.auth) {
      req.resume();
      if (authz !== basicExpected) {
        tokenCalls.refused++;
        res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Basic realm="fault-proxy"' });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: `bad credentials: ${authz ?? 'none'}` }] }));
        return;
      }
      tokenCalls.granted++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ token: opts.auth.token, access_token: opts.auth.token, expires_in: 300, issued_at: new Date().toISOString() }));
      return;
    }

    if (opts.auth && url.pathname.startsWith('/v2')) {
      const ok = opts.auth.mode === 'bearer' ? authz === `Bearer ${opts.auth.token}` : authz === basicExpected;
      if (!ok) {
        req.resume();
        const repo = repoOf(url.pathname);
        const challenge =
          opts.auth.mode === 'bearer'
            ? `Bearer realm="http://${selfHost}/token",service="fault-proxy"${repo ? `,scope="repository:${repo}:pull,push"` : ''}`
            : 'Basic realm="fault-proxy"';
        res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': challenge });
        res.end(JSON.stringify({ errors: [{ code: 'UNAUTHORIZED', message: `authentication required; got ${authz ?? 'none'}` }] }));
        record(401);
        return;
      }
    }

    const action = take(method, url.pathname);
    if (action?.kind === 'status') {
      req.resume();
      res.writeHead(action.status, { 'content-type': 'text/plain', ...action.headers });
      res.end(action.body ?? `injected ${action.status}`);
      record(action.status, 'status');
      return;
    }

    const headers = { ...req.headers };
    delete headers.authorization;
    const up = httpRequest({ host: upHost, port: upPort, method, path: req.url, headers }, (upRes) => {
      record(upRes.statusCode ?? 0, action?.kind);
      const outHeaders = { ...upRes.headers };
      if (opts.relativeLocations && typeof outHeaders.location === 'string' && /^https?:\/\//.test(outHeaders.location)) {
        const loc = new URL(outHeaders.location);
        outHeaders.location = loc.pathname + loc.search;
      }
      res.writeHead(upRes.statusCode ?? 502, outHeaders);
      if (action?.kind === 'reset-response') {
        let sent = 0;
        upRes.on('data', (chunk: Buffer) => {
          const room = action.afterBytes - sent;
          if (room <= 0) return;
          res.write(chunk.subarray(0, room));
          sent += Math.min(room, chunk.length);
          if (sent >= action.afterBytes) {
            upRes.destroy();
            res.socket?.destroy();
          }
        });
        return;
      }
      upRes.pipe(res);
    });
    up.on('error', () => {
      if (!res.headersSent) {
        res.writeHead(502);
        res.end('upstream error');
      } else {
        res.socket?.destroy();
      }
    });
    if (action?.kind === 'reset') {
      let seen = 0;
      req.on('data', (chunk: Buffer) => {
        const room = action.afterBytes - seen;
        if (room > 0) up.write(chunk.subarray(0, room));
        seen += chunk.length;
        if (seen >= action.afterBytes) {
          record(0, 'reset');
          req.socket.destroy();
          up.destroy();
        }
      });
      req.on('end', () => up.end());
      return;
    }
    req.pipe(up);
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  selfHost = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    host: selfHost,
    url: `http://${selfHost}`,
    requests,
    tokenCalls,
    fault(rule) {
      rules.push({ rule, left: rule.times ?? 1 });
    },
    clearFaults() {
      rules.length = 0;
    },
    count(method, path) {
      return requests.filter((r) => (!method || r.method === method) && (!path || path.test(r.path))).length;
    },
    reset() {
      rules.length = 0;
      requests.length = 0;
      tokenCalls.granted = 0;
      tokenCalls.refused = 0;
    },
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
