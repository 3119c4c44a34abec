/**
 * The release's live view on a terminal: one line per step (done ✓, running with a spinner,
 * skipped, failed ✗, still to come ·), and under the running step one line per image with what
 * last happened to it; redrawn in place with ANSI cursor movement, never taller or wider than
 * the terminal. Lines that must stay (warnings, lines outside any step, the closing summary)
 * are printed above the view, which then disappears at the end, leaving the summary table.
 *
 *   const view = new LiveView({ stream: process.stderr, color: !process.env.NO_COLOR, title: 'release edge', images: ['api', …] });
 *   view.expect(['preflight', 'key', …]);   view.start('build');   view.log('build', 'stella-api: index …');
 *   view.end({ step: 'build', status: 'done', did: '…', seconds: 3.2 });   view.close(['step status …']);
 *
 * Pure apart from `stream.write` and its timers (a spinner tick; none with `interval: 0`, then
 * every change redraws at once, which is what tests use with a fake stream and clock).
 */
import type { StepTiming } from './progress.ts';

/** What the view writes to: a terminal stream (process.stderr) or a test's fake one. */
export interface TtyStream {
  write(text: string): unknown;
  readonly isTTY?: boolean;
  readonly columns?: number;
  readonly rows?: number;
}

export interface LiveOptions {
  readonly stream: TtyStream;
  /** SGR colours (off with NO_COLOR); cursor movement is used either way. */
  readonly color: boolean;
  /** The first line, e.g. `release edge`. */
  readonly title?: string;
  /** The images (service names) a step's lines are attributed to. */
  readonly images?: readonly string[];
  /** Milliseconds between spinner ticks (default 120); 0: no timer, every change redraws. */
  readonly interval?: number;
  /** The clock (tests); default performance.now. */
  readonly now?: () => number;
  /**
   * Applied to every line before it is kept or cut to the terminal's width (the front end's
   * secret redaction: a secret cut in half would escape a redactor applied afterwards).
   */
  readonly redact?: (text: string) => string;
}

const ESC = '\x1b[';
const SPINNER = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
const SGR = { green: '32', red: '31', yellow: '33', cyan: '36', dim: '2', bold: '1' } as const;

/**
 * Whether progress goes to a live view: only on a terminal (`isTTY`) whose TERM is not `dumb`,
 * and never with `--json`; colours unless NO_COLOR is set (https://no-color.org).
 */
export function liveMode(stream: TtyStream | undefined, env: Readonly<Record<string, string | undefined>>, json: boolean): { live: boolean; color: boolean } {
  const live = !json && stream?.isTTY === true && (env.TERM ?? '') !== '' && env.TERM !== 'dumb';
  return { live, color: live && (env.NO_COLOR ?? '') === '' };
}

/** The image a progress line is about: it starts with `<service>` or `stella-<service>`, or names `…/stella-<service>:tag|@digest`. */
export function imageOfLine(line: string, images: readonly string[]): string | undefined {
  for (const s of [...images].sort((a, b) => b.length - a.length)) {
    for (const p of [s, `stella-${s}`]) if (line.startsWith(`${p}:`) || line.startsWith(`${p} `)) return s;
    if (line.includes(`/stella-${s}:`) || line.includes(`/stella-${s}@`)) return s;
  }
  return undefined;
}

/** The line without the image's own name in front (`api linux/amd64: …` → `linux/amd64: …`). */
function withoutImage(line: string, image: string): string {
  for (const p of [`stella-${image}`, image]) {
    if (line.startsWith(`${p}: `)) return line.slice(p.length + 2);
    if (line.startsWith(`${p} `)) return line.slice(p.length + 1);
  }
  return line;
}

/** At most `width` characters (code points), with `…` when cut. */
function fit(text: string, width: number): string {
  const chars = [...text.replace(/[\r\n\t]+/g, ' ')];
  return chars.length <= width ? chars.join('') : `${chars.slice(0, Math.max(0, width - 1)).join('')}…`;
}

interface StepState {
  readonly step: string;
  status: 'pending' | 'running' | StepTiming['status'];
  started?: number;
  seconds?: number;
  did?: string;
  /** The last line of the step not about one image. */
  last?: string;
  /** Per image: its last line in this step, and when it came (a sequence number). */
  readonly images: Map<string, string>;
  readonly heard: Map<string, number>;
}

export class LiveView {
  readonly #o: LiveOptions;
  readonly #now: () => number;
  #images: readonly string[];
  readonly #redact: (text: string) => string;
  readonly #started: number;
  readonly #steps: StepState[] = [];
  #drawn = 0;
  #tick = 0;
  #seq = 0;
  #timer: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  #cursorHidden = false;
  readonly #restoreCursor = () => this.#cursorHidden && this.#o.stream.write(`${ESC}?25h`);

  constructor(o: LiveOptions) {
    this.#o = o;
    this.#now = o.now ?? (() => performance.now());
    this.#redact = o.redact ?? ((t) => t);
    this.#images = o.images ?? [];
    this.#started = this.#now();
    const interval = o.interval ?? 120;
    if (interval > 0) {
      this.#timer = setInterval(() => {
        this.#tick++;
        this.#draw();
      }, interval);
      this.#timer.unref?.();
    }
    process.once('exit', this.#restoreCursor);
  }

  /** The images lines are attributed to, when they are known only once the run started (promote: the rc's). */
  setImages(images: readonly string[]): void {
    this.#images = images;
  }

  /** The steps to come, shown as `·` until they run (the plan's order). */
  expect(steps: readonly string[]): void {
    for (const s of steps) if (!this.#steps.some((x) => x.step === s)) this.#steps.push({ step: s, status: 'pending', images: new Map(), heard: new Map() });
    this.#draw();
  }

  start(step: string): void {
    const s = this.#state(step);
    s.status = 'running';
    s.started = this.#now();
    this.#draw();
  }

  /** A line of `step` (attributed to an image when it names one); a line outside any step, or a warning, stays above the view. */
  log(step: string | undefined, raw: string): void {
    const line = this.#redact(raw);
    if (step === undefined || /^warning: /.test(line)) {
      this.print([line]);
      return;
    }
    const s = this.#state(step);
    const image = imageOfLine(line, this.#images);
    if (image) {
      s.images.set(image, withoutImage(line, image));
      s.heard.set(image, ++this.#seq);
    } else s.last = line;
    // Many lines a second: with a ticker they show on its next tick; without one, at once.
    if (!this.#timer) this.#draw();
  }

  end(t: StepTiming): void {
    const s = this.#state(t.step);
    s.status = t.status;
    s.seconds = t.seconds;
    s.did = this.#redact(t.did);
    this.#draw();
  }

  /** Prints lines above the view (they stay); the view is drawn again below them. */
  print(raw: readonly string[]): void {
    const lines = raw.map((l) => this.#redact(l));
    if (this.#closed) {
      this.#o.stream.write(lines.map((l) => `${l}\n`).join(''));
      return;
    }
    this.#draw(lines);
  }

  /** Removes the view, prints `lines` (the summary table) in its place, and stops redrawing. */
  close(raw: readonly string[] = []): void {
    if (this.#closed) return;
    const lines = raw.map((l) => this.#redact(l));
    if (this.#timer) clearInterval(this.#timer);
    this.#o.stream.write(`${this.#erase()}${lines.map((l) => `${l}\n`).join('')}${this.#cursorHidden ? `${ESC}?25h` : ''}`);
    this.#cursorHidden = false;
    this.#closed = true;
    process.removeListener('exit', this.#restoreCursor);
  }

  #state(step: string): StepState {
    let s = this.#steps.find((x) => x.step === step);
    if (!s) {
      s = { step, status: 'pending', images: new Map(), heard: new Map() };
      // A step that was not announced goes before the first one still to come.
      const at = this.#steps.findIndex((x) => x.status === 'pending');
      this.#steps.splice(at < 0 ? this.#steps.length : at, 0, s);
    }
    return s;
  }

  #erase(): string {
    const up = this.#drawn > 0 ? `${ESC}${this.#drawn}F${ESC}J` : '';
    this.#drawn = 0;
    return up;
  }

  #draw(above: readonly string[] = []): void {
    if (this.#closed) return;
    const lines = this.#lines();
    const text = lines.map((l) => `${this.#paint(l)}\n`).join('');
    const hide = this.#cursorHidden ? '' : `${ESC}?25l`;
    this.#cursorHidden = true;
    // Lines above the view stay whole (the terminal wraps them; the view never moves above itself).
    this.#o.stream.write(`${hide}${this.#erase()}${above.map((l) => `${l}\n`).join('')}${text}`);
    this.#drawn = lines.length;
  }

  #paint(l: Line): string {
    if (!this.#o.color || !l.sgr) return l.text;
    return `${ESC}${l.sgr}m${l.text}${ESC}0m`;
  }

  /** The view's lines, fitted to the terminal: steps always, images of the running step as room allows. */
  #lines(): Line[] {
    const width = Math.max(20, (this.#o.stream.columns ?? 100) - 1);
    const height = Math.max(3, (this.#o.stream.rows ?? 40) - 1);
    const now = this.#now();
    const name = Math.max(4, ...this.#steps.map((s) => s.step.length));
    const header: Line = { text: fit(`${this.#o.title ?? 'release'} · ${((now - this.#started) / 1000).toFixed(1)}s`, width), sgr: SGR.bold };
    const stepLines: Line[][] = this.#steps.map((s) => {
      const label = s.step.padEnd(name);
      switch (s.status) {
        case 'pending':
          return [{ text: fit(`  · ${label}`, width), sgr: SGR.dim }];
        case 'running': {
          const secs = `${((now - (s.started ?? now)) / 1000).toFixed(1)}s`.padStart(7);
          const names = this.#images;
          const seen = names.filter((i) => s.images.has(i)).length;
          const count = seen ? `[${seen}/${names.length}] ` : '';
          const head: Line = { text: fit(`  ${SPINNER[this.#tick % SPINNER.length]} ${label} ${secs}  ${count}${s.last ?? ''}`, width), sgr: SGR.cyan };
          const imageWidth = Math.max(4, ...names.map((i) => i.length));
          const images: Line[] = seen ? names.map((i) => (s.images.has(i) ? { text: fit(`      ${i.padEnd(imageWidth)}  ${s.images.get(i)}`, width) } : { text: fit(`      ${i.padEnd(imageWidth)}  ·`, width), sgr: SGR.dim })) : [];
          return [head, ...images];
        }
        default: {
          const mark = s.status === 'done' ? '✓' : s.status === 'failed' ? '✗' : '-';
          const sgr = s.status === 'done' ? SGR.green : s.status === 'failed' ? SGR.red : SGR.yellow;
          const what = s.status === 'done' ? (s.did ?? '') : `${s.status}: ${s.did ?? ''}`;
          return [{ text: fit(`  ${mark} ${label} ${`${(s.seconds ?? 0).toFixed(2)}s`.padStart(7)}  ${what}`, width), sgr }];
        }
      }
    });
    for (const g of stepLines) for (const [k, l] of g.entries()) g[k] = { ...l, text: l.text.trimEnd() };
    const all = [header, ...stepLines.flat()];
    if (all.length <= height) return all;
    // Too tall: keep every step line, and as many image lines as fit, then say how many are left out.
    const room = height - 1 - stepLines.length;
    const out: Line[] = [header];
    for (const [i, group] of stepLines.entries()) {
      out.push(group[0]!);
      const images = group.slice(1);
      if (!images.length) continue;
      // The images heard from last, kept in their order.
      const shown = Math.max(0, room - 1);
      const heard = this.#steps[i]!.heard;
      const names = this.#images;
      const recent = new Set([...names].sort((a, b) => (heard.get(b) ?? 0) - (heard.get(a) ?? 0)).slice(0, shown));
      out.push(...images.filter((_, k) => recent.has(names[k]!)));
      out.push({ text: fit(`      … ${images.length - recent.size} more`, width), sgr: SGR.dim });
    }
    if (out.length <= height) return out;
    // Still too tall (a tiny terminal): the finished steps fold into one line.
    const finished = this.#steps.filter((s) => s.status !== 'pending' && s.status !== 'running').length;
    const rest = out.filter((l, i) => i === 0 || !/^ {2}[✓✗-] /.test(l.text));
    return [rest[0]!, { text: fit(`  ✓ ${finished} step(s) finished`, width), sgr: SGR.green }, ...rest.slice(1)].slice(0, height);
  }
}

interface Line {
  readonly text: string;
  readonly sgr?: string;
}
