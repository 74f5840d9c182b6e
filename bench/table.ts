/** A cell: text is left-aligned, numbers right-aligned. */
export type Cell = string | number;

/** Renders rows as a plain-text table with a header rule, columns padded to fit. */
export function formatTable(headers: string[], rows: Cell[][]): string {
  const text = rows.map((r) => r.map(show));
  const widths = headers.map((h, i) => Math.max(h.length, ...text.map((r) => (r[i] ?? "").length)));
  const numeric = headers.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === "number"));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join("  ")
      .trimEnd();
  return [line(headers), widths.map((w) => "-".repeat(w)).join("  "), ...text.map(line)].join("\n");
}

function show(c: Cell): string {
  if (typeof c === "string") return c;
  if (!Number.isFinite(c)) return String(c);
  return Number.isInteger(c) ? c.toLocaleString("en") : String(c);
}
