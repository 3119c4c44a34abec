/**
 * The console's onboarding in a real browser (Debian's chromium, driven by playwright-core)
 * against the running Compose quickstart: ONE stack, brought up by smoke-compose
 * (quickstart.sh on a fresh Docker daemon, images from the local registry, built here from the
 * tree), used for every check through its `withStack` hook:
 *   - quickstart mode: the banner; a refused sign-in shown in the page; sign-in and the whole
 *     wizard by keyboard; the endpoints are the services' discovered configuration, no secret;
 *     the generated token works against the API (a real HTTP call); the sample scan import; the
 *     explorer shows the seed findings; "Copy CLI" gives the container-image form, which runs;
 *     "Export pack to production" downloads a Task Pack that is valid and carries the seed
 *     data; "View install docs" shows rendered HTML; every control has a label;
 *   - the API stopped: the page says so;
 *   - production mode (the same stack re-run by quickstart.sh with STELLA_QUICKSTART_MODE=false):
 *     no banner, no wizard, and the demo endpoints answer 404.
 * Screenshots go to test-results/console/ (docs/console/ keeps copies, referenced from
 * docs/console/onboarding.md).
 */
import { execFile, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SUPPORT_LOCK_PATH, parseSupportLock } from '../../ci/src/compose/index.ts';
import { smokeCompose, type RunningStack, type SmokeReport } from '../../ci/src/smoke/index.ts';
import { file, skipUnless, tool } from '../helpers/tools.ts';

const run = promisify(execFile);
const ROOT = resolve(import.meta.dirname, '../..');
const NODE = join(ROOT, 'node_modules/.bin/node');
const REGISTRY = process.env.STELLA_REGISTRY ?? '127.0.0.1:5000';
const NAMESPACE = 'stellaops-console';
const SHOTS = join(ROOT, 'test-results/console');
const LOCK_FILE = join(ROOT, SUPPORT_LOCK_PATH);
/** Where deploy/compose/ is copied from: this checkout, or (STELLA_CONSOLE_TEST_SOURCE) another, e.g. while deploy/compose is mid-change. */
const SOURCE = process.env.STELLA_CONSOLE_TEST_SOURCE ?? ROOT;
/** Debian's chromium: /usr/bin/chromium is a shell wrapper; playwright drives the binary itself. */
const CHROMIUM = ['/usr/lib/chromium/chromium', '/usr/bin/chromium'].find((p) => existsSync(p));

function registryUp(): boolean {
  return spawnSync('curl', ['-sf', '-o', '/dev/null', `http://${REGISTRY}/v2/`], { timeout: 5000 }).status === 0;
}

const skip = skipUnless(
  [
    tool('docker'),
    tool('dockerd'),
    tool('iptables'),
    { name: 'chromium (Debian package)', ok: CHROMIUM !== undefined, hint: 'apt-get install chromium (scripts/host-setup.sh installs it)' },
    { name: 'root (a fresh dockerd mounts overlays)', ok: process.getuid?.() === 0, hint: 'run the tests as root, as .ci/run does' },
    { name: `the local registry ${REGISTRY}`, ok: registryUp(), hint: 'scripts/host-setup.sh starts it' },
    file(LOCK_FILE, 'the support image lock', '`stella-release support-images` writes it'),
  ],
  'the console onboarding in headless Chromium against the Compose quickstart',
);

/** What the browser saw; asserted in the tests below. */
interface Seen {
  bannerText: string;
  refusedSignIn: string;
  wizardVisible: boolean;
  endpointsText: string;
  discovered: Record<string, unknown>;
  secrets: string[];
  stepStatus: Record<string, string>;
  token: string;
  whoami: { status: number; body: Record<string, unknown> };
  whoamiBadToken: number;
  welcomeAfter: Record<string, unknown>;
  explorerRows: string[][];
  apiFindings: { advisory_id: string; component: string }[];
  cliWhoami: string;
  cliClipboard: string;
  cliRun: { status: number; stdout: string; stderr: string };
  pack: { file: string; bytes: Buffer; validation: string[] };
  seedCounts: Record<string, number>;
  docs: { url: string; title: string; hasTable: boolean; rawMarkdown: boolean; status: number };
  unlabelled: string[];
  apiDownError: string;
  prod: { banner: boolean; wizard: boolean; explorer: boolean; signedIn: string; welcome: number; step: number; scanImport: number; configQuickstart: unknown };
}

let work: string;
let report: SmokeReport;
const seen: Partial<Seen> = {};
let browser: Browser | undefined;

async function shot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

async function apiCall(stack: RunningStack, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const r = await fetch(`${stack.apiUrl}${path}`, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, body: (await r.json().catch(() => ({}))) as Record<string, unknown> };
}

/** Every check, against the one running stack. */
async function inBrowser(stack: RunningStack): Promise<void> {
  browser = await chromium.launch({ executablePath: CHROMIUM!, args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] });
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 900 } });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: new URL(stack.consoleUrl).origin });
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);
  await page.goto(stack.consoleUrl);

  // The banner, and a refused sign-in shown in the page.
  await page.locator('#quickstart-banner').waitFor({ state: 'visible' });
  seen.bannerText = (await page.locator('#quickstart-banner').innerText()).trim();
  await page.locator('#signin').waitFor({ state: 'visible' });
  await shot(page, '01-sign-in');
  await page.fill('#signin-password', 'not-the-password');
  await page.press('#signin-password', 'Enter');
  await page.locator('#error').waitFor({ state: 'visible' });
  seen.refusedSignIn = await page.locator('#error-text').innerText();
  await shot(page, '02-sign-in-refused');

  // Sign in by keyboard.
  await page.click('#error-dismiss');
  await page.focus('#signin-password');
  expect(await page.inputValue('#signin-password')).toBe('');
  await page.keyboard.type(stack.adminPassword);
  await page.keyboard.press('Enter');
  await page.locator('#wizard').waitFor({ state: 'visible' });
  seen.wizardVisible = true;
  // The endpoints: the services' own discovery, no secret.
  await page.locator('#endpoints tbody tr').nth(3).waitFor();
  seen.endpointsText = await page.locator('#endpoints').innerText();
  const apiConfig = (await (await fetch(`${stack.apiUrl}/config`)).json()) as { config: Record<string, unknown> };
  const consoleConfig = (await (await fetch(`${stack.consoleUrl}config`)).json()) as { config: Record<string, unknown> };
  seen.discovered = { ...apiConfig.config, STELLA_API_URL: consoleConfig.config.STELLA_API_URL };
  const secretsDir = join(stack.install, '.secrets');
  seen.secrets = ['admin-password', 'postgres-password', 'redis-password', 'object-store-access-key', 'object-store-secret-key'].filter((f) => existsSync(join(secretsDir, f))).map((f) => readFileSync(join(secretsDir, f), 'utf8').trim());
  await shot(page, '03-wizard');

  // Step 1, by keyboard.
  seen.stepStatus = {};
  await page.focus('#confirm-endpoints');
  await page.keyboard.press('Enter');
  await page.locator('#status-confirm-endpoints', { hasText: 'Next:' }).waitFor();
  seen.stepStatus['confirm-endpoints'] = await page.locator('#status-confirm-endpoints').innerText();

  // Step 2: a token, which works against the API (and a wrong one does not).
  await page.focus('#token-password');
  await page.keyboard.type(stack.adminPassword);
  await page.keyboard.press('Enter');
  await page.locator('#token-result').waitFor({ state: 'visible' });
  seen.token = await page.inputValue('#token-value');
  seen.stepStatus['generate-token'] = await page.locator('#status-generate-token').innerText();
  await shot(page, '04-token');
  seen.whoami = await apiCall(stack, seen.token, 'GET', '/api/v1/auth/whoami');
  seen.whoamiBadToken = (await apiCall(stack, `${seen.token}x`, 'GET', '/api/v1/auth/whoami')).status;

  // Step 3: the sample scan import.
  await page.focus('#import-scan');
  await page.keyboard.press(' ');
  await page.locator('#status-import-sample-scan', { hasText: 'Next:' }).waitFor();
  seen.stepStatus['import-sample-scan'] = await page.locator('#status-import-sample-scan').innerText();

  // Step 4: the explorer with the seed findings.
  await page.focus('#open-explorer');
  await page.keyboard.press('Enter');
  await page.locator('#explorer').waitFor({ state: 'visible' });
  await page.locator('#status-open-vuln-explorer', { hasText: 'done' }).waitFor();
  seen.stepStatus['open-vuln-explorer'] = await page.locator('#status-open-vuln-explorer').innerText();
  seen.explorerRows = await page.locator('#findings tr').evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')));
  seen.apiFindings = (await apiCall(stack, seen.token, 'GET', '/api/v1/findings')).body.findings as Seen['apiFindings'];
  seen.welcomeAfter = (await apiCall(stack, seen.token, 'GET', '/welcome')).body;
  await page.locator('#explorer').scrollIntoViewIfNeeded();
  await shot(page, '05-explorer');

  // "Copy CLI": no local CLI is set, so the stella container image form; it copies, and it runs.
  seen.cliWhoami = await page.locator('#cli-whoami').innerText();
  await page.getByRole('button', { name: 'Copy CLI: Check the token: who it belongs to' }).click();
  const clipboard = String(await page.evaluate('navigator.clipboard.readText()'));
  seen.cliClipboard = clipboard;
  const checkout = join(work, 'checkout');
  mkdirSync(join(checkout, 'deploy'), { recursive: true });
  if (!existsSync(join(checkout, 'deploy', 'compose'))) symlinkSync(stack.install, join(checkout, 'deploy', 'compose'));
  const r = spawnSync('bash', ['-c', clipboard], { cwd: checkout, env: { ...stack.env, STELLAOPS_TOKEN: seen.token }, encoding: 'utf8', timeout: 120_000 });
  seen.cliRun = { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };

  // "Export pack to production": a download, a valid Task Pack with the seed data.
  const [download] = await Promise.all([page.waitForEvent('download', { timeout: 90_000 }), page.click('#export-pack')]);
  const packFile = join(SHOTS, 'stella-task-pack.json');
  await download.saveAs(packFile);
  await page.locator('#export-status', { hasText: 'Downloaded' }).waitFor();
  await page.evaluate('window.scrollTo(0, 0)');
  await shot(page, '06-export-pack');
  const bytes = readFileSync(packFile);
  const ajv = new Ajv2020.default({ allErrors: true, strict: false });
  addFormats.default(ajv);
  const validate = ajv.compile(JSON.parse(readFileSync(join(ROOT, 'services/src/export/task-pack.schema.json'), 'utf8')));
  const ok = validate(JSON.parse(bytes.toString('utf8')));
  seen.pack = { file: download.suggestedFilename(), bytes, validation: ok ? [] : (validate.errors ?? []).map((e) => `${e.instancePath} ${e.message}`) };
  seen.seedCounts = {};
  for (const [path, key] of [['sboms', 'sboms'], ['advisories', 'advisories'], ['vex', 'vex'], ['policies', 'policies'], ['task-packs', 'taskPacks'], ['findings', 'findings']] as const) {
    seen.seedCounts[key] = ((await apiCall(stack, seen.token, 'GET', `/api/v1/${path}`)).body[key] as unknown[]).length;
  }

  // Every control has a name a screen reader can say.
  // (Run in the page: the test's TypeScript has no DOM library.)
  seen.unlabelled = (await page.evaluate(`[...document.querySelectorAll('input, button, a[href], select, textarea')]
    .filter((el) => el.type !== 'hidden')
    .filter((el) => ((el.labels && el.labels.length ? [...el.labels].map((l) => l.textContent).join('') : '') || el.getAttribute('aria-label') || el.textContent || '').trim() === '')
    .map((el) => el.outerHTML.slice(0, 80))`)) as string[];

  // "View install docs": rendered HTML, offline, from the console.
  await page.click('#view-docs');
  await page.waitForURL(/\/docs\/install\/overview\.html$/);
  const docsRes = await fetch(`${stack.consoleUrl}docs/install/compose-quickstart.html`);
  const docsHtml = await docsRes.text();
  seen.docs = {
    url: page.url(),
    title: await page.title(),
    hasTable: (await page.locator('#doc table').count()) > 0,
    rawMarkdown: /^#{1,3} |^\|[-| ]+\|$|^```/m.test(await page.locator('#doc').innerText()) || /^```/m.test(docsHtml),
    status: docsRes.status,
  };
  await shot(page, '07-install-docs');

  // The API down: the page says so.
  await stack.compose(['stop', 'api']);
  await page.goto(stack.consoleUrl);
  await page.locator('#error').waitFor({ state: 'visible' });
  seen.apiDownError = await page.locator('#error-text').innerText();
  await shot(page, '08-api-down');

  // Production mode: the same stack, re-run by quickstart.sh with STELLA_QUICKSTART_MODE=false.
  const prodRun = await stack.sh('quickstart.sh', [], { STELLA_QUICKSTART_MODE: 'false' });
  if (prodRun.status !== 0) throw new Error(`quickstart.sh with STELLA_QUICKSTART_MODE=false failed: ${prodRun.stderr}`);
  const prod = await (await browser.newContext()).newPage();
  prod.setDefaultTimeout(30_000);
  await prod.goto(stack.consoleUrl);
  await prod.locator('#signin').waitFor({ state: 'visible' });
  await prod.fill('#signin-password', stack.adminPassword);
  await prod.press('#signin-password', 'Enter');
  await prod.locator('#explorer').waitFor({ state: 'visible' });
  const t = (await apiCall(stack, '', 'POST', '/api/v1/tokens', { username: 'admin', password: stack.adminPassword })).body.token as string;
  seen.prod = {
    banner: await prod.locator('#quickstart-banner').isVisible(),
    wizard: await prod.locator('#wizard').isVisible(),
    explorer: await prod.locator('#explorer').isVisible(),
    signedIn: await prod.locator('#who').innerText(),
    welcome: (await fetch(`${stack.consoleUrl}welcome`)).status,
    step: (await fetch(`${stack.consoleUrl}welcome/steps/confirm-endpoints`, { method: 'POST', headers: { authorization: `Bearer ${t}` } })).status,
    scanImport: (await apiCall(stack, t, 'POST', '/api/v1/scans/import', {})).status,
    configQuickstart: ((await (await fetch(`${stack.consoleUrl}config`)).json()) as { config: Record<string, unknown> }).config.STELLA_QUICKSTART_MODE,
  };
  await shot(prod, '09-production-mode');
}

beforeAll(async () => {
  if (skip) return;
  rmSync(SHOTS, { recursive: true, force: true });
  mkdirSync(SHOTS, { recursive: true });
  work = mkdtempSync(join(tmpdir(), 'stella-console-test-'));
  const cli = (args: string[]) => run(NODE, ['ci/src/cli.ts', ...args], { cwd: ROOT, maxBuffer: 64 << 20, env: { ...process.env, STELLA_BASE_LOCK_POLICY: 'refresh-if-unavailable' } });
  const lock = parseSupportLock(JSON.parse(readFileSync(LOCK_FILE, 'utf8')), LOCK_FILE);
  const missing = Object.values(lock).filter((i) => {
    const [host, ...path] = i!.repository.split('/');
    return spawnSync('curl', ['-sf', '-o', '/dev/null', '-I', '-H', 'Accept: application/vnd.oci.image.index.v1+json', `http://${host}/v2/${path.join('/')}/manifests/${i!.digest}`], { timeout: 5000 }).status !== 0;
  });
  // A fresh host's registry lacks them: build them (reproducible: the lock's digests).
  if (missing.length) await cli(['support-images', '--registry', REGISTRY, '--lock-file', join(work, 'support-images.lock.json')]);
  const platform = `linux/${process.arch === 'arm64' ? 'arm64' : 'amd64'}`;
  const t = Date.now();
  await cli(['build-base', '--registry', REGISTRY, '--namespace', NAMESPACE, '--oci-layout', join(work, 'base')]);
  await cli(['build', '--version', 'edge', '--base', `oci:${join(work, 'base')}`, '--registry', REGISTRY, '--namespace', NAMESPACE, '--platforms', platform, '--output', join(work, 'build.json')]);
  console.log(`console onboarding: images built and pushed to ${REGISTRY}/${NAMESPACE} in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  const t2 = Date.now();
  // On a failure, the page as it was: test-results/console/failure.png.
  const withStack = (s: RunningStack) =>
    inBrowser(s).catch(async (e: unknown) => {
      const pages = browser?.contexts().flatMap((c) => c.pages()) ?? [];
      if (pages.length) await shot(pages[pages.length - 1]!, 'failure').catch(() => undefined);
      throw e;
    });
  report = await smokeCompose({ source: SOURCE, images: join(work, 'build.json'), workDir: join(work, 'run'), timeoutSeconds: 300, progress: (l) => console.log(`console onboarding: ${l}`), withStack });
  console.log(`console onboarding: stack up, browser checks and teardown in ${((Date.now() - t2) / 1000).toFixed(1)} s`);
  if (report.failures.length) console.log(`console onboarding: smoke failures:\n  - ${report.failures.join('\n  - ')}`);
}, 1_800_000);

afterAll(async () => {
  await browser?.close().catch(() => undefined);
  if (seen.pack) writeFileSync(join(SHOTS, 'seen.json'), JSON.stringify({ ...seen, pack: { ...seen.pack, bytes: seen.pack.bytes.length }, token: '[REDACTED]' }, null, 2));
  if (work) rmSync(work, { recursive: true, force: true });
});

describe.skipIf(skip)('console onboarding in headless Chromium against the Compose quickstart', () => {
  it('the quickstart came up healthy (smoke-compose found nothing wrong)', () => {
    expect(report.failures).toEqual([]);
  });

  it('shows the "Connected to Quickstart" banner with its two actions', () => {
    expect(seen.bannerText).toContain('Connected to Quickstart');
    expect(seen.bannerText).toContain('View install docs');
    expect(seen.bannerText).toContain('Export pack to production');
  });

  it('shows a refused sign-in in the page', () => {
    expect(seen.refusedSignIn).toMatch(/invalid username or password/);
  });

  it('confirms the endpoints from config discovery, with no secret on the page', () => {
    expect(seen.wizardVisible).toBe(true);
    const d = seen.discovered!;
    for (const key of ['STELLA_API_URL', 'STELLA_QUEUE_URL', 'STELLA_OBJECT_STORE_ENDPOINT', 'STELLA_OBJECT_STORE_BUCKET']) {
      expect(typeof d[key], key).toBe('string');
      expect(seen.endpointsText, key).toContain(`${key}\t${d[key]}`);
    }
    expect(seen.secrets!.length).toBe(5);
    for (const s of seen.secrets!) expect(seen.endpointsText).not.toContain(s);
  });

  it('says what each step did and what comes next', () => {
    expect(seen.stepStatus!['confirm-endpoints']).toMatch(/^Endpoints confirmed and recorded\. Next: generate an API token/);
    expect(seen.stepStatus!['generate-token']).toMatch(/^Token generated.*Next: run the sample scan import/);
    expect(seen.stepStatus!['import-sample-scan']).toMatch(/^Imported \d+ findings from \d+ SBOMs.*Next: open the Vulnerability Explorer/);
    expect(seen.stepStatus!['open-vuln-explorer']).toMatch(/lists \d+ findings\. The welcome steps are done\./);
    expect(seen.welcomeAfter).toMatchObject({ quickstart: true, complete: true });
  });

  it('generates a token that works against the API (and a changed one is refused)', () => {
    expect(seen.token).toMatch(/^stella_[A-Za-z0-9_-]{43}$/);
    expect(seen.whoami).toMatchObject({ status: 200, body: { username: 'admin' } });
    expect(seen.whoamiBadToken).toBe(401);
  });

  it('the explorer shows the seed findings, as the API lists them', () => {
    expect(seen.apiFindings!.length).toBeGreaterThan(0);
    expect(seen.explorerRows!.length).toBe(seen.apiFindings!.length);
    expect(seen.explorerRows!.map((r) => `${r[0]} ${r[1]}`).sort()).toEqual(seen.apiFindings!.map((f) => `${f.advisory_id} ${f.component}`).sort());
  });

  it('"Copy CLI" gives the stella container image form (no local CLI set), and that command works', () => {
    expect(seen.cliWhoami).toBe('(cd deploy/compose && docker compose run --rm --no-deps -e STELLAOPS_TOKEN console /app/main.js whoami)');
    expect(seen.cliClipboard).toBe(seen.cliWhoami);
    expect(seen.cliRun!.status, seen.cliRun!.stderr).toBe(0);
    expect(JSON.parse(seen.cliRun!.stdout)).toMatchObject({ username: 'admin' });
  });

  it('"Export pack to production" downloads a valid Task Pack with the seed data', () => {
    expect(seen.pack!.file).toMatch(/^stella-task-pack-[0-9a-f-]{36}\.json$/);
    expect(seen.pack!.validation).toEqual([]);
    const pack = JSON.parse(seen.pack!.bytes.toString('utf8')) as { kind: string; data: Record<string, unknown[]>; digest: { data: string }; steps: { kind: string }[] };
    expect(pack.kind).toBe('TaskPack');
    expect(createHash('sha256').update(JSON.stringify(pack.data)).digest('hex')).toBe(pack.digest.data);
    for (const [k, n] of Object.entries(seen.seedCounts!)) {
      expect(n, k).toBeGreaterThan(0);
      expect(pack.data[k]!.length, k).toBe(n);
    }
    // The seed pack validates against the same schema.
    const ajv = new Ajv2020.default({ strict: false });
    addFormats.default(ajv);
    const validate = ajv.compile(JSON.parse(readFileSync(join(ROOT, 'services/src/export/task-pack.schema.json'), 'utf8')));
    expect(validate(JSON.parse(readFileSync(join(ROOT, 'services/seed/task-pack.json'), 'utf8')))).toBe(true);
  });

  it('"View install docs" opens the install docs rendered to HTML, served by the console', () => {
    expect(seen.docs!.url).toMatch(/\/docs\/install\/overview\.html$/);
    expect(seen.docs!.title).toMatch(/StellaOps install docs \(offline copy\)/);
    expect(seen.docs!.hasTable).toBe(true);
    expect(seen.docs!.rawMarkdown).toBe(false);
    expect(seen.docs!.status).toBe(200);
  });

  it('labels every control', () => {
    expect(seen.unlabelled).toEqual([]);
  });

  it('shows an unreachable API in the page', () => {
    expect(seen.apiDownError).toMatch(/The API is not reachable/);
  });

  it('outside quickstart mode: no banner, no wizard, and the demo endpoints answer 404', () => {
    expect(seen.prod).toMatchObject({ banner: false, wizard: false, explorer: true, welcome: 404, step: 404, scanImport: 404, configQuickstart: false });
    expect(seen.prod!.signedIn).toMatch(/signed in as admin/);
  });

  it('wrote the screenshots under test-results/console/', () => {
    for (const n of ['01-sign-in', '03-wizard', '04-token', '05-explorer', '06-export-pack', '07-install-docs', '08-api-down', '09-production-mode']) expect(existsSync(join(SHOTS, `${n}.png`)), n).toBe(true);
  });
});
