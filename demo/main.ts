#!/usr/bin/env node
/**
 * `npm run demo [-- options]`: runs the demo (demo.ts). It lives beside the
 * package rather than in the `tokenbroker` CLI because it needs the fake Xero,
 * a private workspace package that is not published.
 */
import type { CommandIo } from "../src/cli/command.js";
import { ConfigError } from "../src/config.js";
import { demoCommand } from "./demo.js";

async function main(args: string[], io: CommandIo): Promise<number> {
  if (args.includes("-h") || args.includes("--help")) {
    io.out.write(demoCommand.help);
    return 0;
  }
  try {
    return await demoCommand.run(args, io);
  } catch (e) {
    const code = (e as { code?: unknown }).code;
    if (e instanceof ConfigError || (typeof code === "string" && code.startsWith("ERR_PARSE_ARGS"))) {
      io.err.write(`demo: ${(e as Error).message}; see npm run demo -- --help\n`);
      return 2;
    }
    throw e;
  }
}

const io: CommandIo = { out: process.stdout, err: process.stderr, in: process.stdin, env: process.env };
main(process.argv.slice(2), io).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`demo: unexpected error: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
