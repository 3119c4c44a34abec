/**
 * The CLI and the Dagger module are two front ends over the same functions:
 * same names, same arguments. This reads the Dagger class from its source (no
 * Dagger engine runs here) and compares it with the CLI's function table.
 */
import { readFileSync } from 'node:fs';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { functions, kebab } from '../../ci/src/functions.ts';

interface DaggerFunction {
  name: string;
  params: { name: string; optional: boolean }[];
  doc: string;
}

function daggerFunctions(file: string): DaggerFunction[] {
  const src = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  const out: DaggerFunction[] = [];
  const visit = (node: ts.Node) => {
    if (ts.isMethodDeclaration(node) && ts.getDecorators(node)?.some((d) => d.getText().startsWith('@func'))) {
      const jsDoc = ts.getJSDocCommentsAndTags(node).map((d) => d.getText()).join('\n');
      out.push({ name: node.name.getText(), params: node.parameters.map((p) => ({ name: p.name.getText(), optional: !!p.questionToken || !!p.initializer })), doc: jsDoc });
    }
    ts.forEachChild(node, visit);
  };
  visit(src);
  return out;
}

describe('CLI and Dagger module parity', () => {
  const dagger = daggerFunctions('ci/src/index.ts');

  it('expose the same functions', () => {
    expect(dagger.map((f) => f.name).sort()).toEqual(functions.map((f) => f.name).sort());
  });

  it.each(functions.map((f) => [f.name, f]))('%s takes the same arguments in both', (name, f) => {
    const d = dagger.find((x) => x.name === name)!;
    const cli = f.args.filter((a) => !a.cliOnly);
    expect(d.params.map((p) => p.name).sort()).toEqual(cli.map((a) => a.name).sort());
    // What the CLI requires, Dagger requires too (TypeScript puts required parameters first).
    expect(d.params.filter((p) => !p.optional).map((p) => p.name).sort()).toEqual(cli.filter((a) => a.required).map((a) => a.name).sort());
  });

  it.each(functions.map((f) => [f.name]))('%s has a runnable `dagger call` example in its documentation', (name) => {
    const d = dagger.find((x) => x.name === name)!;
    expect(d.doc).toContain(`dagger call ${kebab(name)}`);
  });
});
