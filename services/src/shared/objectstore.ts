/**
 * Writes one object to the S3-compatible store (MinIO in the quickstart): a path-style
 * PUT `${endpoint}/${bucket}/${key}`, signed with AWS Signature V4 (aws4) when access
 * keys are configured, with server-side encryption when STELLA_OBJECT_STORE_SSE asks.
 */
import { createHash } from 'node:crypto';
import aws4 from 'aws4';
import type { ObjectStoreSettings } from '../runtime/deps.ts';

export async function putObject(os: ObjectStoreSettings, key: string, body: Buffer, contentType: string): Promise<{ url: string; sha256: string; etag: string | null }> {
  const url = new URL(`${os.endpoint.replace(/\/+$/, '')}/${encodeURIComponent(os.bucket)}/${key.split('/').map(encodeURIComponent).join('/')}`);
  const sha256 = createHash('sha256').update(body).digest('hex');
  const headers: Record<string, string> = { 'content-type': contentType, 'content-length': String(body.length), 'x-amz-content-sha256': sha256 };
  if (os.sse !== 'none') headers['x-amz-server-side-encryption'] = os.sse;
  if (os.accessKey && os.secretKey) {
    const signed = aws4.sign(
      { host: url.host, path: `${url.pathname}${url.search}`, method: 'PUT', service: 's3', region: 'us-east-1', headers, body },
      { accessKeyId: os.accessKey, secretAccessKey: os.secretKey },
    );
    for (const [k, v] of Object.entries(signed.headers ?? {})) headers[k.toLowerCase()] = String(v);
  }
  const res = await fetch(url, { method: 'PUT', headers, body: new Uint8Array(body), signal: AbortSignal.timeout(30_000) });
  const text = await res.text();
  if (!res.ok) throw new Error(`object store PUT ${url.pathname} answered HTTP ${res.status}: ${text.slice(0, 200)}`);
  return { url: url.toString(), sha256, etag: res.headers.get('etag') };
}
