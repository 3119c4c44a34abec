/**
 * AWS Signature Version 4 for S3 path-style requests (the algorithm of
 * https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html),
 * enough for the object store test: PUT bucket, PUT/GET object. The server
 * (SeaweedFS's S3 gateway) verifies the signature: a wrong secret gets 403.
 */
import { createHash, createHmac } from 'node:crypto';

export interface S3Credentials {
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  readonly region?: string;
}

const sha256Hex = (b: string | Uint8Array): string => createHash('sha256').update(b).digest('hex');
const hmac = (key: string | Buffer, data: string): Buffer => createHmac('sha256', key).update(data).digest();

/** RFC 3986 encoding of one path segment, as SigV4 wants it. */
function encodeSegment(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

export async function s3Fetch(endpoint: string, method: string, path: string, creds: S3Credentials, body?: Uint8Array, now = new Date()): Promise<Response> {
  const url = new URL(endpoint);
  const region = creds.region ?? 'us-east-1';
  const amzDate = now.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}/, '');
  const day = amzDate.slice(0, 8);
  const payloadHash = sha256Hex(body ?? new Uint8Array());
  const canonicalUri = path.split('/').map(encodeSegment).join('/');
  const headers: Record<string, string> = { host: url.host, 'x-amz-content-sha256': payloadHash, 'x-amz-date': amzDate };
  const signed = Object.keys(headers).sort();
  const canonicalRequest = [method, canonicalUri, '', ...signed.map((h) => `${h}:${headers[h]}\n`).join('').split('\n').slice(0, -1), '', signed.join(';'), payloadHash].join('\n');
  const scope = `${day}/${region}/s3/aws4_request`;
  const toSign = ['AWS4-HMAC-SHA256', amzDate, scope, sha256Hex(canonicalRequest)].join('\n');
  const kSigning = hmac(hmac(hmac(hmac(`AWS4${creds.secretAccessKey}`, day), region), 's3'), 'aws4_request');
  const signature = createHmac('sha256', kSigning).update(toSign).digest('hex');
  const authorization = `AWS4-HMAC-SHA256 Credential=${creds.accessKeyId}/${scope}, SignedHeaders=${signed.join(';')}, Signature=${signature}`;
  return fetch(new URL(canonicalUri, url), {
    method,
    headers: { ...headers, authorization, ...(body ? { 'content-length': String(body.byteLength) } : {}) },
    ...(body ? { body } : {}),
  });
}
