/**
 * The S3-compatible object store (SeaweedFS/MinIO in the quickstart, S3 in production),
 * through the AWS SDK v3 S3 client: every request SigV4-signed for the configured region
 * (STELLA_OBJECT_STORE_REGION), path-style or virtual-host addressing
 * (STELLA_OBJECT_STORE_PATH_STYLE). Without an access key the SDK's default credential
 * chain applies (AWS_* variables, web identity / IRSA, the instance role).
 *
 * Readiness is a HeadBucket: it proves the endpoint answers, the credentials are accepted
 * and the bucket exists; each failure is named (403: credentials refused, 404: no bucket).
 */
import { createHash } from 'node:crypto';
import { GetObjectCommand, HeadBucketCommand, PutObjectCommand, S3Client, S3ServiceException, type ServerSideEncryption } from '@aws-sdk/client-s3';

export interface ObjectStoreSettings {
  readonly endpoint: string;
  readonly bucket: string;
  readonly region: string;
  readonly pathStyle: boolean;
  readonly accessKey?: string;
  readonly secretKey?: string;
  readonly sse: string;
}

export class ObjectStore {
  readonly settings: ObjectStoreSettings;
  readonly client: S3Client;

  constructor(settings: ObjectStoreSettings, timeoutMs = 30_000) {
    this.settings = settings;
    this.client = new S3Client({
      endpoint: settings.endpoint,
      region: settings.region,
      forcePathStyle: settings.pathStyle,
      ...(settings.accessKey && settings.secretKey ? { credentials: { accessKeyId: settings.accessKey, secretAccessKey: settings.secretKey } } : {}),
      // S3-compatible stores (SeaweedFS, MinIO, Ceph) do not all accept the SDK's default
      // CRC32 trailers; checksums only where an operation requires them.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 2,
      requestHandler: { requestTimeout: timeoutMs, connectionTimeout: Math.min(timeoutMs, 5000) },
    });
  }

  /** Writes one object; returns its s3:// URL, SHA-256 and ETag. */
  async put(key: string, body: Buffer, contentType: string): Promise<{ url: string; sha256: string; etag: string | null }> {
    const sha256 = createHash('sha256').update(body).digest('hex');
    try {
      const r = await this.client.send(
        new PutObjectCommand({
          Bucket: this.settings.bucket,
          Key: key,
          Body: body,
          ContentType: contentType,
          ContentLength: body.length,
          Metadata: { sha256 },
          ...(this.settings.sse !== 'none' ? { ServerSideEncryption: this.settings.sse as ServerSideEncryption } : {}),
        }),
      );
      return { url: `s3://${this.settings.bucket}/${key}`, sha256, etag: r.ETag ?? null };
    } catch (e) {
      throw new Error(`object store PUT s3://${this.settings.bucket}/${key} failed: ${describeS3Error(e, this.settings)}`, { cause: e });
    }
  }

  async get(key: string): Promise<Buffer> {
    try {
      const r = await this.client.send(new GetObjectCommand({ Bucket: this.settings.bucket, Key: key }));
      return Buffer.from(await r.Body!.transformToByteArray());
    } catch (e) {
      throw new Error(`object store GET s3://${this.settings.bucket}/${key} failed: ${describeS3Error(e, this.settings)}`, { cause: e });
    }
  }

  /** The readiness check: HeadBucket, each failure with its cause. */
  async check(signal?: AbortSignal): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.settings.bucket }), signal ? { abortSignal: signal } : {});
    } catch (e) {
      throw new Error(describeS3Error(e, this.settings));
    }
  }

  close(): void {
    this.client.destroy();
  }
}

/** A message naming what went wrong (never a secret: the SDK's errors carry none). */
export function describeS3Error(e: unknown, s: Pick<ObjectStoreSettings, 'bucket' | 'endpoint' | 'region'>): string {
  const status = e instanceof S3ServiceException ? e.$metadata.httpStatusCode : (e as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode;
  const code = (e as { name?: string; Code?: string })?.Code ?? (e as { name?: string })?.name ?? '';
  if (status === 403 || /AccessDenied|SignatureDoesNotMatch|InvalidAccessKeyId/.test(code)) {
    return `credentials refused by ${s.endpoint} (HTTP ${status ?? 403}${code && code !== 'Forbidden' ? ` ${code}` : ''}): check STELLA_OBJECT_STORE_ACCESS_KEY and STELLA_OBJECT_STORE_SECRET_KEY`;
  }
  if (status === 404 || code === 'NotFound' || code === 'NoSuchBucket') {
    return `bucket "${s.bucket}" does not exist at ${s.endpoint} (HTTP 404): create it or set STELLA_OBJECT_STORE_BUCKET`;
  }
  if (status === 301 || code === 'PermanentRedirect' || code === 'AuthorizationHeaderMalformed') {
    return `bucket "${s.bucket}" is not in region ${s.region} (HTTP ${status ?? 400} ${code}): set STELLA_OBJECT_STORE_REGION`;
  }
  if (status) return `HTTP ${status}${code ? ` ${code}` : ''} from ${s.endpoint}`;
  if (code === 'CredentialsProviderError') return `no credentials for ${s.endpoint}: set STELLA_OBJECT_STORE_ACCESS_KEY and STELLA_OBJECT_STORE_SECRET_KEY (or give the workload an AWS identity)`;
  const cause = (e as { cause?: unknown })?.cause;
  const msg = e instanceof Error ? e.message || e.name : String(e);
  const causeMsg = cause instanceof Error ? cause.message : '';
  return `${s.endpoint} unreachable: ${msg}${causeMsg && causeMsg !== msg ? `: ${causeMsg}` : ''}`;
}
