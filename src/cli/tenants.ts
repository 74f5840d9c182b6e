import { parseArgs } from "node:util";
import { DEFAULT_DB } from "../config.js";
import type { Command } from "./command.js";
import { stateLabel, tenantJson } from "./describe-connection.js";
import { dbPath, openStoreOrExplain } from "./store-options.js";

/** `tokenbroker tenants`: every stored tenant with the connection that serves it. */
export const tenantsCommand: Command = {
  name: "tenants",
  summary: "list the stored tenants (organisations) and their connections",
  help: `Usage: tokenbroker tenants [options]

Lists every tenant (Xero organisation) in the database, one a line: tenant
id, state (active, or gone once Xero no longer lists it), name, connection
and that connection's state. A tenant reachable through two users' grants
is listed once per connection; GetToken uses the most recently authorised
active one. Prints no token or secret.

Options:
  --db PATH    SQLite database file [TOKENBROKER_DB] (default ./${DEFAULT_DB})
  --json       print a JSON array
  -h, --help   show this help
`,
  async run(args, io) {
    const { values } = parseArgs({ args, options: { db: { type: "string" }, json: { type: "boolean" } }, allowPositionals: false });
    const store = openStoreOrExplain(dbPath(values.db, io.env));
    try {
      const rows = (await store.listConnections()).flatMap((c) => c.tenants.map((t) => ({ c, t })));
      if (values.json) {
        const json = rows.map(({ c, t }) => ({
          ...tenantJson(t),
          connectionId: c.connectionId,
          connectionState: c.state,
          userName: c.userName ?? c.xeroUserId ?? null,
        }));
        io.out.write(`${JSON.stringify(json, null, 2)}\n`);
      } else if (rows.length === 0) {
        io.out.write("no tenants: run tokenbroker connect\n");
      } else {
        const table = [
          ["TENANT", "STATE", "NAME", "CONNECTION", "CONNECTION STATE", "USER"],
          ...rows.map(({ c, t }) => [t.tenantId, t.state, t.tenantName ?? "", c.connectionId, stateLabel(c.state), c.userName ?? c.xeroUserId ?? ""]),
        ];
        const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
        io.out.write(`${table.map((r) => r.map((cell, i) => cell.padEnd(widths[i]!)).join("  ").trimEnd()).join("\n")}\n`);
      }
      return 0;
    } finally {
      await store.close();
    }
  },
};
