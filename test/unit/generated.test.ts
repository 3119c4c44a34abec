import { describe, expect, it } from 'vitest';
import { checkGenerated, renderAll } from '../../ci/src/generate/index.ts';
import { replaceRegion } from '../../ci/src/generate/regions.ts';
import { catalog } from '../../ci/src/catalog/index.ts';
import { HEALTHCHECK } from '../../ci/src/build/dockerfiles.ts';
import { docTargets, startupRequirements } from '../../ci/src/generate/docs.ts';

describe('files generated from the catalog', () => {
  it('are up to date', () => {
    expect(checkGenerated('.')).toEqual([]);
  });

  it('cover every service and every configuration key', () => {
    const files = renderAll('.');
    const overview = files.find((f) => f.path === 'docs/install/overview.md')!.content;
    const config = files.find((f) => f.path === 'docs/install/configuration-reference.md')!.content;
    for (const s of catalog.services) {
      expect(overview).toContain(`stella-${s.name}`);
      for (const k of s.config) expect(config).toContain(`\`${k.key}\``);
    }
    expect(overview.split('\n')[0]).toBe('Imposed rule: Work of this type or tasks of this type on this component must also be applied everywhere else it should be applied.');
  });

  it('put the values the code owns into the docs: HEALTHCHECK timings, service and published ports, required keys', () => {
    const files = renderAll('.');
    const health = files.find((f) => f.path === 'docs/operations/health-and-readiness.md')!.content;
    const config = files.find((f) => f.path === 'docs/install/configuration-reference.md')!.content;
    expect(health).toContain(`HEALTHCHECK --interval=${HEALTHCHECK.interval} --timeout=${HEALTHCHECK.timeout} --start-period=${HEALTHCHECK.startPeriod} --retries=${HEALTHCHECK.retries} `);
    for (const s of catalog.services) expect(health).toContain(`${s.name} ${s.http.port}`);
    for (const s of [...catalog.services, ...catalog.support]) if (s.publishedPort) expect(health).toContain(`${s.name} (${s.publishedPort})`);
    for (const r of startupRequirements) {
      expect(config).toMatch(new RegExp(`\\| \`${r.key}\` \\|[^\\n]*\\*\\*yes\\*\\*`));
      expect(config).toContain(`| \`${r.key}\` | ${r.services.join(', ')} |`);
    }
    // Every doc region is rewritten from its source: a changed value changes the page.
    const t = docTargets.find((x) => x.region === 'healthcheck')!;
    expect(t.render(catalog)).toContain(`--timeout=${HEALTHCHECK.timeout}`);
  });

  it('fails loudly when a region marker is missing', () => {
    expect(() => replaceRegion('x.md', 'no markers here', 'ports', 'body')).toThrow(/x.md: generated region "ports" not found/);
  });
});
