#!/usr/bin/env node
/**
 * stella-release: the pipeline's functions from a shell, with the names and
 * arguments `dagger call` shows for the Dagger module.
 *
 *   stella-release catalog
 *   stella-release tags --version v1.4.0-rc.1
 *
 * Secret arguments take `env:NAME` or `file:PATH`, as `dagger call` does.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { StellaError } from './errors.ts';
import { functions, kebab, type ArgSpec, type Args, type FunctionSpec } from './functions.ts';

function usage(): string {
  const lines = ['usage: stella-release [--source DIR] <function> [--arg value …]', '', 'functions:'];
  for (const f of functions) lines.push(`  ${kebab(f.name).padEnd(16)} ${f.description}`);
  lines.push('', 'stella-release <function> --help shows its arguments.');
  return lines.join('\n');
}

function functionHelp(f: FunctionSpec): string {
  const lines = [`usage: stella-release ${kebab(f.name)}${f.args.map((a) => (a.required ? ` --${kebab(a.name)} <${a.type}>` : '')).join('')} [options]`, '', f.description, ''];
  for (const a of f.args) lines.push(`  --${kebab(a.name).padEnd(18)} ${a.type.padEnd(9)} ${a.required ? '(required) ' : ''}${a.description}`);
  return lines.join('\n');
}

function resolveSecret(arg: ArgSpec, raw: string): string {
  if (raw.startsWith('env:')) {
    const v = process.env[raw.slice(4)];
    if (v === undefined) throw new StellaError('INVALID_ARGUMENT', `--${kebab(arg.name)}: environment variable ${raw.slice(4)} is not set`);
    return v;
  }
  if (raw.startsWith('file:')) {
    try {
      return readFileSync(raw.slice(5), 'utf8').replace(/\r?\n$/, '');
    } catch (e) {
      throw new StellaError('INVALID_ARGUMENT', `--${kebab(arg.name)}: cannot read ${raw.slice(5)}: ${(e as Error).message}`);
    }
  }
  throw new StellaError('INVALID_ARGUMENT', `--${kebab(arg.name)} is a secret: pass env:NAME or file:PATH, never the value itself`);
}

export function parseArgs(f: FunctionSpec, argv: readonly string[]): Args & { output?: string } {
  const out: Record<string, string | boolean | number | undefined> = {};
  for (let i = 0; i < argv.length; i++) {
    const tok = argv[i]!;
    if (!tok.startsWith('--')) throw new StellaError('INVALID_ARGUMENT', `unexpected argument "${tok}"; arguments are --name value`);
    const [flag, inline] = tok.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    if (flag === 'output') {
      out.output = inline ?? argv[++i];
      continue;
    }
    const spec = f.args.find((a) => kebab(a.name) === flag);
    if (!spec) {
      throw new StellaError('INVALID_ARGUMENT', `${kebab(f.name)} has no argument --${flag}; it takes ${f.args.map((a) => `--${kebab(a.name)}`).join(', ') || 'no arguments'}`);
    }
    if (spec.type === 'boolean') {
      out[spec.name] = inline === undefined ? true : inline === 'true';
      continue;
    }
    const raw = inline ?? argv[++i];
    if (raw === undefined) throw new StellaError('INVALID_ARGUMENT', `--${flag} needs a value`);
    switch (spec.type) {
      case 'integer': {
        const n = Number(raw);
        if (!Number.isInteger(n)) throw new StellaError('INVALID_ARGUMENT', `--${flag} takes a whole number, got "${raw}"`);
        out[spec.name] = n;
        break;
      }
      case 'secret':
        out[spec.name] = resolveSecret(spec, raw);
        break;
      case 'string':
      case 'directory':
      case 'file':
        out[spec.name] = raw;
        break;
    }
  }
  for (const a of f.args) {
    if (a.required && out[a.name] === undefined) throw new StellaError('INVALID_ARGUMENT', `${kebab(f.name)} needs --${kebab(a.name)} (${a.description})`);
  }
  return out;
}

export async function main(argv: readonly string[]): Promise<number> {
  let source = process.cwd();
  if (argv[0] === '--source') {
    source = argv[1] ?? source;
    argv = argv.slice(2);
  }
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage() + '\n');
    return name ? 0 : 2;
  }
  const f = functions.find((x) => kebab(x.name) === name);
  if (!f) {
    process.stderr.write(`stella-release: unknown function "${name}"\n\n${usage()}\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(functionHelp(f) + '\n');
    return 0;
  }
  try {
    const args = parseArgs(f, rest);
    const result = await f.run(args, { source, progress: (line) => process.stderr.write(`${kebab(f.name)}: ${line}\n`) });
    if (args.output) writeFileSync(args.output, result.endsWith('\n') ? result : result + '\n');
    process.stdout.write(result.endsWith('\n') ? result : result + '\n');
    return 0;
  } catch (e) {
    const code = e instanceof StellaError ? ` [${e.code}]` : '';
    process.stderr.write(`stella-release ${kebab(f.name)}: error${code}: ${(e as Error).message}\n`);
    if (process.env.STELLA_DEBUG) process.stderr.write(`${(e as Error).stack}\n`);
    return 1;
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
