#!/usr/bin/env node
/**
 * stella-release: the pipeline's functions from a shell, with the names and
 * arguments `dagger call` shows for the Dagger module. Parsing, `--help` and
 * usage all come from the definitions in ./functions.ts.
 *
 *   stella-release catalog
 *   stella-release tags --version v1.4.0-rc.1
 *
 * Secret arguments take `env:NAME` or `file:PATH`, as `dagger call` does; a
 * resolved secret is never printed (errors and progress are redacted).
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { StellaError } from './errors.ts';
import { functions, type ArgSpec, type Args, type FunctionSpec } from './functions.ts';
import { flag, kebab } from './dagger/names.ts';
import { redactError } from './redact/index.ts';

const GLOBAL = '--source DIR';

export function usage(): string {
  const lines = [`usage: stella-release [${GLOBAL}] <function> [--arg value …]`, '', 'functions:'];
  for (const f of functions) lines.push(`  ${kebab(f.name).padEnd(16)} ${f.description}`);
  lines.push('', 'options:', '  --source DIR      the repository checkout to work on (default: the current directory)');
  lines.push('  --json            progress as one JSON event per line on stderr (release, promote; anywhere on the line)');
  lines.push('', 'stella-release <function> --help shows its arguments.');
  return lines.join('\n');
}

const placeholder = (a: ArgSpec) => (a.type === 'secret' ? 'env:NAME|file:PATH' : a.type === 'boolean' ? '' : `<${a.type}>`);

/** Every flag the function accepts (CLI-only ones included), with type, default and an example. */
export function functionHelp(f: FunctionSpec): string {
  const req = f.args.filter((a) => a.required).map((a) => ` ${flag(a.name)} ${placeholder(a)}`).join('');
  const lines = [`usage: stella-release ${kebab(f.name)}${req} [options]`, '', f.description, '', 'arguments:'];
  for (const a of f.args) {
    const notes = [a.required ? '(required)' : '', a.cliOnly ? '(CLI only)' : ''].filter(Boolean).join(' ');
    lines.push(`  ${flag(a.name).padEnd(26)} ${a.type.padEnd(9)} ${notes ? `${notes} ` : ''}${a.description}${a.default ? ` (default: ${a.default})` : ''}`);
  }
  lines.push(`  ${'--help'.padEnd(26)} ${''.padEnd(9)} show this`);
  lines.push('', 'examples:');
  for (const e of f.examples) lines.push(`  stella-release ${kebab(f.name)}${e.args ? ` ${e.args}` : ''}`);
  return lines.join('\n');
}

function resolveSecret(arg: ArgSpec, raw: string, env: NodeJS.ProcessEnv): string {
  if (raw.startsWith('env:')) {
    const v = env[raw.slice(4)];
    if (v === undefined) throw new StellaError('INVALID_ARGUMENT', `${flag(arg.name)}: environment variable ${raw.slice(4)} is not set`);
    return v;
  }
  if (raw.startsWith('file:')) {
    try {
      return readFileSync(raw.slice(5), 'utf8').replace(/\r?\n$/, '');
    } catch (e) {
      throw new StellaError('INVALID_ARGUMENT', `${flag(arg.name)}: cannot read ${raw.slice(5)}: ${(e as Error).message}`);
    }
  }
  throw new StellaError('INVALID_ARGUMENT', `${flag(arg.name)} is a secret: pass env:NAME or file:PATH, never the value itself`);
}

export interface ParseOptions {
  /** Where `env:NAME` secrets come from (default: process.env). */
  readonly env?: NodeJS.ProcessEnv;
  /** Receives every secret as it is resolved, so that output can be redacted even if parsing fails later. */
  readonly secrets?: string[];
}

export function parseArgs(f: FunctionSpec, argv: readonly string[], o: ParseOptions = {}): Args {
  const env = o.env ?? process.env;
  const out: Record<string, string | boolean | number | undefined> = {};
  for (let i = 0; i < argv.length; i++) {
    const tok = argv[i]!;
    if (!tok.startsWith('--')) throw new StellaError('INVALID_ARGUMENT', `unexpected argument "${tok}"; arguments are --name value`);
    const [name, inline] = tok.slice(2).split(/=(.*)/s, 2) as [string, string | undefined];
    const spec = f.args.find((a) => kebab(a.name) === name);
    if (!spec) {
      throw new StellaError('INVALID_ARGUMENT', `${kebab(f.name)} has no argument --${name}; it takes ${f.args.map((a) => flag(a.name)).join(', ')}`);
    }
    if (spec.type === 'boolean') {
      if (inline !== undefined && inline !== 'true' && inline !== 'false') throw new StellaError('INVALID_ARGUMENT', `--${name} is a flag: give it alone, or =true / =false, not "${inline}"`);
      out[spec.name] = inline === undefined ? true : inline === 'true';
      continue;
    }
    const raw = inline ?? argv[++i];
    if (raw === undefined) throw new StellaError('INVALID_ARGUMENT', `--${name} needs a value`);
    switch (spec.type) {
      case 'integer': {
        const n = Number(raw);
        if (raw.trim() === '' || !Number.isInteger(n)) throw new StellaError('INVALID_ARGUMENT', `--${name} takes a whole number, got "${raw}"`);
        out[spec.name] = n;
        break;
      }
      case 'secret': {
        const value = resolveSecret(spec, raw, env);
        o.secrets?.push(value);
        out[spec.name] = value;
        break;
      }
      case 'string':
      case 'directory':
      case 'file':
        out[spec.name] = raw;
        break;
    }
  }
  for (const a of f.args) {
    if (a.required && out[a.name] === undefined) throw new StellaError('INVALID_ARGUMENT', `${kebab(f.name)} needs ${flag(a.name)} (${a.description})`);
  }
  return out;
}

/** The single place where CLI output (progress, errors) is redacted of the secrets it resolved: ci/src/redact. */
function redact(text: string, secrets: readonly string[]): string {
  return redactError(text, secrets);
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
  const secrets: string[] = [];
  const stderr = (text: string) => process.stderr.write(redact(text, secrets));
  // --json is global (no function has a `json` argument): JSON events instead of progress lines.
  const json = rest.includes('--json');
  try {
    const args = parseArgs(f, rest.filter((t) => t !== '--json'), { secrets });
    const result = await f.run(args, { source, progress: (line) => stderr(`${kebab(f.name)}: ${line}\n`), ...(json ? { emit: (line: string) => stderr(`${line}\n`) } : {}) });
    const text = result.endsWith('\n') ? result : result + '\n';
    if (typeof args.output === 'string') writeFileSync(args.output, text);
    process.stdout.write(text);
    return 0;
  } catch (e) {
    const code = e instanceof StellaError ? ` [${e.code}]` : '';
    stderr(`stella-release ${kebab(f.name)}: error${code}: ${(e as Error).message}\n`);
    if (process.env.STELLA_DEBUG) stderr(`${(e as Error).stack}\n`);
    return 1;
  }
}

if (import.meta.main) {
  process.exitCode = await main(process.argv.slice(2));
}
