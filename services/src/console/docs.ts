/**
 * The console's offline install docs: docs/install/*.md (copied into the image at build time,
 * services/build.ts) rendered to HTML with marked when first asked for, then kept in memory.
 * Links between the install pages point at their rendered pages; a link to a page outside
 * docs/install (not in the offline copy) keeps its text and says where the page lives.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { Marked, type Tokens } from 'marked';

export interface DocPage {
  readonly name: string;
  readonly title: string;
  readonly html: string;
}

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** `section-title` ids, as GitHub makes them, so in-page links (#…) work offline too. */
export function slug(text: string): string {
  return text
    .toLowerCase()
    .replace(/<[^>]+>/g, '')
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .trim()
    .replace(/ /g, '-');
}

export class InstallDocs {
  private readonly cache = new Map<string, DocPage>();
  private pagesList: string[] | undefined;
  private readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  /** The page names (file names without .md), sorted; overview first. */
  async pages(): Promise<string[]> {
    if (!this.pagesList) {
      const files = await readdir(this.dir).catch(() => [] as string[]);
      const names = files.filter((f) => f.endsWith('.md')).map((f) => f.slice(0, -3));
      this.pagesList = names.sort((a, b) => (a === 'overview' ? -1 : b === 'overview' ? 1 : a.localeCompare(b)));
    }
    return this.pagesList;
  }

  /** The rendered page, or undefined when there is no such install doc. */
  async page(name: string): Promise<DocPage | undefined> {
    const hit = this.cache.get(name);
    if (hit) return hit;
    if (!(await this.pages()).includes(name)) return undefined;
    const md = await readFile(join(this.dir, `${name}.md`), 'utf8');
    const page = this.render(name, md, await this.pages());
    this.cache.set(name, page);
    return page;
  }

  private render(name: string, source: string, pages: readonly string[]): DocPage {
    // The "Imposed rule" line is for the repository's authors, not for a reader of the install docs.
    const md = source.replace(/^Imposed rule:.*\n+/, '');
    const title = /^# (.+)$/m.exec(md)?.[1]?.trim() ?? name;
    const marked = new Marked({
      gfm: true,
      renderer: {
        heading(this: { parser: { parseInline(t: Tokens.Generic[]): string } }, t: Tokens.Heading) {
          const inner = this.parser.parseInline(t.tokens);
          return `<h${t.depth} id="${escapeHtml(slug(t.text))}">${inner}</h${t.depth}>\n`;
        },
        link(this: { parser: { parseInline(t: Tokens.Generic[]): string } }, t: Tokens.Link) {
          const text = this.parser.parseInline(t.tokens);
          const href = t.href;
          if (/^[a-z][a-z0-9+.-]*:/i.test(href) || href.startsWith('#')) return `<a href="${escapeHtml(href)}">${text}</a>`;
          const [path, hash] = href.split('#', 2) as [string, string | undefined];
          const target = posix.normalize(posix.join('docs/install', path));
          const m = /^docs\/install\/([A-Za-z0-9._-]+)\.md$/.exec(target);
          if (m && pages.includes(m[1]!)) return `<a href="/docs/install/${m[1]}.html${hash ? `#${escapeHtml(hash)}` : ''}">${text}</a>`;
          if (!path) return `<a href="#${escapeHtml(hash ?? '')}">${text}</a>`;
          return `${text} <span class="muted">(not in the offline copy: <code>${escapeHtml(target)}</code> in the StellaOps repository)</span>`;
        },
      },
    });
    const body = marked.parse(md, { async: false }) as string;
    const nav = pages.map((p) => `<li><a href="/docs/install/${p}.html"${p === name ? ' aria-current="page"' : ''}>${escapeHtml(p)}</a></li>`).join('');
    const html = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>${escapeHtml(title)} — StellaOps install docs (offline copy)</title>
  <link rel="stylesheet" href="/ui/console.css">
</head>
<body class="docs">
  <header>
    <h1><a href="/">StellaOps</a></h1>
    <span class="muted">Install docs — offline copy served by this console</span>
  </header>
  <div class="docs-layout">
    <nav aria-label="Install docs"><ul>${nav}</ul><p><a href="/">Back to the console</a></p></nav>
    <main id="doc">
${body}
    </main>
  </div>
</body>
</html>
`;
    return { name, title, html };
  }
}
