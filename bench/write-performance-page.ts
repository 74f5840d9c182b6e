/**
 * Writes docs/performance.md from docs/performance.json. `npm run bench`
 * calls {@link writePerformanceDocs} after a full run; run alone
 * (`npm run docs:performance`) it regenerates the page from the committed
 * JSON, e.g. after a change to bench/performance-page.ts.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { performancePage } from "./performance-page.js";
import type { BenchReport } from "./report.js";

/** docs/ of the repository, from dist/bench/ where this runs compiled. */
const DOCS = new URL("../../docs/", import.meta.url);

/** Writes the report as docs/performance.json and the page made from it; returns both paths. */
export function writePerformanceDocs(report: BenchReport): [string, string] {
  const json = fileURLToPath(new URL("performance.json", DOCS));
  const page = fileURLToPath(new URL("performance.md", DOCS));
  writeFileSync(json, `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(page, performancePage(report));
  return [json, page];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const json = fileURLToPath(new URL("performance.json", DOCS));
  const page = fileURLToPath(new URL("performance.md", DOCS));
  writeFileSync(page, performancePage(JSON.parse(readFileSync(json, "utf8")) as BenchReport));
  process.stderr.write(`written to ${page}\n`);
}
