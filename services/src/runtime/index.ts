/** The shared runtime of the 11 services. */
export { runService, readBuildInfo, EXIT_CONFIG } from './service.ts';
export type { BuildInfo, PublishOptions, ServiceContext, ServiceDefinition, ServiceParts, WorkHandler, WorkItem, WorkOptions } from './service.ts';
export { BadWork, WORK_STREAM } from './queue.ts';
export { ObjectStore } from './objectstore.ts';
export { Config, ConfigError, loadConfig, durationMs, parseValue, urlPassword, stripUrlCredentials, isServiceLinkVariable } from './config.ts';
export type { ConfigEntry, ConfigSource, ConfigValue } from './config.ts';
export { Logger, Redactor, REDACTED, errorMessage } from './log.ts';
export type { LogLevel } from './log.ts';
export { Dependencies, withTimeout } from './deps.ts';
export type { CheckResult, ObjectStoreSettings } from './deps.ts';
export { HttpError, sendJson, sendText, readBody, readJson, matchRoute } from './http.ts';
export type { Handler, RequestContext, Route } from './http.ts';
