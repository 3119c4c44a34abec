/**
 * A restricted Dockerfile interpreter: the subset our images use, with
 * BuildKit's semantics, and nothing that executes at build time.
 *
 * Supported: ARG (global and stage), one FROM (variables expanded), COPY
 * [--chown=<uid>:<gid>] from the build context (files and directories), ENV,
 * LABEL, EXPOSE, USER, WORKDIR, ENTRYPOINT/CMD (exec form), HEALTHCHECK (exec
 * form or NONE, with --interval/--timeout/--start-period/--retries), STOPSIGNAL.
 * Everything else (RUN, ADD, VOLUME, SHELL, ONBUILD, multi-stage, COPY --from,
 * shell-form CMD, heredocs, wildcards …) is refused with DOCKERFILE_UNSUPPORTED
 * naming the file, the line and the instruction.
 *
 *   const program = parseDockerfile('docker/stella-api.Dockerfile', text);
 *   const baseRef = resolveFrom(program, buildArgs);                     // FROM, expanded
 *   const step = interpretDockerfile(program, { buildArgs, baseConfig, platform });
 *   // step.copies → layers (copyLayerOptions), then:
 *   const config = finishConfig(step, layers.map((l) => l.diffId), sourceDateEpoch);
 */
import { lstat, readlink } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { DockerfileParser, type Instruction, type Property } from 'dockerfile-ast';
import { StellaError } from '../errors.ts';
import type { Platform } from '../oci/types.ts';
import type { LayerEntry, LayerOptions } from '../oci/layer.ts';

// ---------------------------------------------------------------------------
// Image config (Docker / OCI image config JSON; Docker's names for the
// container config fields, which the OCI config shares, plus Healthcheck).

export interface HealthcheckConfig {
  Test: string[];
  Interval?: number;
  Timeout?: number;
  StartPeriod?: number;
  Retries?: number;
}

export interface ContainerConfig {
  User?: string;
  ExposedPorts?: Record<string, Record<string, never>>;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
  Labels?: Record<string, string>;
  StopSignal?: string;
  Healthcheck?: HealthcheckConfig;
  [other: string]: unknown;
}

export interface HistoryEntry {
  created?: string;
  created_by?: string;
  comment?: string;
  empty_layer?: boolean;
  [other: string]: unknown;
}

export interface ImageConfig {
  created?: string;
  architecture: string;
  os: string;
  variant?: string;
  config?: ContainerConfig;
  rootfs: { type: 'layers'; diff_ids: string[] };
  history?: HistoryEntry[];
  [other: string]: unknown;
}

// ---------------------------------------------------------------------------
// Parsing

type Keyword = 'ARG' | 'FROM' | 'COPY' | 'ENV' | 'LABEL' | 'EXPOSE' | 'USER' | 'WORKDIR' | 'ENTRYPOINT' | 'CMD' | 'HEALTHCHECK' | 'STOPSIGNAL';
const SUPPORTED = new Set<string>(['ARG', 'FROM', 'COPY', 'ENV', 'LABEL', 'EXPOSE', 'USER', 'WORKDIR', 'ENTRYPOINT', 'CMD', 'HEALTHCHECK', 'STOPSIGNAL']);

interface Step {
  readonly keyword: Keyword;
  /** 1-based line of the instruction. */
  readonly line: number;
  readonly ins: Instruction;
  /** The instruction on one line, as written (for history and messages). */
  readonly text: string;
}

export interface DockerfileProgram {
  readonly file: string;
  /** ARGs before FROM: name → raw default (unexpanded) or undefined. */
  readonly globalArgs: readonly { name: string; rawDefault: string | undefined; line: number }[];
  readonly from: Step;
  /** Instructions after FROM, in order. */
  readonly steps: readonly Step[];
}

function refuse(file: string, line: number, what: string, why: string): never {
  throw new StellaError('DOCKERFILE_UNSUPPORTED', `${file}:${line}: ${what} is not supported by the stella builder: ${why}`);
}

function invalid(file: string, line: number, what: string, why: string): never {
  throw new StellaError('DOCKERFILE_UNSUPPORTED', `${file}:${line}: ${what}: ${why}`);
}

function oneLine(ins: Instruction): string {
  return ins.getTextContent().replace(/\\\r?\n/g, ' ').replace(/\s+/g, ' ').trim();
}

/** Parses and checks a Dockerfile; refuses anything outside the supported subset. */
export function parseDockerfile(file: string, text: string): DockerfileProgram {
  const df = DockerfileParser.parse(text);
  for (const d of df.getDirectives()) {
    const name = d.getName().toLowerCase();
    if (name === 'escape' && d.getValue() !== '\\') {
      refuse(file, d.getRange().start.line + 1, `parser directive "escape=${d.getValue()}"`, 'only the default escape character \\ is supported');
    }
  }
  const globalArgs: { name: string; rawDefault: string | undefined; line: number }[] = [];
  let from: Step | undefined;
  const steps: Step[] = [];
  for (const ins of df.getInstructions()) {
    const keyword = ins.getKeyword().toUpperCase();
    const line = ins.getRange().start.line + 1;
    const text = oneLine(ins);
    if (!SUPPORTED.has(keyword)) {
      const why: Record<string, string> = {
        RUN: 'nothing may execute at build time (a RUN would need emulation for other platforms); do the work in the JavaScript build',
        ADD: 'use COPY from the build context (ADD fetches URLs and unpacks archives)',
        VOLUME: 'declare volumes in the compose file or the chart',
        SHELL: 'images have no shell; use exec-form instructions',
        ONBUILD: 'triggers are not supported',
        MAINTAINER: 'deprecated; use LABEL org.opencontainers.image.vendor',
      };
      refuse(file, line, keyword, why[keyword] ?? `unknown or unsupported instruction "${ins.getKeyword()}"`);
    }
    const step: Step = { keyword: keyword as Keyword, line, ins, text };
    if (keyword === 'FROM') {
      if (from) refuse(file, line, 'a second FROM (multi-stage build)', 'one stage only: the JavaScript is built natively beforehand, so no builder stage is needed');
      from = step;
      continue;
    }
    if (!from) {
      if (keyword !== 'ARG') invalid(file, line, keyword, 'only ARG may come before FROM');
      for (const p of (ins as unknown as { getProperties(): Property[] }).getProperties()) {
        const raw = p.getAssignmentOperator() === null ? undefined : (p.getUnescapedValue() ?? '');
        globalArgs.push({ name: p.getName(), rawDefault: raw, line });
      }
      continue;
    }
    checkStep(file, step);
    steps.push(step);
  }
  if (!from) invalid(file, 1, 'FROM', 'the Dockerfile has no FROM instruction');
  const fromIns = from.ins as unknown as { getFlags(): { getName(): string }[]; getArguments(): { getValue(): string }[] };
  const flags = fromIns.getFlags();
  if (flags.length) refuse(file, from.line, `FROM --${flags[0]!.getName()}`, 'platform selection is the builder\'s (each platform uses the base manifest of that platform)');
  const fargs = fromIns.getArguments().map((a) => a.getValue());
  if (fargs.length !== 1 && !(fargs.length === 3 && fargs[1]!.toUpperCase() === 'AS')) {
    invalid(file, from.line, 'FROM', `expected "FROM <image> [AS <name>]", got "${from.text}"`);
  }
  return { file, globalArgs, from, steps };
}

function flagsOf(ins: Instruction): { name: string; value: string | null; line: number }[] {
  const f = (ins as unknown as { getFlags?(): { getName(): string; getValue(): string | null; getRange(): { start: { line: number } } }[] }).getFlags;
  return f ? f.call(ins).map((x) => ({ name: x.getName(), value: x.getValue(), line: x.getRange().start.line + 1 })) : [];
}

function hasHeredoc(ins: Instruction): boolean {
  return /<<-?\s*["']?[A-Za-z_]/.test(ins.getRawArgumentsContent() ?? '');
}

function checkStep(file: string, s: Step): void {
  const flags = flagsOf(s.ins);
  const allowedFlags: Partial<Record<Keyword, string[]>> = {
    COPY: ['chown'],
    HEALTHCHECK: ['interval', 'timeout', 'start-period', 'retries'],
  };
  for (const f of flags) {
    if (!(allowedFlags[s.keyword] ?? []).includes(f.name)) {
      const why = f.name === 'from' ? 'one stage only; copy from the build context' : `supported flags: ${(allowedFlags[s.keyword] ?? []).map((x) => `--${x}`).join(', ') || 'none'}`;
      refuse(file, s.line, `${s.keyword} --${f.name}`, why);
    }
  }
  if ((s.keyword === 'COPY') && hasHeredoc(s.ins)) refuse(file, s.line, 'COPY with a heredoc', 'copy files from the build context');
  if (s.keyword === 'ENTRYPOINT' || s.keyword === 'CMD') execForm(file, s, s.ins.getArgumentsContent() ?? '');
  if (s.keyword === 'HEALTHCHECK') healthcheckTest(file, s);
}

/** Parses an exec-form JSON array, or refuses the shell form naming the line. */
function execForm(file: string, s: Step, content: string): string[] {
  const trimmed = content.trim();
  let parsed: unknown;
  try {
    parsed = JSON.parse(trimmed);
  } catch {
    parsed = undefined;
  }
  if (!Array.isArray(parsed) || !parsed.every((x) => typeof x === 'string')) {
    refuse(file, s.line, `shell-form ${s.keyword} ("${s.text}")`, `images have no shell: write the exec form, e.g. ${s.keyword} ["/nodejs/bin/node", "/app/main.js"]`);
  }
  return parsed as string[];
}

function healthcheckTest(file: string, s: Step): string[] {
  const raw = (s.ins.getRawArgumentsContent() ?? '').replace(/\\\r?\n/g, ' ').trim();
  // getRawArgumentsContent() excludes the flags: what remains is "NONE" or "CMD <exec form>".
  const m = /^(NONE|CMD)\b\s*([\s\S]*)$/i.exec(raw);
  if (!m) invalid(file, s.line, 'HEALTHCHECK', `expected "HEALTHCHECK [options] CMD [...]" or "HEALTHCHECK NONE", got "${s.text}"`);
  if (m[1]!.toUpperCase() === 'NONE') {
    if (m[2]!.trim() || flagsOf(s.ins).length) invalid(file, s.line, 'HEALTHCHECK NONE', 'takes no arguments or options');
    return ['NONE'];
  }
  return ['CMD', ...execForm(file, { ...s, keyword: 'HEALTHCHECK' }, m[2]!)];
}

// ---------------------------------------------------------------------------
// Word processing: quotes, escapes and variable expansion as BuildKit's shell lexer.

type Vars = ReadonlyMap<string, string>;

/** Processes one word: removes quotes and escapes, expands $VAR, ${VAR}, ${VAR:-x}, ${VAR-x}, ${VAR:+x}, ${VAR+x}. */
export function processWord(word: string, vars: Vars, where = 'word'): string {
  let out = '';
  let i = 0;
  const expandAt = (): string => {
    // at word[i] === '$'
    const next = word[i + 1];
    if (next === '{') {
      const close = findClose(word, i + 2);
      if (close < 0) throw new StellaError('DOCKERFILE_UNSUPPORTED', `${where}: unterminated \${ in "${word}"`);
      const inner = word.slice(i + 2, close);
      i = close + 1;
      const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([\s\S]*))?$/.exec(inner);
      if (!m) throw new StellaError('DOCKERFILE_UNSUPPORTED', `${where}: unsupported substitution "\${${inner}}" (supported: \${VAR}, \${VAR:-default}, \${VAR:+alt})`);
      const [, name, op, arg] = m;
      const v = vars.get(name!);
      switch (op) {
        case undefined:
          return v ?? '';
        case ':-':
          return v ? v : processWord(arg!, vars, where);
        case '-':
          return v !== undefined ? v : processWord(arg!, vars, where);
        case ':+':
          return v ? processWord(arg!, vars, where) : '';
        case '+':
          return v !== undefined ? processWord(arg!, vars, where) : '';
      }
      return '';
    }
    const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(word.slice(i + 1));
    if (!m) {
      i += 1;
      return '$';
    }
    i += 1 + m[0].length;
    return vars.get(m[0]) ?? '';
  };
  while (i < word.length) {
    const c = word[i]!;
    if (c === "'") {
      const end = word.indexOf("'", i + 1);
      if (end < 0) throw new StellaError('DOCKERFILE_UNSUPPORTED', `${where}: unterminated single quote in "${word}"`);
      out += word.slice(i + 1, end);
      i = end + 1;
    } else if (c === '"') {
      i += 1;
      while (i < word.length && word[i] !== '"') {
        const d = word[i]!;
        if (d === '\\' && i + 1 < word.length && ['"', '$', '\\'].includes(word[i + 1]!)) {
          out += word[i + 1];
          i += 2;
        } else if (d === '$') {
          out += expandAt();
        } else {
          out += d;
          i += 1;
        }
      }
      if (i >= word.length) throw new StellaError('DOCKERFILE_UNSUPPORTED', `${where}: unterminated double quote in "${word}"`);
      i += 1;
    } else if (c === '\\') {
      if (i + 1 < word.length) out += word[i + 1];
      i += 2;
    } else if (c === '$') {
      out += expandAt();
    } else {
      out += c;
      i += 1;
    }
  }
  return out;
}

function findClose(s: string, from: number): number {
  let depth = 1;
  for (let i = from; i < s.length; i++) {
    if (s[i] === '\\') i++;
    else if (s[i] === '{') depth++;
    else if (s[i] === '}' && --depth === 0) return i;
  }
  return -1;
}

// ---------------------------------------------------------------------------
// Evaluation

export interface InterpretOptions {
  /** --build-arg values. */
  readonly buildArgs?: Readonly<Record<string, string>>;
  /** The platform being built (gives TARGETPLATFORM, TARGETOS, TARGETARCH, TARGETVARIANT). */
  readonly platform?: Platform;
  /** The base image's config for this platform; its Env is visible to expansions, as in BuildKit. */
  readonly baseConfig?: ImageConfig;
}

/** One COPY: sources relative to the build context, absolute destination. */
export interface CopyOp {
  readonly line: number;
  readonly instruction: string;
  readonly sources: readonly string[];
  /** Absolute, as written after expansion and WORKDIR resolution (a trailing "/" kept). */
  readonly dest: string;
  readonly uid: number;
  readonly gid: number;
}

export interface Interpretation {
  readonly file: string;
  readonly copies: readonly CopyOp[];
  /** The base config with every change applied except the new layers' diff_ids and timestamps. */
  readonly config: ImageConfig;
  /** New history entries in order; `layer` marks the ones that add a layer (one per COPY). */
  readonly history: readonly { createdBy: string; layer: boolean }[];
}

function platformArgs(p: Platform | undefined): Map<string, string> {
  const m = new Map<string, string>();
  if (!p) return m;
  const name = p.variant ? `${p.os}/${p.architecture}/${p.variant}` : `${p.os}/${p.architecture}`;
  m.set('TARGETPLATFORM', name);
  m.set('TARGETOS', p.os);
  m.set('TARGETARCH', p.architecture);
  m.set('TARGETVARIANT', p.variant ?? '');
  return m;
}

function globalArgValues(program: DockerfileProgram, opts: InterpretOptions): Map<string, string> {
  const vars = platformArgs(opts.platform);
  for (const a of program.globalArgs) {
    const given = opts.buildArgs?.[a.name];
    if (given !== undefined) vars.set(a.name, given);
    else if (a.rawDefault !== undefined) vars.set(a.name, processWord(a.rawDefault, vars, `${program.file}:${a.line}: ARG ${a.name}`));
    else vars.delete(a.name);
  }
  return vars;
}

/** The base image reference of FROM, with global ARGs (and --build-arg values) expanded. */
export function resolveFrom(program: DockerfileProgram, opts: InterpretOptions = {}): string {
  const vars = globalArgValues(program, opts);
  const raw = (program.from.ins as unknown as { getArguments(): { getValue(): string }[] }).getArguments()[0]!.getValue();
  const ref = processWord(raw, vars, `${program.file}:${program.from.line}: FROM`);
  if (!ref) invalid(program.file, program.from.line, 'FROM', `"${raw}" expands to an empty image reference (set --build-arg for it)`);
  return ref;
}

const PORT_RE = /^(\d{1,5})(?:\/(tcp|udp|sctp))?$/i;
const SIGNAL_RE = /^(SIG[A-Z0-9+-]+|\d{1,2})$/;

/** Go duration ("10s", "1m30s", "500ms") to nanoseconds. */
export function parseDuration(s: string, where: string): number {
  const unit: Record<string, number> = { ns: 1, us: 1e3, 'µs': 1e3, ms: 1e6, s: 1e9, m: 60e9, h: 3600e9 };
  if (s === '0') return 0;
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/gy;
  let total = 0;
  let pos = 0;
  let m: RegExpExecArray | null;
  while ((m = re.exec(s))) {
    total += Number(m[1]) * unit[m[2]!]!;
    pos = re.lastIndex;
  }
  if (pos !== s.length || s.length === 0) throw new StellaError('DOCKERFILE_UNSUPPORTED', `${where}: "${s}" is not a duration (expected e.g. 10s, 1m30s, 500ms)`);
  return Math.round(total);
}

function envToMap(env: readonly string[] | undefined): Map<string, string> {
  const m = new Map<string, string>();
  for (const e of env ?? []) {
    const eq = e.indexOf('=');
    if (eq > 0) m.set(e.slice(0, eq), e.slice(eq + 1));
  }
  return m;
}

function sortedRecord<T>(r: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(r).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/**
 * Applies the stage's instructions to the base config. Pure: touches no file.
 * Semantics follow BuildKit's dockerfile frontend: ENV replaces a key in place or
 * appends it; LABEL/EXPOSE merge (keys sorted, as Go writes maps); ENTRYPOINT
 * clears an inherited CMD unless CMD was set earlier in this stage; relative
 * WORKDIR and COPY destinations resolve against the current WORKDIR.
 */
export function interpretDockerfile(program: DockerfileProgram, opts: InterpretOptions = {}): Interpretation {
  const file = program.file;
  const base = opts.baseConfig;
  const cfg: ContainerConfig = structuredClone(base?.config ?? {});
  const env: string[] = [...(cfg.Env ?? [])];
  const globals = globalArgValues(program, opts);
  const args = new Map<string, string>(); // stage ARGs in scope
  const copies: CopyOp[] = [];
  const history: { createdBy: string; layer: boolean }[] = [];
  let cmdSet = false;

  // Variables visible to an expansion: stage ARGs, overridden by ENV (BuildKit: ENV wins over ARG).
  const vars = (): Map<string, string> => {
    const m = new Map(args);
    for (const [k, v] of envToMap(env)) m.set(k, v);
    return m;
  };
  const word = (raw: string, s: Step, what: string): string => processWord(raw, vars(), `${file}:${s.line}: ${what}`);

  for (const s of program.steps) {
    const props = (): Property[] => (s.ins as unknown as { getProperties(): Property[] }).getProperties();
    const plainArgs = (): string[] => s.ins.getArguments().map((a) => a.getValue());
    switch (s.keyword) {
      case 'ARG': {
        for (const p of props()) {
          const name = p.getName();
          const given = opts.buildArgs?.[name];
          const raw = p.getAssignmentOperator() === null ? undefined : (p.getUnescapedValue() ?? '');
          if (given !== undefined) args.set(name, given);
          else if (raw !== undefined) args.set(name, word(raw, s, `ARG ${name}`));
          else if (globals.has(name)) args.set(name, globals.get(name)!);
          else args.delete(name);
        }
        break; // ARG leaves no trace in the image
      }
      case 'ENV': {
        const before = vars();
        const updates: [string, string][] = [];
        for (const p of props()) {
          if (p.getAssignmentOperator() === null) invalid(file, s.line, 'ENV', `write ENV KEY=VALUE (got "${s.text}")`);
          const key = processWord(p.getName(), before, `${file}:${s.line}: ENV`);
          updates.push([key, processWord(p.getUnescapedValue() ?? '', before, `${file}:${s.line}: ENV ${key}`)]);
        }
        for (const [k, v] of updates) {
          const i = env.findIndex((e) => e.startsWith(`${k}=`));
          if (i >= 0) env[i] = `${k}=${v}`;
          else env.push(`${k}=${v}`);
        }
        history.push({ createdBy: s.text, layer: false });
        break;
      }
      case 'LABEL': {
        const labels: Record<string, string> = { ...(cfg.Labels ?? {}) };
        for (const p of props()) {
          if (p.getAssignmentOperator() === null) invalid(file, s.line, 'LABEL', `write LABEL key=value (got "${s.text}")`);
          const key = word(p.getName(), s, 'LABEL');
          labels[key] = word(p.getUnescapedValue() ?? '', s, `LABEL ${key}`);
        }
        cfg.Labels = sortedRecord(labels);
        history.push({ createdBy: s.text, layer: false });
        break;
      }
      case 'EXPOSE': {
        const ports: Record<string, Record<string, never>> = { ...(cfg.ExposedPorts ?? {}) };
        for (const a of plainArgs()) {
          for (const p of word(a, s, 'EXPOSE').split(/\s+/).filter(Boolean)) {
            const m = PORT_RE.exec(p);
            if (!m || Number(m[1]) < 1 || Number(m[1]) > 65535) invalid(file, s.line, 'EXPOSE', `"${p}" is not a port (expected e.g. 8081 or 8081/tcp; ranges are not supported)`);
            ports[`${Number(m[1])}/${(m[2] ?? 'tcp').toLowerCase()}`] = {};
          }
        }
        cfg.ExposedPorts = sortedRecord(ports);
        history.push({ createdBy: s.text, layer: false });
        break;
      }
      case 'USER': {
        const a = plainArgs();
        if (a.length !== 1) invalid(file, s.line, 'USER', `expected one user[:group], got "${s.text}"`);
        cfg.User = word(a[0]!, s, 'USER');
        history.push({ createdBy: s.text, layer: false });
        break;
      }
      case 'WORKDIR': {
        const a = plainArgs();
        if (a.length !== 1) invalid(file, s.line, 'WORKDIR', `expected one path, got "${s.text}"`);
        const p = word(a[0]!, s, 'WORKDIR');
        cfg.WorkingDir = posix.resolve(cfg.WorkingDir || '/', p);
        history.push({ createdBy: s.text, layer: false });
        break;
      }
      case 'STOPSIGNAL': {
        const a = plainArgs();
        const sig = a.length === 1 ? word(a[0]!, s, 'STOPSIGNAL') : '';
        if (!SIGNAL_RE.test(sig)) invalid(file, s.line, 'STOPSIGNAL', `expected one signal such as SIGTERM, got "${s.text}"`);
        cfg.StopSignal = sig;
        history.push({ createdBy: s.text, layer: false });
        break;
      }
      case 'ENTRYPOINT': {
        cfg.Entrypoint = execForm(file, s, s.ins.getArgumentsContent() ?? '');
        if (!cmdSet) cfg.Cmd = null;
        history.push({ createdBy: s.text, layer: false });
        break;
      }
      case 'CMD': {
        cfg.Cmd = execForm(file, s, s.ins.getArgumentsContent() ?? '');
        cmdSet = true;
        history.push({ createdBy: s.text, layer: false });
        break;
      }
      case 'HEALTHCHECK': {
        const test = healthcheckTest(file, s);
        const hc: HealthcheckConfig = { Test: test };
        for (const f of flagsOf(s.ins)) {
          const v = word(f.value ?? '', s, `HEALTHCHECK --${f.name}`);
          const where = `${file}:${s.line}: HEALTHCHECK --${f.name}`;
          switch (f.name) {
            case 'interval':
              hc.Interval = parseDuration(v, where);
              break;
            case 'timeout':
              hc.Timeout = parseDuration(v, where);
              break;
            case 'start-period':
              hc.StartPeriod = parseDuration(v, where);
              break;
            case 'retries':
              if (!/^\d+$/.test(v)) invalid(file, s.line, 'HEALTHCHECK --retries', `"${v}" is not a whole number`);
              hc.Retries = Number(v);
              break;
          }
        }
        for (const k of ['Interval', 'Timeout', 'StartPeriod'] as const) {
          const v = hc[k];
          if (v !== undefined && v !== 0 && v < 1e6) invalid(file, s.line, 'HEALTHCHECK', `${k} must be at least 1ms`);
          if (v === 0) delete hc[k];
        }
        if (hc.Retries === 0) delete hc.Retries;
        // Key order as Docker writes it.
        cfg.Healthcheck = Object.fromEntries(['Test', 'Interval', 'Timeout', 'StartPeriod', 'Retries'].filter((k) => k in hc).map((k) => [k, hc[k as keyof HealthcheckConfig]])) as unknown as HealthcheckConfig;
        history.push({ createdBy: s.text, layer: false });
        break;
      }
      case 'COPY': {
        let uid = 0;
        let gid = 0;
        for (const f of flagsOf(s.ins)) {
          const v = word(f.value ?? '', s, 'COPY --chown');
          const m = /^(\d+)(?::(\d+))?$/.exec(v);
          if (!m) refuse(file, s.line, `COPY --chown=${v}`, 'only numeric uid[:gid] (the builder does not read the base image\'s /etc/passwd)');
          uid = Number(m[1]);
          gid = m[2] === undefined ? uid : Number(m[2]);
        }
        const rawArgs = s.ins.getArgumentsContent() ?? '';
        let words: string[];
        const json = (() => {
          try {
            const p: unknown = JSON.parse(rawArgs.replace(/^(\s*--\S+\s+)+/, '').trim());
            return Array.isArray(p) && p.every((x) => typeof x === 'string') ? (p as string[]) : undefined;
          } catch {
            return undefined;
          }
        })();
        if (json) words = json.map((w) => processWord(w.replace(/[\\'"]/g, '\\$&'), vars(), `${file}:${s.line}: COPY`));
        else words = plainArgs().map((a) => word(a, s, 'COPY'));
        if (words.length < 2) invalid(file, s.line, 'COPY', `expected "COPY <src>... <dest>", got "${s.text}"`);
        const dest0 = words[words.length - 1]!;
        const sources = words.slice(0, -1);
        for (const src of sources) {
          if (/[*?[]/.test(src)) refuse(file, s.line, `COPY source "${src}" with a wildcard`, 'name each file or directory');
          if (/^[a-z][a-z0-9+.-]*:\/\//i.test(src)) refuse(file, s.line, `COPY source "${src}"`, 'sources come from the build context');
          if (src.split('/').includes('..')) refuse(file, s.line, `COPY source "${src}"`, 'a source may not leave the build context');
        }
        const trailing = dest0.endsWith('/') || dest0.endsWith('/.') || dest0 === '.';
        let dest = posix.resolve(cfg.WorkingDir || '/', dest0);
        if (trailing && dest !== '/') dest += '/';
        copies.push({ line: s.line, instruction: s.text, sources, dest, uid, gid });
        history.push({ createdBy: s.text, layer: true });
        break;
      }
      case 'FROM':
        break;
      default: {
        const never: never = s.keyword;
        refuse(file, s.line, String(never), 'unknown instruction');
      }
    }
  }

  cfg.Env = env;
  const config: ImageConfig = { ...(structuredClone(base) ?? { architecture: opts.platform?.architecture ?? 'amd64', os: opts.platform?.os ?? 'linux', rootfs: { type: 'layers', diff_ids: [] } }) };
  config.config = cfg;
  return { file, copies, config, history };
}

/** RFC 3339 UTC without fractional seconds, as Go prints whole-second times. */
export function rfc3339(epochSeconds: number): string {
  return new Date(epochSeconds * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

/**
 * The final image config: the interpreted config plus the new layers' diff_ids
 * (one per COPY, in order), `created` and the new history entries stamped with
 * sourceDateEpoch. Nothing host-dependent enters it.
 */
export function finishConfig(step: Interpretation, diffIds: readonly string[], sourceDateEpoch: number): ImageConfig {
  const layerCount = step.history.filter((h) => h.layer).length;
  if (diffIds.length !== layerCount) {
    throw new StellaError('BUILD_FAILED', `${step.file}: ${layerCount} COPY layer(s) need a diff_id each, got ${diffIds.length}`);
  }
  const created = rfc3339(sourceDateEpoch);
  const c = structuredClone(step.config);
  c.created = created;
  c.rootfs = { type: 'layers', diff_ids: [...(c.rootfs?.diff_ids ?? []), ...diffIds] };
  c.history = [
    ...(c.history ?? []),
    ...step.history.map((h): HistoryEntry => ({ created, created_by: h.createdBy, comment: 'stella-build.dockerfile.v0', ...(h.layer ? {} : { empty_layer: true }) })),
  ];
  return c;
}

/**
 * The layer a COPY produces, as options for createLayer (ci/src/oci/layer.ts),
 * with BuildKit's copy semantics: a directory source copies its contents into
 * the destination; a file source lands at the destination path, or inside it
 * when the destination ends with "/" or there are several sources. Created
 * directories, like the copied entries, are owned by --chown (default 0:0).
 * Modes are normalised by the layer writer (files 0644/0755, directories 0755).
 */
export async function copyLayerOptions(context: string, op: CopyOp, sourceDateEpoch: number, file = 'Dockerfile'): Promise<LayerOptions> {
  const dirs: { dir: string; at: string }[] = [];
  const entries: LayerEntry[] = [];
  const destIsDir = op.dest.endsWith('/') || op.sources.length > 1;
  const destPath = op.dest.replace(/\/+$/, '') || '/';
  for (const src of op.sources) {
    const rel = posix.normalize(src).replace(/^\/+/, '').replace(/\/+$/, '') || '.';
    const abs = join(context, rel);
    const st = await lstat(abs).catch(() => {
      throw new StellaError('BUILD_FAILED', `${file}:${op.line}: COPY source "${src}" not found in the build context ${context} (did the JavaScript build run?)`);
    });
    if (st.isDirectory()) {
      dirs.push({ dir: abs, at: destPath });
    } else if (st.isFile() || st.isSymbolicLink()) {
      const target = destIsDir ? posix.join(destPath, posix.basename(rel)) : destPath;
      if (destIsDir && destPath !== '/') entries.push({ type: 'dir', path: destPath });
      if (st.isSymbolicLink()) {
        entries.push({ type: 'symlink', path: target, target: await readlink(abs) });
      } else {
        entries.push({ type: 'file', path: target, source: abs, executable: (st.mode & 0o111) !== 0 });
      }
    } else {
      throw new StellaError('BUILD_FAILED', `${file}:${op.line}: COPY source "${src}" is neither a file, a directory nor a symlink`);
    }
  }
  return { sourceDateEpoch, dirs, entries, uid: op.uid, gid: op.gid };
}
