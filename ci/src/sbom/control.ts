/**
 * Debian control-file syntax (deb822), shared by dpkg status files and DEP-5 copyright
 * files: paragraphs separated by blank lines, `Field: value`, continuation lines that
 * start with a space or tab, and ` .` standing for an empty line inside a value.
 */

export interface ControlParagraph {
  /** Field names lower-cased (deb822 names are case-insensitive); values keep their lines joined by `\n`. */
  readonly fields: ReadonlyMap<string, string>;
  /** 1-based line number where the paragraph starts, for messages. */
  readonly line: number;
}

export function parseControlParagraphs(text: string): ControlParagraph[] {
  const out: ControlParagraph[] = [];
  let fields = new Map<string, string>();
  let start = 0;
  let current: string | undefined;
  const flush = (): void => {
    if (fields.size > 0) out.push({ fields, line: start });
    fields = new Map();
    current = undefined;
  };
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  for (const [i, raw] of lines.entries()) {
    if (raw.trim() === '') {
      flush();
      continue;
    }
    if (raw.startsWith('#')) continue; // comments are allowed in deb822 files outside values
    if (raw.startsWith(' ') || raw.startsWith('\t')) {
      if (current === undefined) continue; // a continuation with nothing to continue: ignore
      const body = raw.slice(1);
      const line = body.trim() === '.' ? '' : body;
      fields.set(current, `${fields.get(current)}\n${line}`);
      continue;
    }
    const colon = raw.indexOf(':');
    if (colon <= 0) {
      current = undefined; // not a field line; skip it rather than guess
      continue;
    }
    if (fields.size === 0) start = i + 1;
    current = raw.slice(0, colon).trim().toLowerCase();
    fields.set(current, raw.slice(colon + 1).trim());
  }
  flush();
  return out;
}
