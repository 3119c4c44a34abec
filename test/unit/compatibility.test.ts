/**
 * The compatibility matrix (ci/src/release/compatibility.ts): every supported version is read
 * from the file that enforces it (the chart's kubeVersion, quickstart.sh's minimums), a smoke
 * test counts only when it passed for exactly the row's digests, and a missing source is an
 * error naming the file — not a guess.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { compatibilityRow, compatibilityTable, supportedVersions } from '../../ci/src/release/compatibility.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const FILES = ['deploy/helm/stella/Chart.yaml', 'deploy/compose/quickstart.sh'];
const dirs: string[] = [];
/** A scratch checkout holding only the two files, each optionally edited. */
function source(edit: (file: string, text: string) => string = (_f, t) => t): string {
  const d = mkdtempSync(join(tmpdir(), 'stella-compat-'));
  dirs.push(d);
  for (const f of FILES) {
    mkdirSync(dirname(join(d, f)), { recursive: true });
    writeFileSync(join(d, f), edit(f, readFileSync(join(ROOT, f), 'utf8')));
  }
  return d;
}
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const A = `sha256:${'a'.repeat(64)}`;
const B = `sha256:${'b'.repeat(64)}`;
const images = [{ service: 'api', digest: A }, { service: 'console', digest: B }];

describe('compatibility matrix', () => {
  it("states the chart's kubeVersion and quickstart.sh's Docker and Compose minimums, and follows edits to them", () => {
    const here = supportedVersions(ROOT);
    expect(here.kubernetes).toBe(/^kubeVersion: "(.+)"$/m.exec(readFileSync(join(ROOT, FILES[0]!), 'utf8'))![1]);
    expect(here.compose).toMatch(/^>=\d+\.\d+/);
    const edited = supportedVersions(source((f, t) => (f.endsWith('Chart.yaml') ? t.replace(/^kubeVersion: .*$/m, 'kubeVersion: ">=1.30.0-0 <1.40.0-0"') : t.replace(/^MIN_COMPOSE=.*$/m, 'MIN_COMPOSE=2.29'))));
    expect(edited).toEqual({ kubernetes: '>=1.30.0-0 <1.40.0-0', docker: here.docker, compose: '>=2.29' });
  });

  it('states nothing for what the checkout does not have (no chart, no quickstart)', () => {
    const bare = mkdtempSync(join(tmpdir(), 'stella-compat-'));
    dirs.push(bare);
    expect(supportedVersions(bare)).toEqual({});
    expect(compatibilityTable([compatibilityRow(bare, { version: 'edge', images })]).split('\n')[2]).toContain('| (no chart) | edge | (not in this checkout) | (not in this checkout) | (not in this checkout) |');
  });

  it('refuses to guess: no kubeVersion, or no minimum in quickstart.sh, is an error naming the file', () => {
    expect(() => supportedVersions(source((f, t) => (f.endsWith('Chart.yaml') ? t.replace(/^kubeVersion: .*\n/m, '') : t)))).toThrow(/Chart\.yaml: no kubeVersion/);
    expect(() => supportedVersions(source((f, t) => (f.endsWith('quickstart.sh') ? t.replace(/^MIN_DOCKER=.*\n/m, '') : t)))).toThrow(/quickstart\.sh: no MIN_DOCKER=/);
  });

  it('counts a smoke test only when it passed for exactly these digests', () => {
    const row = compatibilityRow(ROOT, {
      version: 'v1.4.0',
      chart: { version: '1.4.0', digest: A },
      images,
      supportImages: [{ name: 'postgres', digest: B }],
      smoke: [
        { smoke: 'smoke-compose', passed: true, images },
        { smoke: 'smoke-helm', passed: false, images },
        { smoke: 'smoke-airgap', passed: true, images: [{ service: 'api', digest: B }, { service: 'console', digest: B }] },
        { smoke: 'smoke-partial', passed: true, images: images.slice(0, 1) },
      ],
    });
    expect(row.smokeTested).toEqual(['smoke-compose']);
    expect(row.images).toEqual({ api: A, console: B });
    expect(row.supportImages).toEqual({ postgres: B });
    const table = compatibilityTable([row]).split('\n');
    expect(table[0]).toBe('| chart | release | Kubernetes | Docker | Compose | images (index digests) | smoke-tested |');
    expect(table[2]).toContain(`| 1.4.0 (\`${A.slice(0, 19)}…\`) | v1.4.0 | \`${row.kubernetes}\` |`);
    expect(table[2]).toMatch(/\| smoke-compose \|$/);
  });
});
