/**
 * A pino destination that prints human-readable lines instead of JSON:
 * `HH:MM:SS.mmm LEVEL msg key=value…` (local time). For `--log-format pretty`.
 */

const LEVELS: Record<number, string> = { 10: "TRACE", 20: "DEBUG", 30: "INFO", 40: "WARN", 50: "ERROR", 60: "FATAL" };
/** Fields every line has, shown in the fixed part or not at all. */
const OMITTED = new Set(["time", "level", "msg", "pid", "hostname", "name"]);

/** Wraps `destination` so that each JSON log line written to it is reformatted. */
export function createPrettyStream(destination: NodeJS.WritableStream): { write(line: string): void } {
  return {
    write(line) {
      destination.write(prettyLine(line));
    },
  };
}

/** One pino JSON line as `HH:MM:SS.mmm LEVEL msg key=value…` (plus an indented stack for errors); other text unchanged. */
export function prettyLine(line: string): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(line) as Record<string, unknown>;
  } catch {
    return line;
  }
  const time = typeof record["time"] === "number" ? new Date(record["time"]) : new Date();
  const level = LEVELS[record["level"] as number] ?? String(record["level"]);
  const parts = [clock(time), level.padEnd(5), String(record["msg"] ?? "")];
  let stack = "";
  for (const [key, value] of Object.entries(record)) {
    if (OMITTED.has(key) || value === undefined) continue;
    if ((key === "err" || key === "error") && typeof value === "object" && value !== null) {
      const { stack: s, ...rest } = value as { stack?: unknown };
      if (typeof s === "string")
        stack = s
          .split("\n")
          .slice(1)
          .map((l) => `    ${l.trim()}\n`)
          .join("");
      parts.push(`${key}=${JSON.stringify(rest)}`);
      continue;
    }
    parts.push(`${key}=${formatValue(value)}`);
  }
  return `${parts.join(" ")}\n${stack}`;
}

function formatValue(value: unknown): string {
  if (typeof value === "string") return /^[^\s"=]+$/.test(value) ? value : JSON.stringify(value);
  if (typeof value === "object" && value !== null) return JSON.stringify(value);
  return String(value);
}

function clock(d: Date): string {
  const two = (n: number) => String(n).padStart(2, "0");
  return `${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}.${String(d.getMilliseconds()).padStart(3, "0")}`;
}
