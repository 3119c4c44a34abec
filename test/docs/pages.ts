/**
 * The pages the docs tests read (README.md and every page under docs/) and their
 * fenced blocks, with the marker convention of docs/README.md:
 *
 *   ```sh runnable               run as written against a local release
 *   ```sh not-here: <reason>     syntax and names checked only
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { functions, kebab } from '../../ci/src/functions.ts';

/** The checkout whose pages are read (STELLA_DOCS_ROOT: another copy of the tree, e.g. to show a check fails on old text). */
export const ROOT = process.env.STELLA_DOCS_ROOT ?? join(import.meta.dirname, '..', '..');

export const IMPOSED_RULE = 'Imposed rule: Work of this type or tasks of this type on this component must also be applied everywhere else it should be applied.';

export interface Block {
  readonly page: string;
  /** 1-based line of the opening fence. */
  readonly line: number;
  readonly lang: string;
  readonly info: string;
  readonly marker?: 'runnable' | 'not-here';
  readonly reason?: string;
  readonly code: string;
}

export function pages(): string[] {
  const out = ['README.md'];
  const walk = (dir: string): void => {
    for (const e of readdirSync(join(ROOT, dir)).sort()) {
      const p = join(dir, e);
      if (statSync(join(ROOT, p)).isDirectory()) walk(p);
      else if (e.endsWith('.md')) out.push(p);
    }
  };
  walk('docs');
  return out;
}

export function read(page: string): string {
  return readFileSync(join(ROOT, page), 'utf8');
}

export function blocks(page: string, text = read(page)): Block[] {
  const out: Block[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)```(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const indent = open[1]!.length;
    const info = open[2]!.trim();
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length && !/^\s*```\s*$/.test(lines[j]!); j++) body.push(lines[j]!.slice(Math.min(indent, lines[j]!.length - lines[j]!.trimStart().length)));
    const lang = info.split(/\s+/)[0] ?? '';
    const m = /^\S+\s+(runnable|not-here)(?::\s*(.*))?$/.exec(info);
    out.push({ page, line: i + 1, lang, info, marker: m?.[1] as Block['marker'], reason: m?.[2]?.trim(), code: body.join('\n') + '\n' });
    i = j;
  }
  return out;
}

export const SHELL_LANGS = new Set(['sh', 'bash', 'shell', 'console', 'zsh']);

export function shellBlocks(): Block[] {
  return pages().flatMap((p) => blocks(p)).filter((b) => SHELL_LANGS.has(b.lang));
}

/** Inline code spans of the prose (outside fenced blocks). */
export function inlineCode(page: string, text = read(page)): { line: number; code: string }[] {
  const out: { line: number; code: string }[] = [];
  let inFence = false;
  text.split('\n').forEach((l, i) => {
    if (/^\s*```/.test(l)) inFence = !inFence;
    else if (!inFence) for (const m of l.matchAll(/`([^`]+)`/g)) out.push({ line: i + 1, code: m[1]! });
  });
  return out;
}

/** Joins backslash continuations and drops comments, giving one logical command line per entry. */
export function logicalLines(code: string): string[] {
  const joined = code.replace(/\\\n/g, ' ');
  return joined.split('\n').map((l) => l.replace(/(^|\s)#.*$/, '').trim()).filter(Boolean);
}

export interface Invocation {
  readonly via: 'stella-release' | 'dagger';
  readonly fn?: string;
  readonly flags: string[];
  readonly text: string;
}

function tokens(s: string): string[] {
  return s.match(/"[^"]*"|'[^']*'|\S+/g) ?? [];
}

const SEPARATORS = new Set(['|', '||', '&&', ';', '&', ')', '>', '2>', '>>']);

/** Every `stella-release <fn> --flag …` and `dagger call <fn> --flag …` in `line`. */
export function invocations(line: string): Invocation[] {
  const out: Invocation[] = [];
  const t = tokens(line.replace(/([;|)])/g, ' $1 '));
  for (let i = 0; i < t.length; i++) {
    let via: Invocation['via'];
    let j: number;
    if (t[i] === 'stella-release' || t[i]!.endsWith('ci/src/cli.ts')) [via, j] = ['stella-release', i + 1];
    else if (t[i] === 'dagger' && t[i + 1] === 'call') [via, j] = ['dagger', i + 2];
    else continue;
    if (t[j] === '--') j++;
    if (t[j] === '--source') j += 2;
    const fn = t[j] && !t[j]!.startsWith('-') && !SEPARATORS.has(t[j]!) ? t[j] : undefined;
    if (fn !== undefined && !/^[a-z][a-z-]*$/.test(fn)) continue; // a placeholder: `dagger call X`, `<name>`, `…`
    const flags: string[] = [];
    if (fn === undefined && t[j]?.startsWith('--')) flags.push(t[j]!.slice(2));
    const spec = functions.find((f) => kebab(f.name) === fn);
    for (j = j + 1; j < t.length; j++) {
      const tok = t[j]!;
      if (SEPARATORS.has(tok)) break;
      if (tok === '…' || tok === '...') continue;
      if (!tok.startsWith('--')) {
        if (via === 'dagger') break; // a chained call: `… export --path dist`
        continue;
      }
      const [flag, inline] = tok.slice(2).split('=', 2) as [string, string | undefined];
      flags.push(flag);
      const arg = spec?.args.find((a) => kebab(a.name) === flag);
      if (inline === undefined && arg && arg.type !== 'boolean') j++;
    }
    out.push({ via, fn, flags, text: line });
  }
  return out;
}

/** Flags a function accepts on the command line (`--help` everywhere; `--output` where the CLI takes it). */
export function acceptedFlags(fn: string | undefined, via: Invocation['via']): Set<string> | undefined {
  if (fn === undefined) return new Set(['help', 'source']);
  const spec = functions.find((f) => kebab(f.name) === fn);
  if (!spec) return undefined;
  const flags = new Set(spec.args.map((a) => kebab(a.name)));
  flags.add('help');
  // --json is the CLI's global option (JSON events on stderr), accepted anywhere on the line.
  if (via === 'stella-release') flags.add('json');
  // The CLI writes any function's stdout to a file with --output (until it is an argument of each function).
  if (via === 'stella-release' && !functions.some((f) => f.args.some((a) => a.name === 'output'))) flags.add('output');
  return flags;
}

/** `(value, flag)` of every file-typed flag with a literal value in `line`. */
export function fileArguments(line: string): { fn: string; flag: string; value: string }[] {
  const out: { fn: string; flag: string; value: string }[] = [];
  for (const inv of invocations(line)) {
    const spec = functions.find((f) => kebab(f.name) === inv.fn);
    if (!spec) continue;
    const t = tokens(line);
    for (let i = 0; i < t.length - 1; i++) {
      const flag = t[i]!.startsWith('--') ? t[i]!.slice(2) : undefined;
      const arg = flag && spec.args.find((a) => kebab(a.name) === flag);
      const value = t[i + 1]!.replace(/^["']|["']$/g, '');
      if (arg && (arg.type === 'file' || flag === 'images') && !/[$<…]/.test(value)) out.push({ fn: inv.fn!, flag: flag!, value });
    }
  }
  return out;
}

/** Repository-relative paths named in `code` (dist/… included), without placeholders. */
export function pathsNamed(code: string): string[] {
  const out = new Set<string>();
  for (const m of code.matchAll(/(?<![\w./:@-])(?:\.\/)?((?:ci|services|docker|docs|scripts|test|bench|deploy|tools|dist)\/[\w.\/-]*[\w-])/g)) {
    out.add(m[1]!);
  }
  return [...out];
}

export function rel(p: string): string {
  return relative(ROOT, p);
}
