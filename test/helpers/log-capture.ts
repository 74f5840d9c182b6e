import { Writable } from "node:stream";
import { createLogger, type Logger } from "../../src/logger.js";
import type { RefreshEvent } from "../../src/broker/refresh-events.js";

/** A logger whose JSON lines are kept in memory, for asserting on what the broker logged. */
export interface LogCapture {
  logger: Logger;
  /** Every line logged so far, raw. */
  lines(): string[];
  /** Every line logged so far, parsed. */
  records(): Array<Record<string, unknown>>;
  /** The refresh events logged so far (`event: "refresh"`). */
  refreshEvents(): RefreshEvent[];
}

/** Starts capturing a logger's output at `level` (default info). */
export function captureLog(level = "info"): LogCapture {
  let text = "";
  const destination = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      text += chunk.toString();
      callback();
    },
  });
  const lines = () => text.split("\n").filter((l) => l !== "");
  const records = () => lines().map((l) => JSON.parse(l) as Record<string, unknown>);
  return {
    logger: createLogger({ level, destination }),
    lines,
    records,
    refreshEvents: () => records().filter((r) => r["event"] === "refresh") as unknown as RefreshEvent[],
  };
}
