/**
 * docs/performance.md is what bench/performance-page.ts makes from the
 * committed results, docs/performance.json: regenerate it with
 * `npm run docs:performance` (or a full `npm run bench`, which writes both).
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { expect, it } from "vitest";
import { performancePage } from "../bench/performance-page.js";
import type { BenchReport } from "../bench/report.js";
import { ROOT } from "./helpers/doc-snippets.js";

it("docs/performance.md is generated from docs/performance.json", () => {
  const report = JSON.parse(readFileSync(join(ROOT, "docs", "performance.json"), "utf8")) as BenchReport;
  const page = readFileSync(join(ROOT, "docs", "performance.md"), "utf8");
  expect(page === performancePage(report), "docs/performance.md is stale: run `npm run docs:performance`").toBe(true);
});

it("the page shows the run's tables and every target", () => {
  const report = JSON.parse(readFileSync(join(ROOT, "docs", "performance.json"), "utf8")) as BenchReport;
  const page = performancePage(report);
  expect(report.quick, "a --quick run's figures mean nothing: the page comes from a full run").toBe(false);
  for (const t of report.targets) expect(page).toContain(t.measured);
});
