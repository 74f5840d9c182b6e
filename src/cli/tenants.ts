import { DB } from "../settings/server-settings.js";
import { settingsHelp } from "../settings/settings-help.js";
import type { Command } from "./command.js";
import { lastCheckedText, stateLabel, tenantJson } from "./describe-connection.js";
import { listStored } from "./list-stored.js";
import { terminalJson, terminalSafe } from "./terminal-text.js";

/** `tokenbroker tenants`: every stored tenant with the connection that serves it. */
export const tenantsCommand: Command = {
  name: "tenants",
  summary: "list the stored tenants (organisations) and their connections",
  help: `Usage: tokenbroker tenants [options]

Lists every tenant (Xero organisation) in the database, one a line: tenant
id, state (active, or removed-at-xero once Xero no longer lists it for the
grant), name, connection, that connection's state and user, and when Xero's
connections list last listed the tenant (a running broker re-reads each
connection's organisations every TOKENBROKER_TENANT_CHECK_INTERVAL_SECONDS;
for a removed one: when that was noticed). A tenant reachable through two users' grants
is listed once per connection; GetToken uses the most recently authorised
active one. Prints no token or secret.

Options:
  --json       print a JSON array
  -h, --help   show this help

${settingsHelp([DB])}
`,
  run: (args, io) =>
    listStored(args, io, (connections, json) => {
      const rows = connections.flatMap((c) => c.tenants.map((t) => ({ c, t })));
      if (json) {
        const entries = rows.map(({ c, t }) => ({
          ...tenantJson(t),
          connectionId: c.connectionId,
          connectionState: c.state,
          userName: c.userName ?? c.xeroUserId ?? null,
        }));
        return terminalJson(entries);
      }
      if (rows.length === 0) return "no tenants: run tokenbroker connect";
      const table = [
        ["TENANT", "STATE", "NAME", "CONNECTION", "CONNECTION STATE", "USER", "LAST CHECKED"],
        ...rows.map(({ c, t }) =>
          [
            t.tenantId,
            t.state === "gone" ? "removed-at-xero" : t.state,
            t.tenantName ?? "",
            c.connectionId,
            stateLabel(c.state),
            c.userName ?? c.xeroUserId ?? "",
            lastCheckedText(t),
          ].map(terminalSafe),
        ),
      ];
      const widths = table[0]!.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
      return table
        .map((r) =>
          r
            .map((cell, i) => cell.padEnd(widths[i]!))
            .join("  ")
            .trimEnd(),
        )
        .join("\n");
    }),
};
