/**
 * The chart model and its generated files: the committed chart files are what the model
 * renders (no drift), the schema is strict everywhere the chart owns the shape, every value is
 * documented, and every catalog key of every service has one way into the chart.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { catalog, configFor } from '../../ci/src/catalog/index.ts';
import { chartGeneratedFiles, chartValues, keyWiring, valueName } from '../../ci/src/chart/index.ts';
import { walk } from '../../ci/src/chart/values-model.ts';
import { ROOT } from './fixture.ts';

describe('the chart model', () => {
  it('the committed generated chart files equal what the model renders (npm run generate)', () => {
    const drift = chartGeneratedFiles().filter((f) => readFileSync(join(ROOT, f.path), 'utf8') !== f.content).map((f) => f.path);
    expect(drift).toEqual([]);
  });

  it('values.schema.json: every object has additionalProperties false, except free-form maps', () => {
    const schema = JSON.parse(readFileSync(join(ROOT, 'deploy/helm/stella/values.schema.json'), 'utf8'));
    const loose: string[] = [];
    const visit = (s: Record<string, any>, path: string) => {
      if (s.type !== 'object') return;
      if (s.properties) {
        if (s.additionalProperties !== false) loose.push(path);
        for (const [k, v] of Object.entries(s.properties)) visit(v as Record<string, any>, `${path}/${k}`);
      }
    };
    visit(schema, '');
    expect(loose).toEqual([]);
    expect(schema.properties.api.properties.replicaCount.type).toBe('integer');
  });

  it('values.yaml documents every value (a comment line right above each key)', () => {
    const lines = readFileSync(join(ROOT, 'deploy/helm/stella/values.yaml'), 'utf8').split('\n');
    const bare = lines.filter((l, i) => /^\s*[A-Za-z"][^#]*:/.test(l) && !/^\s*#/.test(lines[i - 1] ?? '') && !/^\s+-/.test(l));
    // Entries inside free-form maps with defaults (namespace selectors) are values of a documented key.
    expect(bare.filter((l) => !l.includes('kubernetes.io/metadata.name'))).toEqual([]);
  });

  it('every catalog key of every service is wired, global, a value, a secret reference, or left to the image', () => {
    for (const s of catalog.services) {
      const block = chartValues().props[s.valuesKey];
      expect(block, s.valuesKey).toBeDefined();
      const paths = new Set(walk(block!).map((x) => x.path));
      for (const k of configFor(s)) {
        const w = keyWiring(k);
        if (w.kind === 'config') expect(paths.has(`config.${valueName(k.key)}`), `${s.name} ${k.key}`).toBe(true);
        if (w.kind === 'secret') expect(paths.has(`secretRefs.${valueName(k.key)}.name`), `${s.name} ${k.key}`).toBe(true);
        if (k.secret) expect(w.kind === 'config', `${s.name}: secret ${k.key} must never be a plain value`).toBe(false);
      }
    }
  });
});
