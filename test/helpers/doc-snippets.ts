/**
 * The code blocks of the docs (README.md, CONTRIBUTING.md, docs/*.md), as
 * tests read them. Each fenced block is preceded, on the line just above its
 * fence, by one marker saying what it is:
 *
 * - `<!-- snippet: NAME -->`: a test reads it with {@link docSnippet} and runs
 *   it (or compares it with the file it copies); test/docs.test.ts checks that
 *   some test names it.
 * - `<!-- output -->`: what a command prints, or a sample of what a server
 *   sends; shown, not run.
 * - `<!-- illustration -->`: a sketch no test runs (deployment paths, a
 *   third-party SDK, a command that takes minutes).
 */
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";

/** The repository root. */
export const ROOT = resolve(import.meta.dirname, "..", "..");

/** What the comment above a fenced block says it is. */
export type BlockMarker = { kind: "snippet"; name: string } | { kind: "output" } | { kind: "illustration" };

/** One fenced code block of a page. */
export interface DocBlock {
  /** 1-based line of the opening fence. */
  line: number;
  /** The fence's info string (`sh`, `ts`, …; "" for none). */
  lang: string;
  /** The marker on the line above, if it is one. */
  marker: BlockMarker | undefined;
  /** The line above the fence, as written. */
  above: string;
  /** The block's text, each line ending with a newline. */
  code: string;
}

const MARKER = /^<!-- (?:snippet: ([a-z0-9][a-z0-9-]*)|(output)|(illustration)) -->$/;

/** Every fenced block of `page` (a path from the repository root), in order. */
export function docBlocks(page: string): DocBlock[] {
  const lines = readFileSync(join(ROOT, page), "utf8").split("\n");
  const blocks: DocBlock[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const fence = open[2]!;
    let end = i + 1;
    while (end < lines.length && !lines[end]!.trim().startsWith(fence)) end++;
    const above = i > 0 ? lines[i - 1]!.trim() : "";
    const m = MARKER.exec(above);
    const marker: BlockMarker | undefined = m?.[1]
      ? { kind: "snippet", name: m[1] }
      : m?.[2]
        ? { kind: "output" }
        : m?.[3]
          ? { kind: "illustration" }
          : undefined;
    const body = lines.slice(i + 1, end);
    blocks.push({ line: i + 1, lang: open[3]!.trim(), marker, above, code: body.map((l) => `${l}\n`).join("") });
    i = end;
  }
  return blocks;
}

/** The text of the block marked `<!-- snippet: name -->` in `page`; throws when there is none. */
export function docSnippet(page: string, name: string): string {
  const found = docBlocks(page).filter((b) => b.marker?.kind === "snippet" && b.marker.name === name);
  if (found.length !== 1) throw new Error(`${page} has ${found.length} blocks marked "snippet: ${name}"`);
  return found[0]!.code;
}

/**
 * The commands of a shell snippet: comment lines dropped, trailing comments
 * cut, lines ending in `\` joined with the next.
 */
export function shellCommands(code: string): string[] {
  const commands: string[] = [];
  let pending = "";
  for (const raw of code.split("\n")) {
    const line = raw.replace(/\s+#\s.*$/, "");
    if (pending === "" && (line.trim() === "" || line.trimStart().startsWith("#"))) continue;
    if (line.endsWith("\\")) {
      pending += `${line.slice(0, -1).trimEnd()} `;
      continue;
    }
    commands.push((pending + line.trim()).trim());
    pending = "";
  }
  return commands;
}
