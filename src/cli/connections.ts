import { DB } from "../settings/server-settings.js";
import { settingsHelp } from "../settings/settings-help.js";
import type { Command } from "./command.js";
import { connectionJson, describeConnection } from "./describe-connection.js";
import { listStored } from "./list-stored.js";
import { terminalJson } from "./terminal-text.js";

/** `tokenbroker connections`: what is stored, never a secret. */
export const connectionsCommand: Command = {
  name: "connections",
  summary: "list the stored connections (state, expiry, last refresh, last error)",
  help: `Usage: tokenbroker connections [options]

Lists every connection (one Xero user's grant) in the database: its state
(active or needs-re-authorisation), user, access-token expiry, refresh-token
age, last refresh, last error and tenants. Prints no token or secret.

Options:
  --json       print a JSON array
  -h, --help   show this help

${settingsHelp([DB])}
`,
  run: (args, io) =>
    listStored(args, io, (connections, json) => {
      if (json) return terminalJson(connections.map(connectionJson));
      if (connections.length === 0) return "no connections: run tokenbroker connect";
      const now = Date.now();
      return connections.map((c) => describeConnection(c, now)).join("\n\n");
    }),
};
