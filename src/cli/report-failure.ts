import { ConfigError } from "../config.js";
import { DEBUG } from "../settings/server-settings.js";
import { readSetting } from "../settings/setting.js";
import type { Command, CommandIo } from "./command.js";

/**
 * Reports what made `command` fail, on standard error, and returns the exit
 * status: a ConfigError or a bad flag is one line and 2; anything else is
 * "unexpected error" and 1, with the stack when TOKENBROKER_DEBUG is on.
 */
export function reportFailure(command: Command, e: unknown, io: CommandIo): number {
  if (e instanceof ConfigError) {
    io.err.write(`tokenbroker ${command.name}: ${e.message}\n`);
    return 2;
  }
  const code = (e as { code?: unknown }).code;
  if (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS")) {
    io.err.write(`tokenbroker ${command.name}: ${(e as Error).message}; see tokenbroker ${command.name} --help\n`);
    return 2;
  }
  const what = e instanceof Error ? `${e.name}: ${e.message}` : String(e);
  io.err.write(`tokenbroker ${command.name}: unexpected error: ${what}\n`);
  if (readSetting(DEBUG, { flags: {}, env: io.env }) && e instanceof Error) io.err.write(`${e.stack}\n`);
  return 1;
}
