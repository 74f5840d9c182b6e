#!/usr/bin/env node
import { backupCommand } from "./backup.js";
import type { Command, CommandIo } from "./command.js";
import { importCommand } from "./import.js";
import { serveCommand } from "./serve.js";
import { connectCommand } from "./connect.js";
import { connectionsCommand } from "./connections.js";
import { customCommand } from "./custom.js";
import { tenantsCommand } from "./tenants.js";
import { disconnectCommand } from "./disconnect.js";
import { revokeCommand } from "./revoke.js";
import { auditCommand } from "./audit.js";
import { keygenCommand } from "./keygen.js";
import { keysCommand } from "./keys.js";
import { migrateCommand } from "./migrate.js";
import { rotateKeyCommand } from "./rotate-key.js";
import { reportFailure } from "./report-failure.js";
import { DEBUG } from "../settings/server-settings.js";
import { settingsHelp } from "../settings/settings-help.js";
import { DOCS_PAGE } from "../settings/settings-docs.js";

const commands: Command[] = [
  serveCommand,
  importCommand,
  connectCommand,
  connectionsCommand,
  customCommand,
  tenantsCommand,
  disconnectCommand,
  revokeCommand,
  backupCommand,
  migrateCommand,
  keysCommand,
  keygenCommand,
  rotateKeyCommand,
  auditCommand,
];

const usage = `Usage: tokenbroker <command> [options]

Keeps Xero OAuth2 access tokens fresh for many channels at once: one refresh
per expiry, served over gRPC, gRPC-Web and Connect on one port.

Commands:
${commands.map((c) => `  ${c.name.padEnd(12)} ${c.summary}`).join("\n")}

Run \`tokenbroker <command> --help\` for a command's options and settings
(every setting: ${DOCS_PAGE}).

${settingsHelp([DEBUG])}
`;

/** Runs the CLI with `argv` (without node and script); resolves with the exit code. */
export async function main(argv: string[], io: CommandIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "help" || name === "-h" || name === "--help") {
    io.out.write(usage);
    return name === undefined ? 2 : 0;
  }
  const command = commands.find((c) => c.name === name);
  if (!command) {
    io.err.write(`tokenbroker: unknown command ${JSON.stringify(name)}\n\n${usage}`);
    return 2;
  }
  if (rest.includes("-h") || rest.includes("--help")) {
    io.out.write(command.help);
    return 0;
  }
  try {
    return await command.run(rest, io);
  } catch (e) {
    return reportFailure(command, e, io);
  }
}

const io: CommandIo = { out: process.stdout, err: process.stderr, in: process.stdin, env: process.env };
main(process.argv.slice(2), io).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`tokenbroker: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
