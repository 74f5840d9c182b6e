import { parseArgs } from "node:util";
import { ConfigError } from "../config.js";
import { MigrationRefusedError, migrateStore, type MigrationReport } from "../store/migrate-store.js";
import { describeLocation, withoutPassword } from "../store/store-location.js";
import type { Command } from "./command.js";
import { recordCliAction } from "./security-options.js";
import { openStoreOrExplain } from "./store-options.js";

/** `tokenbroker migrate --from <file> --to <url>`: move a SQLite store to PostgreSQL. */
export const migrateCommand: Command = {
  name: "migrate",
  summary: "copy a SQLite database into PostgreSQL (with the brokers stopped)",
  help: `Usage: tokenbroker migrate --from FILE --to URL [options]

Copies everything the SQLite database FILE holds into the PostgreSQL
database URL (postgres://… or postgresql://…; its tables are created if
missing): connections and tenants, token sets, consents under way, API keys
and the audit log. Token sets are copied sealed, as stored: no key is
needed, and the brokers on PostgreSQL need the key the SQLite broker had.
Refresh leases are not copied: no broker holds them once it is stopped.
Prints the rows copied per table.

Stop every broker that uses FILE first: migrate holds FILE exclusively for
the whole copy and refuses while another process has it open. It refuses a
destination that a broker is connected to, and one that holds data, unless
--force. The copy is one transaction: if it fails, the destination is left
as it was; run it again.

Then start the brokers with --db URL (or TOKENBROKER_DB=URL) and the same
encryption key, and never start one on FILE again: the brokers on
PostgreSQL spend the refresh tokens it holds.

The URL's password is never shown; rather than put it on the command line,
which other users can read, give it in PGPASSWORD or ~/.pgpass.

Options:
  --from FILE  the SQLite database to copy (what serve's --db named)
  --to URL     the PostgreSQL database to copy into
  --force      replace everything the destination holds, in the same
               transaction as the copy
  -h, --help   show this help
`,
  async run(args, io) {
    const { values } = parseArgs({
      args,
      options: { from: { type: "string" }, to: { type: "string" }, force: { type: "boolean" } },
      allowPositionals: false,
    });
    const { from, to } = values;
    if (from === undefined || to === undefined) {
      throw new ConfigError("name the SQLite file and the PostgreSQL database: tokenbroker migrate --from FILE --to postgres://…");
    }
    let report: MigrationReport;
    try {
      report = await migrateStore({ from, to, force: values.force ?? false });
    } catch (e) {
      const why = withoutPassword(e instanceof Error ? e.message : String(e), to);
      if (e instanceof MigrationRefusedError) throw new ConfigError(why);
      throw new ConfigError(`nothing was copied: ${why}`);
    }
    io.out.write(reportText(report, from, describeLocation(to)));
    const store = await openStoreOrExplain(to);
    try {
      const rows = report.tables.reduce((sum, t) => sum + t.rows, 0);
      await recordCliAction(store, { action: "migrate", detail: `from=${from} rows=${rows} replaced=${report.replaced}` });
    } finally {
      await store.close();
    }
    return 0;
  },
};

function reportText(report: MigrationReport, from: string, to: string): string {
  const width = Math.max(...report.tables.map((t) => t.table.length), "refresh_leases".length);
  const lines = [`copied ${from} into ${to}:`];
  for (const t of report.tables) lines.push(`  ${t.table.padEnd(width)}  ${t.rows}`);
  const leases = report.leasesLeftBehind;
  lines.push(`  ${"refresh_leases".padEnd(width)}  0${leases > 0 ? ` (${leases} left behind: their holders are gone)` : ""}`);
  if (report.replaced > 0) lines.push(`replaced the ${report.replaced} rows the destination held (--force)`);
  return `${lines.join("\n")}\n`;
}
