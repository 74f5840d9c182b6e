import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { ConfigError } from "../config.js";
import type { Command } from "./command.js";
import { dbPath, openStoreOrExplain } from "./store-options.js";
import { isPostgresUrl, postgresBackupAdvice } from "../store/store-location.js";
import { DB } from "../settings/server-settings.js";
import { settingsHelp } from "../settings/settings-help.js";

/** `tokenbroker backup <file>`: a consistent copy of the live database. */
export const backupCommand: Command = {
  name: "backup",
  summary: "copy the database consistently, also while serve runs",
  help: `Usage: tokenbroker backup [options] <file>

Writes a consistent copy of the database to <file> with SQLite's online
backup. Safe while \`tokenbroker serve\` runs on the database in other
processes: a refresh committed during the copy makes it start over, so the
copy holds every token set as it was at one moment. Prints the file and the
number of connections in it. To restore, stop the brokers and start
\`tokenbroker serve --db <file>\` (or copy <file> to the usual path).

A backup holds refresh tokens that the running broker will spend: Xero
accepts a spent refresh token only within 30 minutes of its use, so restore
the newest backup, and only after the broker that wrote the database stopped.

A PostgreSQL database (--db postgres://…) is not copied by this command:
use pg_dump, which makes a consistent copy while brokers run.

Options:
  --force      replace <file> if it exists
  -h, --help   show this help

${settingsHelp([DB])}
`,
  async run(args, io) {
    const { values, positionals } = parseArgs({
      args,
      options: { db: { type: "string" }, force: { type: "boolean" } },
      allowPositionals: true,
    });
    if (positionals.length !== 1) throw new ConfigError("name one backup file: tokenbroker backup <file>");
    const target = resolve(positionals[0]!);
    const source = dbPath(values.db, io.env);
    if (isPostgresUrl(source)) throw new ConfigError(`tokenbroker backup copies a SQLite file; ${postgresBackupAdvice(source)}`);
    if (!existsSync(source)) {
      throw new ConfigError(`no database at ${source}: name the one serve uses with --db or TOKENBROKER_DB`);
    }
    if (resolve(source) === target) throw new ConfigError("the backup file must not be the database itself");
    if (existsSync(target) && !values.force) throw new ConfigError(`${target} exists; add --force to replace it`);

    const store = await openStoreOrExplain(source);
    try {
      await store.backup(target);
    } catch (e) {
      throw new ConfigError(`cannot write the backup to ${target}: ${e instanceof Error ? e.message : String(e)}`);
    } finally {
      await store.close();
    }
    // Count what the copy holds, opening it as serve would: this also proves it is usable.
    const copy = await openStoreOrExplain(target);
    try {
      const connections = (await copy.connections.listConnections()).length;
      io.out.write(`${target}: ${connections} connection${connections === 1 ? "" : "s"}\n`);
    } finally {
      await copy.close();
    }
    return 0;
  },
};
