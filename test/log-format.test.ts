import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { createLogger, errorFields } from "../src/logger.js";
import { prettyLine } from "../src/pretty-log-stream.js";

/** A logger in `format`, and the text it wrote. */
function capture(format: "json" | "pretty") {
  let text = "";
  const destination = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      text += chunk.toString();
      callback();
    },
  });
  return { logger: createLogger({ format, destination }), text: () => text };
}

const PREFIX = /^\d{2}:\d{2}:\d{2}\.\d{3} (TRACE|DEBUG|INFO |WARN |ERROR|FATAL) /;

describe("--log-format pretty", () => {
  it("writes HH:MM:SS.mmm LEVEL msg key=value… lines, one per record", () => {
    const { logger, text } = capture("pretty");
    logger.info({ event: "refresh", connectionId: "c-1", cause: "caller", outcome: "ok", durationMs: 112, version: 8 }, "refresh ok");
    logger.warn(
      { event: "notification", type: "connection.needs_reauthorization", note: "two words" },
      "connection c-1 needs re-authorisation",
    );
    const lines = text()
      .split("\n")
      .filter((l) => l !== "");
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatch(PREFIX);
    expect(lines[0]!.replace(/^\S+ /, "")).toBe(
      "INFO  refresh ok event=refresh connectionId=c-1 cause=caller outcome=ok durationMs=112 version=8",
    );
    expect(lines[1]!.replace(/^\S+ /, "")).toBe(
      'WARN  connection c-1 needs re-authorisation event=notification type=connection.needs_reauthorization note="two words"',
    );
    // The time is the record's, in local time.
    const now = new Date();
    expect(Math.abs(Number(lines[0]!.slice(0, 2)) - now.getHours()) % 23).toBeLessThanOrEqual(1);
  });

  it("still redacts secret fields, and prints an error's stack indented under its line", () => {
    const { logger, text } = capture("pretty");
    logger.info({ accessToken: "eyJhbGciOiJSUzI1NiJ9.secret-part", nested: { refreshToken: "rt-secret-value" } }, "oops");
    const e = new Error("boom");
    logger.error(errorFields(e), "internal error");
    const out = text();
    expect(out).not.toContain("secret-part");
    expect(out).not.toContain("rt-secret-value");
    expect(out).toContain("accessToken=[redacted]");
    const lines = out.split("\n").filter((l) => l !== "");
    const errLine = lines.findIndex((l) => l.includes("internal error"));
    expect(lines[errLine]).toMatch(/ERROR internal error error=\{"type":"Error","message":"boom"\}$/);
    expect(lines[errLine + 1]).toMatch(/^ {4}at /);
  });

  it("json stays the default: one JSON object a line", () => {
    const { logger, text } = capture("json");
    logger.info({ event: "refresh", outcome: "ok" }, "refresh ok");
    const record = JSON.parse(text().trim()) as Record<string, unknown>;
    expect(record).toMatchObject({ level: 30, event: "refresh", outcome: "ok", msg: "refresh ok" });
    expect(prettyLine("not json\n")).toBe("not json\n");
  });
});
