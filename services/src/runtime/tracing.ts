/**
 * Traces over OTLP/HTTP (the OpenTelemetry JS SDK) when STELLA_OTEL_EXPORTER_ENDPOINT is
 * set; no tracer at all otherwise. One SERVER span per HTTP request (continuing an incoming
 * W3C `traceparent`) and one CONSUMER span per work item. The resource carries the release:
 * service.name `stella-<service>`, service.version, vcs.ref.head.revision (the git commit)
 * and the build date. Spans are batched and flushed during shutdown.
 */
import { SpanKind, SpanStatusCode, ROOT_CONTEXT, type Context, type Span, type Tracer } from '@opentelemetry/api';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BatchSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { hostname } from 'node:os';
import type { IncomingHttpHeaders } from 'node:http';

export interface Build {
  readonly version: string;
  readonly gitCommit: string;
  readonly buildDate: string;
}

/** `http://collector:4318` → `http://collector:4318/v1/traces`; a URL already naming /v1/traces is kept. */
export function tracesUrl(endpoint: string): string {
  const u = endpoint.replace(/\/+$/, '');
  return /\/v1\/traces$/.test(u) ? u : `${u}/v1/traces`;
}

const propagator = new W3CTraceContextPropagator();
const headerGetter = {
  keys: (h: IncomingHttpHeaders) => Object.keys(h),
  get: (h: IncomingHttpHeaders, k: string) => h[k.toLowerCase()],
};

export class Tracing {
  private readonly provider: TracerProvider;
  readonly tracer: Tracer;
  readonly url: string;

  constructor(service: string, build: Build, endpoint: string) {
    this.url = tracesUrl(endpoint);
    this.provider = new TracerProvider({
      resource: resourceFromAttributes({
        'service.name': `stella-${service}`,
        'service.namespace': 'stellaops',
        'service.version': build.version,
        'service.instance.id': hostname(),
        'vcs.ref.head.revision': build.gitCommit,
        'stella.build.date': build.buildDate,
      }),
      spanProcessors: [new BatchSpanProcessor({ exporter: new OTLPTraceExporter({ url: this.url, timeoutMillis: 10_000 }), scheduledDelayMillis: 1000 })],
    });
    this.tracer = this.provider.getTracer('stellaops-runtime', build.version);
  }

  /** A SERVER span for one request, child of the caller's `traceparent` if any. */
  startHttp(method: string, route: string, path: string, headers: IncomingHttpHeaders): Span {
    const parent: Context = propagator.extract(ROOT_CONTEXT, headers, headerGetter);
    return this.tracer.startSpan(`${method} ${route}`, { kind: SpanKind.SERVER, attributes: { 'http.request.method': method, 'http.route': route, 'url.path': path } }, parent);
  }

  endHttp(span: Span, status: number): void {
    span.setAttribute('http.response.status_code', status);
    if (status >= 500) span.setStatus({ code: SpanStatusCode.ERROR });
    span.end();
  }

  /** A CONSUMER span around one work item. */
  async work<T>(subject: string, id: string, redact: (text: string) => string, run: () => Promise<T>): Promise<T> {
    const span = this.tracer.startSpan(`process ${subject}`, { kind: SpanKind.CONSUMER, attributes: { 'messaging.system': 'nats', 'messaging.destination.name': subject, 'messaging.message.id': id } }, ROOT_CONTEXT);
    try {
      return await run();
    } catch (e) {
      // The message only, redacted (driver errors may quote a URL with its password).
      span.setStatus({ code: SpanStatusCode.ERROR, message: redact(e instanceof Error ? e.message : String(e)) });
      throw e;
    } finally {
      span.end();
    }
  }

  /** Sends what is buffered and stops. */
  async shutdown(): Promise<void> {
    await this.provider.shutdown();
  }
}

