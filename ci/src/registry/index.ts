export * from './client.ts';
export * from './names.ts';
export { credentialsFromDockerConfig, parseChallenges, type Credentials, type Challenge } from './auth.ts';
export { DEFAULT_RETRY, parseRetryAfter, backoffDelay, type RetryPolicy } from './retry.ts';
export { Redactor, REDACTED } from './redact.ts';
export * from './copy.ts';
export * from './tag.ts';
