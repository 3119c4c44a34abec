/**
 * Generated regions inside hand-written files. A region is delimited by
 *
 *   <!-- BEGIN GENERATED <name>: from ci/src/catalog; regenerate with `npm run generate` -->
 *   …
 *   <!-- END GENERATED <name> -->
 *
 * so that prose stays editable while tables come from the catalog.
 */
import { StellaError } from '../errors.ts';

export function regionBegin(name: string): string {
  return `<!-- BEGIN GENERATED ${name}: from ci/src/catalog; regenerate with \`npm run generate\` -->`;
}

export function regionEnd(name: string): string {
  return `<!-- END GENERATED ${name} -->`;
}

/** Replaces the body of region `name` in `text`; throws when the markers are missing. */
export function replaceRegion(file: string, text: string, name: string, body: string): string {
  const begin = text.indexOf(`<!-- BEGIN GENERATED ${name}:`);
  const endMarker = regionEnd(name);
  const end = text.indexOf(endMarker);
  if (begin < 0 || end < 0 || end < begin) {
    throw new StellaError('INVALID_ARGUMENT', `${file}: generated region "${name}" not found (expected the lines ${regionBegin(name)} … ${endMarker})`);
  }
  const lineEnd = text.indexOf('\n', begin);
  return `${text.slice(0, lineEnd + 1)}${body.trimEnd()}\n${text.slice(end)}`;
}

/** Renders a Markdown table; cells are escaped for pipes. */
export function table(header: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const esc = (v: string | number) => String(v).replaceAll('|', '\\|').replaceAll('\n', ' ');
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n');
}
