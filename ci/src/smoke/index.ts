/** Smoke tests of the deliverables on a real engine: the Compose quickstart (./compose.ts). */
import { StellaError } from '../errors.ts';
import { smokeCompose } from './compose.ts';

export { smokeCompose, snapshot, compareSnapshots, type SmokeComposeOptions, type SmokeReport, type DataSnapshot, type RunningStack } from './compose.ts';
export { startFreshDaemon, forwardRule, type FreshDaemon } from './daemon.ts';

type A = Readonly<Record<string, string | boolean | number | undefined>>;

/** `stella-release smoke-compose …`: the report as JSON; fails listing every check that did not hold. */
export async function smokeComposeFn(a: A, io: { readonly source: string; progress(line: string): void }): Promise<string> {
  const images = a.images === undefined || a.images === '' ? undefined : String(a.images);
  const bundle = a.bundle === undefined || a.bundle === '' ? undefined : String(a.bundle);
  if (!images === !bundle) throw new StellaError('INVALID_ARGUMENT', 'give --images (the build document of the images to run, e.g. dist/build.json) or --bundle (an air-gap bundle, e.g. dist/stella-bundle-v1.4.0.tar.zst), one of them');
  if (a.publicKey && !bundle) throw new StellaError('INVALID_ARGUMENT', '--public-key goes with --bundle');
  const report = await smokeCompose({
    source: io.source,
    ...(images ? { images } : {}),
    ...(bundle ? { bundle, ...(a.publicKey ? { publicKey: String(a.publicKey) } : {}) } : {}),
    ...(a.dockerHost ? { dockerHost: String(a.dockerHost) } : {}),
    ...(a.supportLock ? { supportLock: String(a.supportLock) } : {}),
    ...(a.workDir ? { workDir: String(a.workDir) } : {}),
    ...(typeof a.timeout === 'number' ? { timeoutSeconds: a.timeout } : {}),
    roundTrip: a.roundTrip === true,
    exposePublic: a.exposePublic === true,
    tls: a.tls === true,
    progress: io.progress,
  });
  const text = JSON.stringify(report, null, 2);
  if (report.failures.length) throw new StellaError('VERIFY_FAILED', `smoke-compose: ${report.failures.length} check(s) failed:\n  - ${report.failures.join('\n  - ')}\n${text}`);
  return text;
}
