/**
 * Licenses: npm `license` fields and Debian machine-readable copyright files (DEP-5,
 * https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/) turned into SPDX
 * license expressions. Expressions are checked with spdx-expression-parse (the parser
 * npm itself uses); anything that is not a valid expression becomes NOASSERTION or a
 * LicenseRef with an explanatory text, never a guess.
 */
import { createRequire } from 'node:module';
import type { DebianLicense, SpdxExtractedLicense } from './types.ts';
import { NOASSERTION, byCodeUnit, idFragment } from './spdx.ts';
import { parseControlParagraphs } from './control.ts';

const require = createRequire(import.meta.url);
const parseExpression = require('spdx-expression-parse') as (s: string) => unknown;

/** True when `expr` is a valid SPDX license expression (LicenseRef-… included). */
export function isSpdxExpression(expr: string): boolean {
  try {
    parseExpression(expr);
    return true;
  } catch {
    return false;
  }
}

/** Every `LicenseRef-…` an expression uses (no DocumentRef-qualified ones). */
export function licenseRefsIn(expr: string): string[] {
  return [...new Set(expr.match(/(?<![:\w-])LicenseRef-[A-Za-z0-9.-]+/g) ?? [])].sort(byCodeUnit);
}

/**
 * The SPDX expression of an npm package.json `license` value: a valid expression is
 * kept (outer parentheses dropped), `SEE LICENSE IN …`, `UNLICENSED`, legacy objects
 * and anything unparsable become NOASSERTION.
 */
export function npmLicenseExpression(license: unknown): string {
  if (typeof license !== 'string') return NOASSERTION;
  let expr = license.trim();
  while (expr.startsWith('(') && expr.endsWith(')') && isSpdxExpression(expr.slice(1, -1))) expr = expr.slice(1, -1).trim();
  if (!expr || !isSpdxExpression(expr)) return NOASSERTION;
  return expr;
}

/** Debian short names that differ from SPDX ids (DEP-5 §"License specification"). */
const DEBIAN_NAMES: Readonly<Record<string, string>> = {
  'expat': 'MIT',
  'mit': 'MIT',
  'bsd-2-clause': 'BSD-2-Clause',
  'bsd-3-clause': 'BSD-3-Clause',
  'bsd-4-clause': 'BSD-4-Clause',
  'isc': 'ISC',
  'zlib': 'Zlib',
  'apache-2': 'Apache-2.0',
  'apache-2.0': 'Apache-2.0',
  'mpl-1.1': 'MPL-1.1',
  'mpl-2.0': 'MPL-2.0',
  'cc0-1.0': 'CC0-1.0',
  'cc0': 'CC0-1.0',
  'artistic-2.0': 'Artistic-2.0',
  'psf-2': 'PSF-2.0',
  'unicode-dfs-2016': 'Unicode-DFS-2016',
};

/** One DEP-5 license name → an SPDX id, or undefined when there is no exact equivalent. */
export function debianLicenseToSpdx(name: string): string | undefined {
  const n = name.trim();
  const gnu = /^(A?GPL|LGPL|GFDL)-(\d)(?:\.(\d))?(\+?)$/i.exec(n);
  if (gnu) {
    const family = gnu[1]!.toUpperCase();
    const version = `${gnu[2]}.${gnu[3] ?? '0'}`;
    const id = `${family}-${version}-${gnu[4] ? 'or-later' : 'only'}`;
    return isSpdxExpression(id) ? id : undefined;
  }
  const mapped = DEBIAN_NAMES[n.toLowerCase()];
  if (mapped) return mapped;
  // Already an SPDX id (e.g. MPL-2.0, Apache-2.0): the parser knows the whole list.
  return /^[A-Za-z0-9.+-]+$/.test(n) && !n.startsWith('LicenseRef-') && isSpdxExpression(n) ? n : undefined;
}

function licenseRefFor(name: string): SpdxExtractedLicense {
  return {
    licenseId: `LicenseRef-${idFragment(name)}`,
    name,
    extractedText: `The license named "${name}" in a Debian machine-readable copyright file (DEP-5). Its terms are in the package's /usr/share/doc/<package>/copyright.`,
  };
}

/**
 * A DEP-5 `License:` first line (e.g. `GPL-2+ or Artistic`, `LGPL-2.1+ and MIT`,
 * `GPL-3+ with GCC exception`) as an SPDX expression. Terms without an exact SPDX
 * id (and every `with … exception`) become LicenseRefs.
 */
function dep5Expression(line: string, extracted: Map<string, SpdxExtractedLicense>): string {
  const orParts = line.split(/\s+or\s+/i).map((alt) => {
    const andParts = alt.split(/\s*(?:,\s*and|\band)\s+/i).map((term) => {
      const t = term.trim().replace(/,$/, '');
      const spdx = /\swith\s/i.test(t) ? undefined : debianLicenseToSpdx(t);
      if (spdx) return spdx;
      const ref = licenseRefFor(t);
      extracted.set(ref.licenseId, ref);
      return ref.licenseId;
    });
    return andParts.length > 1 ? `(${andParts.join(' AND ')})` : andParts[0]!;
  });
  return orParts.length > 1 ? orParts.join(' OR ') : orParts[0]!.replace(/^\((.*)\)$/, '$1');
}

/**
 * The declared license of a Debian package from its copyright file: the conjunction of
 * every distinct `License:` of the header and Files paragraphs when the file is
 * machine-readable (DEP-5), NOASSERTION otherwise.
 */
export function dep5License(copyright: string): DebianLicense {
  const paragraphs = parseControlParagraphs(copyright);
  const header = paragraphs[0]?.fields;
  const format = header?.get('format') ?? '';
  if (!header || !/copyright-format\/1\.0|dep-?5/i.test(format)) return { expression: NOASSERTION, extracted: [] };
  const extracted = new Map<string, SpdxExtractedLicense>();
  const terms = new Set<string>();
  for (const [i, p] of paragraphs.entries()) {
    const lic = p.fields.get('license');
    if (lic === undefined) continue;
    // Standalone License paragraphs (no Files) only carry texts for names used elsewhere.
    if (i > 0 && !p.fields.has('files')) continue;
    const first = lic.split('\n')[0]!.trim();
    if (first) terms.add(dep5Expression(first, extracted));
  }
  if (terms.size === 0) return { expression: NOASSERTION, extracted: [] };
  const sorted = [...terms].sort(byCodeUnit);
  const expression = sorted.length === 1 ? sorted[0]! : sorted.map((t) => (/\s(OR|AND)\s/.test(t) && !/^\(.*\)$/.test(t) ? `(${t})` : t)).join(' AND ');
  if (!isSpdxExpression(expression)) return { expression: NOASSERTION, extracted: [] };
  const used = new Set(licenseRefsIn(expression));
  return { expression, extracted: [...extracted.values()].filter((e) => used.has(e.licenseId)).sort((a, b) => byCodeUnit(a.licenseId, b.licenseId)) };
}
