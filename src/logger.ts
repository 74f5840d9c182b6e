import { pino, type Logger } from "pino";
import { createPrettyStream } from "./pretty-log-stream.js";

export type { Logger } from "pino";

/** Options for {@link createLogger}. */
export interface LoggerOptions {
  /** pino level: "debug", "info" (default), "warn", "error", "silent". */
  level?: string;
  /** Where log lines go (default standard error, so standard output stays for command results). */
  destination?: NodeJS.WritableStream;
  /** `json` (default): one JSON object a line; `pretty`: `HH:MM:SS.mmm LEVEL msg key=value…` for people. */
  format?: LogFormat;
}

/** How log lines are written. */
export type LogFormat = "json" | "pretty";

/**
 * A structured (JSON) logger. Fields that could hold a secret are redacted as
 * a second line of defence; the code never logs tokens in the first place.
 */
export function createLogger(options: LoggerOptions = {}): Logger {
  return pino(
    {
      name: "tokenbroker",
      level: options.level ?? "info",
      base: { pid: process.pid },
      redact: {
        paths: [
          "accessToken",
          "refreshToken",
          "idToken",
          "clientSecret",
          "access_token",
          "refresh_token",
          "id_token",
          "client_secret",
          "authorization",
          "*.accessToken",
          "*.refreshToken",
          "*.clientSecret",
          "*.authorization",
        ],
        censor: "[redacted]",
      },
    },
    options.format === "pretty"
      ? createPrettyStream(options.destination ?? process.stderr)
      : ((options.destination ?? process.stderr) as pino.DestinationStream),
  );
}

/** A logger that drops everything (tests and library use). */
export const silentLogger: Logger = pino({ level: "silent" });

/** A safe summary of an unexpected error for the log: name, message and stack, never a response body. */
export function errorFields(e: unknown): Record<string, unknown> {
  // Under "error", not "err": pino's err serializer would replace the type with "Object".
  if (e instanceof Error) return { error: { type: e.name, message: e.message, stack: e.stack } };
  return { error: { type: typeof e } };
}
