import { parseArgs } from "node:util";
import { DEFAULT_DB } from "../config.js";
import type { Command } from "./command.js";
import { connectionJson, describeConnection } from "./describe-connection.js";
import { dbPath, openStoreOrExplain } from "./store-options.js";

/** `tokenbroker connections`: what is stored, never a secret. */
export const connectionsCommand: Command = {
  name: "connections",
  summary: "list the stored connections (state, expiry, last refresh, last error)",
  help: `Usage: tokenbroker connections [options]

Lists every connection (one Xero user's grant) in the database: its state
(active or needs-re-authorisation), user, access-token expiry, refresh-token
age, last refresh, last error and tenants. Prints no token or secret.

Options:
  --db PATH    SQLite database file [TOKENBROKER_DB] (default ./${DEFAULT_DB})
  --json       print a JSON array
  -h, --help   show this help
`,
  async run(args, io) {
    const { values } = parseArgs({ args, options: { db: { type: "string" }, json: { type: "boolean" } }, allowPositionals: false });
    const store = openStoreOrExplain(dbPath(values.db, io.env));
    try {
      const connections = await store.listConnections();
      if (values.json) {
        io.out.write(`${JSON.stringify(connections.map(connectionJson), null, 2)}\n`);
      } else if (connections.length === 0) {
        io.out.write("no connections: run tokenbroker connect\n");
      } else {
        const now = Date.now();
        io.out.write(`${connections.map((c) => describeConnection(c, now)).join("\n\n")}\n`);
      }
      return 0;
    } finally {
      await store.close();
    }
  },
};
