export * from './client.ts';
export * from './names.ts';
export { credentialsFromDockerConfig, credentialsFromHelper, parseChallenges, type Credentials, type Challenge } from './auth.ts';
export { DEFAULT_RETRY, parseRetryAfter, backoffDelay, type RetryPolicy } from './retry.ts';
export * from './copy.ts';
export { listReferrers, attachReferrer, pushReferrer, updateTaggedManifest, tagImage, type ManifestToPush, type TagResult, type TagImageOptions } from './referrers.ts';
