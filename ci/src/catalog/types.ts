/**
 * The shape of the service catalog: the one typed source from which images,
 * compose files, chart values and documentation tables are generated.
 */

/** The 11 StellaOps services, in the order the seed lists them. */
export const SERVICE_NAMES = [
  'api',
  'console',
  'orchestrator',
  'task-runner',
  'conseiller',
  'excitator',
  'policy',
  'ledger',
  'export',
  'notify',
  'ai',
] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];

/** Support services, optionally bundled for the quickstart and lab clusters. */
export const SUPPORT_NAMES = ['postgres', 'redis', 'object-store', 'queue', 'otel-collector'] as const;
export type SupportName = (typeof SUPPORT_NAMES)[number];

/** Groups of the configuration matrix (seed §3.5). */
export type ConfigGroup =
  | 'Runtime'
  | 'Auth'
  | 'Storage'
  | 'Object store'
  | 'Queue'
  | 'Cache'
  | 'Telemetry'
  | 'Policy engine'
  | 'Conseiller/Excitator'
  | 'Orchestrator/Task Runner'
  | 'Notifications'
  | 'Export Center'
  | 'AI Assistant'
  | 'Quickstart';

export type ConfigType = 'string' | 'integer' | 'boolean' | 'duration' | 'url' | 'enum' | 'list';

/** One configuration knob. Environment variable name = `key`; the file form is `key` + `_FILE`. */
export interface ConfigKey {
  readonly key: string;
  readonly type: ConfigType;
  readonly group: ConfigGroup;
  readonly description: string;
  /** Default as the service sees it; absent for secrets and required keys. */
  readonly default?: string | number | boolean;
  /** Secrets come from env or `<KEY>_FILE`, have no default, are never logged nor shown. */
  readonly secret?: boolean;
  /** Start-up fails when a required key is unset. */
  readonly required?: boolean;
  /** Allowed values for `enum`. */
  readonly choices?: readonly string[];
  /** Inclusive bounds for `integer`. */
  readonly min?: number;
  readonly max?: number;
  /** Shown by the console's config discovery endpoint (never true for secrets). */
  readonly discoverable?: boolean;
  /** The value cannot be changed (the AOC rule: merge stays disabled). */
  readonly locked?: boolean;
}

export type Dependency = SupportName | ServiceName;

export interface HttpEndpoint {
  readonly port: number;
  readonly liveness: '/health/liveness';
  readonly readiness: '/health/readiness';
  readonly version: '/version';
  readonly metrics: '/metrics';
}

export interface ServiceSpec {
  readonly name: ServiceName;
  /** Human name, e.g. "Web Services API". */
  readonly title: string;
  readonly description: string;
  /** Image repository name below the registry/namespace, e.g. `stella-api`. */
  readonly image: string;
  /** Key in Helm values (camelCase), e.g. `taskRunner`. */
  readonly valuesKey: string;
  /** `http` serves an API or UI; `worker` consumes work and serves only health and metrics. */
  readonly role: 'http' | 'worker';
  readonly http: HttpEndpoint;
  /** Host port published by the quickstart (bound to 127.0.0.1 unless EXPOSE_PUBLIC=1). */
  readonly publishedPort?: number;
  readonly dependsOn: readonly Dependency[];
  /** Deployed by default (the AI assistant is off until configured). */
  readonly enabledByDefault: boolean;
  /** Service-specific configuration; the shared keys are added by `configFor`. */
  readonly config: readonly ConfigKey[];
}

export interface SupportSpec {
  readonly name: SupportName;
  readonly title: string;
  /** The upstream image the product defaults to; overridable everywhere. */
  readonly upstreamImage: string;
  readonly ports: readonly { readonly port: number; readonly name: string }[];
  readonly publishedPort?: number;
  /** The STELLA_* key through which services reach it. */
  readonly connectionKey: string;
  readonly description: string;
}

export interface Catalog {
  readonly services: readonly ServiceSpec[];
  readonly support: readonly SupportSpec[];
  /** Keys every service reads. */
  readonly sharedConfig: readonly ConfigKey[];
}
