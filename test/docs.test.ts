/**
 * The docs hold together: every fenced block of README.md, CONTRIBUTING.md and
 * docs/*.md says what it is (a snippet some test runs, an output, or an
 * illustration: see test/helpers/doc-snippets.ts), every snippet is read by a
 * test, and every relative link points to a file of the repository, and to a
 * heading of it when it names one.
 */
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { describe, expect, it } from "vitest";
import { docBlocks, ROOT } from "./helpers/doc-snippets.js";

const PAGES = [
  "README.md",
  "CONTRIBUTING.md",
  ...readdirSync(join(ROOT, "docs"))
    .filter((f) => f.endsWith(".md"))
    .sort()
    .map((f) => `docs/${f}`),
];

/** Every docSnippet call with literal arguments in the tests, as `page#name`. */
function snippetsReadByTests(): Set<string> {
  const found = new Set<string>();
  const visit = (dir: string) => {
    for (const entry of readdirSync(dir)) {
      const path = join(dir, entry);
      if (statSync(path).isDirectory()) visit(path);
      else if (entry.endsWith(".ts")) {
        for (const m of readFileSync(path, "utf8").matchAll(/docSnippet\(\s*"([^"]+)",\s*"([^"]+)"\s*\)/g)) found.add(`${m[1]}#${m[2]}`);
      }
    }
  };
  visit(join(ROOT, "test"));
  return found;
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens; repeats get -1, -2, … */
function anchors(page: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  let inFence = false;
  for (const line of readFileSync(page, "utf8").split("\n")) {
    if (/^\s*(```|~~~)/.test(line)) inFence = !inFence;
    const h = inFence ? null : /^#{1,6}\s+(.*?)\s*#*$/.exec(line);
    if (!h) continue;
    const text = h[1]!.replace(/\[([^\]]*)\]\([^)]*\)/g, "$1");
    const slug = text
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, "")
      .replace(/\s/g, "-");
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n === 0 ? slug : `${slug}-${n}`);
  }
  return out;
}

/** The Markdown links of a page outside code (fenced blocks and inline code), with their lines. */
function links(page: string): Array<{ line: number; target: string }> {
  const out: Array<{ line: number; target: string }> = [];
  let inFence = false;
  readFileSync(join(ROOT, page), "utf8")
    .split("\n")
    .forEach((line, i) => {
      if (/^\s*(```|~~~)/.test(line)) inFence = !inFence;
      if (inFence) return;
      const prose = line.replace(/`[^`]*`/g, "");
      for (const m of prose.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) out.push({ line: i + 1, target: m[1]! });
      for (const m of prose.matchAll(/^\s*\[[^\]]+\]:\s*(\S+)/g)) out.push({ line: i + 1, target: m[1]! });
    });
  return out;
}

describe.each(PAGES)("%s", (page) => {
  it("marks every fenced block as a snippet, an output or an illustration", () => {
    const unmarked = docBlocks(page)
      .filter((b) => b.marker === undefined)
      .map((b) => `line ${b.line}: \`\`\`${b.lang} (above it: ${JSON.stringify(b.above)})`);
    expect(unmarked, "put <!-- snippet: NAME -->, <!-- output --> or <!-- illustration --> on the line above").toEqual([]);
  });

  it("has each snippet read by a test, once per name", () => {
    const read = snippetsReadByTests();
    const names = docBlocks(page).flatMap((b) => (b.marker?.kind === "snippet" ? [b.marker.name] : []));
    expect(
      names.filter((n, i) => names.indexOf(n) !== i),
      "snippet names repeated",
    ).toEqual([]);
    expect(
      names.filter((n) => !read.has(`${page}#${n}`)).map((n) => `${page}#${n}`),
      "snippets no test reads",
    ).toEqual([]);
  });

  it("links only to files and headings of the repository", () => {
    const broken: string[] = [];
    for (const { line, target } of links(page)) {
      if (/^https?:\/\//.test(target)) continue;
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) {
        broken.push(`line ${line}: ${target} (only https:// web links and paths in the repository)`);
        continue;
      }
      const [path, anchor] = target.split("#", 2) as [string, string | undefined];
      const file = path === "" ? join(ROOT, page) : resolve(dirname(join(ROOT, page)), decodeURIComponent(path));
      const inside = relative(ROOT, file);
      if (inside.startsWith(`..${sep}`) || inside === "..") broken.push(`line ${line}: ${target} leaves the repository`);
      else if (!existsSync(file)) broken.push(`line ${line}: ${target}: no such file`);
      else if (anchor !== undefined && (!file.endsWith(".md") || !anchors(file).has(anchor)))
        broken.push(`line ${line}: ${target}: no such heading`);
    }
    expect(broken).toEqual([]);
  });
});

it("every snippet a test reads exists", () => {
  const missing = [...snippetsReadByTests()].filter((key) => {
    const [page, name] = key.split("#") as [string, string];
    return !existsSync(join(ROOT, page)) || !docBlocks(page).some((b) => b.marker?.kind === "snippet" && b.marker.name === name);
  });
  expect(missing).toEqual([]);
});

it("the README is a front door: at most 250 lines", () => {
  expect(readFileSync(join(ROOT, "README.md"), "utf8").trimEnd().split("\n").length).toBeLessThanOrEqual(250);
});
