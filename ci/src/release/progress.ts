/**
 * Release progress: what each step is doing, how long it took, and what it did.
 *
 *   plain (default, and without a TTY)  `── <step>` when a step starts, its lines as they come,
 *                                        `── <step>: <what it did> (<seconds>s)` when it ends;
 *   live (on a terminal: ./live.ts)      one line per step and, under the running one, one line
 *                                        per image, redrawn in place (ANSI; TERM=dumb gives
 *                                        plain lines, NO_COLOR no colours); warnings stay;
 *   --json                               one JSON event per line (ReleaseEvent), nothing else; a
 *                                        log line about one image carries its `image`;
 *
 * and in all, at the end (also when a step fails), the summary: one row per step with what it
 * did and its time (a table in plain and live mode, a `summary` event in JSON mode). The same
 * timings go into release.json (`steps`).
 */
import { inStep } from '../errors.ts';
import type { StepIo } from './context.ts';
import { LiveView, imageOfLine, type LiveOptions } from './live.ts';

export type StepStatus = 'done' | 'skipped' | 'failed';

export interface StepTiming {
  readonly step: string;
  readonly status: StepStatus;
  /** What the step did, in a few words ("11 images built, 0 pushed"; "skipped: no bundle step"). */
  readonly did: string;
  readonly seconds: number;
}

export type ReleaseEvent =
  | { readonly event: 'step-start'; readonly step: string; readonly time: string }
  | { readonly event: 'log'; readonly step?: string; readonly image?: string; readonly message: string }
  | ({ readonly event: 'step-end' } & StepTiming)
  | { readonly event: 'plan'; readonly plan: unknown }
  | { readonly event: 'summary'; readonly steps: readonly StepTiming[]; readonly seconds: number; readonly ok: boolean };

/** What a step returns: its value and what it did; a skipped step says why. */
export interface StepOutcome<T> {
  readonly value: T;
  readonly did: string;
  readonly skipped?: boolean;
}

const round = (s: number) => Math.round(s * 100) / 100;

export interface ProgressOptions {
  /** The images (service names) log lines are attributed to (JSON `image`, the live view's rows). */
  readonly images?: readonly string[];
  /** Draw a live view on this terminal instead of plain lines (see liveMode in ./live.ts); ignored with JSON. */
  readonly live?: Omit<LiveOptions, 'images'>;
}

export class Progress {
  readonly steps: StepTiming[] = [];
  readonly #io: StepIo;
  readonly #json: boolean;
  #images: readonly string[];
  readonly #live: LiveView | undefined;
  readonly #started = performance.now();
  #current: string | undefined;

  constructor(io: StepIo, json: boolean, o: ProgressOptions = {}) {
    this.#io = io;
    this.#json = json;
    this.#images = o.images ?? [];
    this.#live = o.live && !json ? new LiveView({ ...o.live, images: this.#images }) : undefined;
  }

  /** The images log lines are about, once known (promote learns them from the rc's record). */
  setImages(images: readonly string[]): void {
    this.#images = images;
    this.#live?.setImages(images);
  }

  /** The steps the run will go through, in order (the live view shows them before they start). */
  expect(steps: readonly string[]): void {
    this.#live?.expect(steps);
  }

  get json(): boolean {
    return this.#json;
  }

  emit(e: ReleaseEvent): void {
    const line = JSON.stringify(e);
    if (this.#io.emit) this.#io.emit(line);
    else this.#io.progress(line);
  }

  log(message: string): void {
    if (this.#json) {
      const image = this.#current ? imageOfLine(message, this.#images) : undefined;
      this.emit({ event: 'log', ...(this.#current ? { step: this.#current } : {}), ...(image ? { image } : {}), message });
    } else if (this.#live) this.#live.log(this.#current, message);
    else this.#io.progress(message);
  }

  /** A StepIo for the steps' own progress lines (attributed to the running step). */
  get io(): StepIo {
    return { progress: (line) => this.log(line) };
  }

  /** Runs one step, timing it; an error names the step (its code is kept) and is recorded as failed. */
  async step<T>(name: string, run: () => Promise<StepOutcome<T>>): Promise<T> {
    this.#current = name;
    const t0 = performance.now();
    if (this.#json) this.emit({ event: 'step-start', step: name, time: new Date().toISOString() });
    else if (this.#live) this.#live.start(name);
    else this.#io.progress(`── ${name}`);
    try {
      const r = await run();
      this.#end({ step: name, status: r.skipped ? 'skipped' : 'done', did: r.did, seconds: round((performance.now() - t0) / 1000) });
      return r.value;
    } catch (e) {
      const err = inStep(name, e);
      this.#end({ step: name, status: 'failed', did: err.message.split('\n')[0]!.slice(0, 200), seconds: round((performance.now() - t0) / 1000) });
      throw err;
    } finally {
      this.#current = undefined;
    }
  }

  /** Records a step that did not run (a dry run's later steps, a missing hook). */
  skip(name: string, why: string): void {
    this.#end({ step: name, status: 'skipped', did: why, seconds: 0 });
  }

  #end(timing: StepTiming): void {
    // "skipped: why" → status skipped, did "why" (the status is said once).
    const t = timing.did.startsWith(`${timing.status}: `) ? { ...timing, did: timing.did.slice(timing.status.length + 2) } : timing;
    this.steps.push(t);
    if (this.#json) this.emit({ event: 'step-end', ...t });
    else if (this.#live) this.#live.end(t);
    else this.#io.progress(`── ${t.step}: ${t.status === 'done' ? '' : `${t.status}: `}${t.did} (${t.seconds.toFixed(2)}s)`);
  }

  get seconds(): number {
    return round((performance.now() - this.#started) / 1000);
  }

  /** The final summary: a table (plain) or a `summary` event (JSON). */
  summary(ok: boolean): void {
    if (this.#json) {
      this.emit({ event: 'summary', steps: this.steps, seconds: this.seconds, ok });
      return;
    }
    const table = summaryTable(this.steps, this.seconds);
    if (this.#live) this.#live.close(table);
    else for (const line of table) this.#io.progress(line);
  }
}

/** The summary as text rows: step, status, time, what it did; then the total. */
export function summaryTable(steps: readonly StepTiming[], total: number): string[] {
  const w = Math.max(4, ...steps.map((s) => s.step.length));
  const rows = [`${'step'.padEnd(w)}  ${'status'.padEnd(7)}  ${'time'.padStart(8)}  what it did`];
  for (const s of steps) rows.push(`${s.step.padEnd(w)}  ${s.status.padEnd(7)}  ${`${s.seconds.toFixed(2)}s`.padStart(8)}  ${s.did}`);
  rows.push(`${'total'.padEnd(w)}  ${''.padEnd(7)}  ${`${total.toFixed(2)}s`.padStart(8)}`);
  return rows;
}
