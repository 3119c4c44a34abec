import { describe, expect, it } from 'vitest';
import { checkGenerated, renderAll } from '../../ci/src/generate/index.ts';
import { replaceRegion } from '../../ci/src/generate/regions.ts';
import { catalog } from '../../ci/src/catalog/index.ts';

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

  it('fails loudly when a region marker is missing', () => {
    expect(() => replaceRegion('x.md', 'no markers here', 'ports', 'body')).toThrow(/x.md: generated region "ports" not found/);
  });
});
