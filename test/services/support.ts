/**
 * Support servers for the service tests beyond PostgreSQL/Redis/NATS (test/helpers/servers.ts):
 *
 * - SeaweedFS's S3 gateway (`weed server -s3`), the object store of the support images,
 *   from the `weed` binary engineer F's support-image build caches (STELLA_WEED_BIN, or
 *   ${STELLA_CACHE:-/var/tmp/stella-cache}/support/**\/weed*, or /var/cache/stella-tools);
 *   with one identity (access key + secret) and SigV4 checked by the gateway itself.
 * - An OpenTelemetry collector binary when one is cached (STELLA_OTELCOL_BIN or the same
 *   caches), else `startOtlpReceiver`: an OTLP/HTTP receiver that decodes the JSON export
 *   (`ExportTraceServiceRequest`) the JS SDK's OTLP/HTTP exporter sends.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateBucketCommand, ListBucketsCommand, S3Client } from '@aws-sdk/client-s3';
import { freePort, waitFor } from '../helpers/net.ts';

import { weedBinary, otelcolBinary } from '../../ci/src/support/binaries.ts';

export { weedBinary, otelcolBinary };

export interface TestS3 {
  readonly endpoint: string;
  readonly accessKey: string;
  readonly secretKey: string;
  /** An S3 client with the good credentials (path-style). */
  readonly client: S3Client;
  createBucket(name: string): Promise<void>;
  stop(): Promise<void>;
}

function spawnLogged(bin: string, args: string[], cwd: string): { proc: ChildProcess; output: () => string } {
  const proc = spawn(bin, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const add = (d: Buffer) => (out = (out + String(d)).slice(-8000));
  proc.stdout!.on('data', add);
  proc.stderr!.on('data', add);
  return { proc, output: () => out };
}

async function kill(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

/** SeaweedFS (master, volume, filer, S3 gateway) in one process, on loopback ports. */
export async function startSeaweedS3(opts: { accessKey?: string; secretKey?: string } = {}): Promise<TestS3> {
  const bin = weedBinary();
  if (!bin) throw new Error('no SeaweedFS `weed` binary: build the support images (ci/src/support) or set STELLA_WEED_BIN');
  const dir = mkdtempSync(join(tmpdir(), 'stella-weed-'));
  const data = join(dir, 'data');
  mkdirSync(data);
  const accessKey = opts.accessKey ?? 'stella-test-access';
  const secretKey = opts.secretKey ?? `secret-${Math.random().toString(36).slice(2)}`;
  const s3Config = join(dir, 's3.json');
  writeFileSync(s3Config, JSON.stringify({ identities: [{ name: 'stella', credentials: [{ accessKey, secretKey }], actions: ['Admin', 'Read', 'Write', 'List', 'Tagging'] }] }));
  const [master, volume, filer, s3] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const grpc = [await freePort(), await freePort(), await freePort(), await freePort()];
  const args = [
    'server',
    `-dir=${data}`,
    '-ip=127.0.0.1',
    '-ip.bind=127.0.0.1',
    `-master.port=${master}`,
    `-master.port.grpc=${grpc[0]}`,
    '-master.volumeSizeLimitMB=16',
    `-volume.port=${volume}`,
    `-volume.port.grpc=${grpc[1]}`,
    '-volume.max=20',
    '-filer',
    `-filer.port=${filer}`,
    `-filer.port.grpc=${grpc[2]}`,
    '-s3',
    `-s3.port=${s3}`,
    `-s3.port.grpc=${grpc[3]}`,
    // Off: the Iceberg/Lance catalogs (fixed default ports) and the master's phone-home telemetry.
    '-s3.port.iceberg=0',
    '-s3.port.lance=0',
    '-master.telemetry=false',
    `-s3.config=${s3Config}`,
  ];
  const { proc, output } = spawnLogged(bin, args, dir);
  const endpoint = `http://127.0.0.1:${s3}`;
  const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: accessKey, secretAccessKey: secretKey }, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' });
  const stop = async () => {
    client.destroy();
    await kill(proc);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(`SeaweedFS S3 gateway on ${endpoint}`, async () => {
      if (proc.exitCode !== null) throw new Error(`weed exited with ${proc.exitCode}`);
      await client.send(new ListBucketsCommand({}));
      return true;
    }, 60_000, 300);
  } catch (e) {
    const out = output();
    await stop();
    throw new Error(`${(e as Error).message}\n${out}`);
  }
  return {
    endpoint,
    accessKey,
    secretKey,
    client,
    async createBucket(name: string) {
      await client.send(new CreateBucketCommand({ Bucket: name }));
      // The filer creates the bucket directory asynchronously; wait until it is listed.
      await waitFor(`bucket ${name}`, async () => ((await client.send(new ListBucketsCommand({}))).Buckets ?? []).some((b) => b.Name === name), 20_000, 200);
    },
    stop,
  };
}

export interface ReceivedSpan {
  readonly name: string;
  readonly kind: number | string;
  readonly traceId: string;
  readonly attributes: Record<string, unknown>;
  readonly resource: Record<string, unknown>;
}

export interface TraceSink {
  /** The endpoint to give STELLA_OTEL_EXPORTER_ENDPOINT (base URL, the services add /v1/traces). */
  readonly endpoint: string;
  /** What received the spans: `otelcol <path>` or `test OTLP/HTTP receiver`. */
  readonly kind: string;
  spans(): ReceivedSpan[];
  stop(): Promise<void>;
}

type AnyValue = { stringValue?: string; intValue?: string | number; boolValue?: boolean; doubleValue?: number; arrayValue?: { values?: AnyValue[] } };
const value = (v: AnyValue | undefined): unknown => (v === undefined ? undefined : (v.stringValue ?? (v.intValue !== undefined ? Number(v.intValue) : undefined) ?? v.boolValue ?? v.doubleValue ?? v.arrayValue?.values?.map(value)));
const attrs = (list: { key: string; value?: AnyValue }[] | undefined): Record<string, unknown> => Object.fromEntries((list ?? []).map((a) => [a.key, value(a.value)]));

interface ExportRequest {
  resourceSpans?: { resource?: { attributes?: { key: string; value?: AnyValue }[] }; scopeSpans?: { spans?: { name: string; kind: number | string; traceId: string; attributes?: { key: string; value?: AnyValue }[] }[] }[] }[];
}

function flatten(req: ExportRequest): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of req.resourceSpans ?? []) {
    const resource = attrs(rs.resource?.attributes);
    for (const ss of rs.scopeSpans ?? []) for (const s of ss.spans ?? []) out.push({ name: s.name, kind: s.kind, traceId: s.traceId, attributes: attrs(s.attributes), resource });
  }
  return out;
}

/** A real collector (file exporter, JSON lines) when a binary is cached, else the test receiver. */
export async function startTraceSink(): Promise<TraceSink> {
  const bin = otelcolBinary();
  if (!bin) return startOtlpReceiver();
  const dir = mkdtempSync(join(tmpdir(), 'stella-otelcol-'));
  const port = await freePort();
  const health = await freePort();
  const out = join(dir, 'traces.jsonl');
  const config = join(dir, 'config.yaml');
  writeFileSync(
    config,
    `receivers:\n  otlp:\n    protocols:\n      http:\n        endpoint: 127.0.0.1:${port}\nexporters:\n  file:\n    path: ${out}\n    flush_interval: 100ms\nextensions:\n  health_check:\n    endpoint: 127.0.0.1:${health}\nservice:\n  extensions: [health_check]\n  telemetry:\n    metrics:\n      level: none\n  pipelines:\n    traces:\n      receivers: [otlp]\n      exporters: [file]\n`,
  );
  const { proc, output } = spawnLogged(bin, ['--config', config], dir);
  const stop = async () => {
    await kill(proc);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await waitFor(`otelcol health on ${health}`, async () => {
      if (proc.exitCode !== null) throw new Error(`otelcol exited with ${proc.exitCode}`);
      return (await fetch(`http://127.0.0.1:${health}/`)).status === 200;
    }, 30_000, 200);
  } catch (e) {
    const o = output();
    await stop();
    throw new Error(`${(e as Error).message}\n${o}`);
  }
  return {
    endpoint: `http://127.0.0.1:${port}`,
    kind: `otelcol ${bin}`,
    spans: () => {
      if (!existsSync(out)) return [];
      return readFileSync(out, 'utf8')
        .split('\n')
        .filter(Boolean)
        .flatMap((l) => flatten(JSON.parse(l) as ExportRequest));
    },
    stop,
  };
}

/** An OTLP/HTTP trace receiver: POST /v1/traces, JSON encoding (what the JS exporter sends). */
export async function startOtlpReceiver(): Promise<TraceSink> {
  const received: ReceivedSpan[] = [];
  const port = await freePort();
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      if (!String(req.headers['content-type']).startsWith('application/json')) {
        res.writeHead(415).end('only the JSON encoding is decoded here');
        return;
      }
      try {
        received.push(...flatten(JSON.parse(Buffer.concat(chunks).toString('utf8')) as ExportRequest));
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      } catch {
        res.writeHead(400).end();
      }
    });
  });
  await new Promise<void>((r) => server.listen(port, '127.0.0.1', () => r()));
  return { endpoint: `http://127.0.0.1:${port}`, kind: 'test OTLP/HTTP receiver', spans: () => [...received], stop: () => new Promise<void>((r) => server.close(() => r())) };
}
