/** Just enough S3 (SigV4, path style) to list and read every object of a bucket for the smoke test. */
import { createHash, createHmac } from 'node:crypto';

const sha256 = (b: string | Buffer) => createHash('sha256').update(b).digest('hex');
const hmac = (k: string | Buffer, s: string) => createHmac('sha256', k).update(s).digest();

export interface S3Access {
  readonly endpoint: string;
  readonly accessKey: string;
  readonly secretKey: string;
  readonly region?: string;
}

/** A signed GET; `query` already in canonical (sorted, encoded) form. */
export async function s3Get(a: S3Access, path: string, query = ''): Promise<{ status: number; body: Buffer }> {
  const url = new URL(`${path}${query ? `?${query}` : ''}`, a.endpoint);
  const region = a.region ?? 'us-east-1';
  const now = new Date().toISOString().replace(/[:-]|\.\d{3}/g, '');
  const day = now.slice(0, 8);
  const payload = sha256('');
  const headers: Record<string, string> = { host: url.host, 'x-amz-content-sha256': payload, 'x-amz-date': now };
  const names = Object.keys(headers).sort();
  const canonical = ['GET', url.pathname, query, ...names.map((n) => `${n}:${headers[n]}`), '', names.join(';'), payload].join('\n');
  const scope = `${day}/${region}/s3/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', now, scope, sha256(canonical)].join('\n');
  const key = hmac(hmac(hmac(hmac(`AWS4${a.secretKey}`, day), region), 's3'), 'aws4_request');
  const signature = createHmac('sha256', key).update(toSign).digest('hex');
  const authorization = `AWS4-HMAC-SHA256 Credential=${a.accessKey}/${scope}, SignedHeaders=${names.join(';')}, Signature=${signature}`;
  const res = await fetch(url, { headers: { ...headers, authorization }, signal: AbortSignal.timeout(15_000) });
  return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
}

/** Every object of the bucket: key → sha256 of its bytes. */
export async function bucketObjects(a: S3Access, bucket: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  let token: string | undefined;
  do {
    const q = [token ? `continuation-token=${encodeURIComponent(token)}` : '', 'list-type=2'].filter(Boolean).join('&');
    const r = await s3Get(a, `/${bucket}`, q);
    const xml = r.body.toString('utf8');
    if (r.status !== 200) throw new Error(`S3 list ${bucket}: HTTP ${r.status}: ${xml.slice(0, 200)}`);
    const keys = [...xml.matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => m[1]!.replaceAll('&amp;', '&').replaceAll('&lt;', '<').replaceAll('&gt;', '>').replaceAll('&quot;', '"').replaceAll('&apos;', "'"));
    for (const k of keys) {
      const o = await s3Get(a, `/${bucket}/${k.split('/').map(encodeURIComponent).join('/')}`);
      if (o.status !== 200) throw new Error(`S3 get ${bucket}/${k}: HTTP ${o.status}`);
      out[k] = sha256(o.body);
    }
    token = /<IsTruncated>true<\/IsTruncated>/.test(xml) ? /<NextContinuationToken>([^<]*)</.exec(xml)?.[1] : undefined;
  } while (token);
  return out;
}
