import { statSync } from "node:fs";
import Database from "better-sqlite3";
import {
  COPIED_TABLES,
  columnMismatch,
  KNOWN_SCHEMAS,
  LEFT_BEHIND,
  QUOTA_TABLES,
  postgresColumns,
  sqliteColumns,
  type CopiedTable,
} from "./copied-tables.js";
import { migrations } from "./migrations.js";
import { BROKER_APPLICATION_NAME, PostgresDatabase, type Queryable } from "./postgres-database.js";
import { postgresMigrations } from "./postgres-migrations.js";
import { SqliteDatabase } from "./sqlite-database.js";
import { describeLocation, isPostgresUrl, withoutPassword } from "./store-location.js";

/** Options for {@link migrateStore}. */
export interface MigrateStoreOptions {
  /** The SQLite database file to copy; it must exist. */
  from: string;
  /** The PostgreSQL database to copy into: a `postgres://` or `postgresql://` URL. Its tables are created if missing. */
  to: string;
  /** Replace what the destination holds (deleted in the copy's transaction) instead of refusing. */
  force?: boolean;
  /** How long to wait for another process to let go of the SQLite file, ms (default 1000): a broker never does. */
  busyTimeoutMs?: number;
}

/** What {@link migrateStore} copied. */
export interface MigrationReport {
  /** Rows copied, per table, in the order copied. */
  tables: Array<{ table: string; rows: number }>;
  /** Refresh leases in the source, not copied (their holders are gone: see `LEFT_BEHIND`). */
  leasesLeftBehind: number;
  /** Rows the destination held and `force` replaced (0 when it was empty). */
  replaced: number;
}

/**
 * `tokenbroker migrate` refused to start, and changed nothing: the source is
 * in use, the destination holds data or is in use, or a location is not of
 * the right kind. Its message says what to do and holds no password.
 */
export class MigrationRefusedError extends Error {
  override readonly name = "MigrationRefusedError";
}

/** How a migration's sessions are named in `pg_stat_activity`: not a broker's. */
const MIGRATE_APPLICATION_NAME = "tokenbroker migrate";

/** Values sent in one INSERT (PostgreSQL takes at most 65,535 parameters). */
const VALUES_PER_INSERT = 5000;

/**
 * Copies everything a SQLite store holds into a PostgreSQL database:
 * connections and tenants, token sets (their sealed columns as stored, never
 * opened: no key is needed, and the brokers on PostgreSQL need the same key),
 * consents under way, API keys (their hashes) and the audit log (its ids
 * kept). Refresh leases stay behind (`LEFT_BEHIND`).
 *
 * - The SQLite file is held exclusively for the whole copy (SQLite's
 *   exclusive locking mode): while a broker (or any process) has it open,
 *   this refuses; while it copies, no broker can open it.
 * - The destination is written in one transaction, with its tables locked:
 *   all or nothing, so a failed copy leaves it as it was and can be run
 *   again from the start. Its tables are created (or migrated) first.
 * - It refuses a destination that a broker is connected to (a session named
 *   `tokenbroker` in `pg_stat_activity`), and one that holds data unless
 *   `force` (which replaces it, in the same transaction).
 * - Both schemas must be the ones this version maps (`KNOWN_SCHEMAS`) and
 *   each table's columns must line up; the rows counted in the destination
 *   must be the rows read, or nothing is committed.
 *
 * Errors hold no password of the URL.
 */
export async function migrateStore(options: MigrateStoreOptions): Promise<MigrationReport> {
  const { from, to } = options;
  if (isPostgresUrl(from)) throw new MigrationRefusedError(`copy from a SQLite file: ${describeLocation(from)} is a PostgreSQL URL`);
  if (!isPostgresUrl(to)) throw new MigrationRefusedError("copy to a PostgreSQL database: --to takes a postgres:// or postgresql:// URL");
  if (!isFile(from)) throw new MigrationRefusedError(`no SQLite database at ${from}`);
  checkKnownSchemas();
  const source = openSource(from, options.busyTimeoutMs ?? 1000);
  try {
    const target = await PostgresDatabase.open({ url: to, applicationName: MIGRATE_APPLICATION_NAME });
    try {
      return await target.transaction((client) => copy(source.db, client, to, options.force ?? false));
    } finally {
      await target.close();
    }
  } catch (e) {
    if (e instanceof Error && !(e instanceof MigrationRefusedError)) e.message = withoutPassword(e.message, to);
    throw e;
  } finally {
    source.close();
  }
}

function checkKnownSchemas(): void {
  if (migrations.length !== KNOWN_SCHEMAS.sqlite || postgresMigrations.length !== KNOWN_SCHEMAS.postgres) {
    throw new Error(
      `this build's schemas (SQLite ${migrations.length}, PostgreSQL ${postgresMigrations.length}) are not the ones ` +
        `migrate maps (SQLite ${KNOWN_SCHEMAS.sqlite}, PostgreSQL ${KNOWN_SCHEMAS.postgres}): see src/store/copied-tables.ts`,
    );
  }
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/**
 * The source, held exclusively, and brought up to this version's schema as
 * any command would; a SQLite file that tokenbroker never opened (schema
 * version 0) is refused before anything is written to it.
 */
function openSource(path: string, busyTimeoutMs: number): SqliteDatabase {
  const peek = new Database(path, { readonly: true, fileMustExist: true });
  try {
    peek.pragma(`busy_timeout = ${busyTimeoutMs}`);
    if (peek.pragma("user_version", { simple: true }) === 0) {
      throw new MigrationRefusedError(`${path} is not a tokenbroker database (its schema version is 0)`);
    }
  } finally {
    peek.close();
  }
  try {
    return new SqliteDatabase({ path, exclusive: true, busyTimeoutMs });
  } catch (e) {
    if ((e as { code?: unknown }).code !== "SQLITE_BUSY") throw e;
    throw new MigrationRefusedError(
      `${path} is open in another process (a broker serving it, or another command): stop every broker that uses it, then run migrate again`,
    );
  }
}

async function copy(source: Database.Database, client: Queryable, to: string, force: boolean): Promise<MigrationReport> {
  const all = [...COPIED_TABLES.map((t) => t.name), LEFT_BEHIND, ...QUOTA_TABLES];
  const unknown = (
    source.prepare(`SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'`).pluck().all() as string[]
  ).filter((t) => !all.includes(t));
  if (unknown.length > 0) throw new Error(`the SQLite database has tables migrate does not know: ${unknown.join(", ")}`);
  const brokers = await client.query<{ n: number }>(
    `SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`,
    [BROKER_APPLICATION_NAME],
  );
  if (brokers.rows[0]!.n > 0) {
    throw new MigrationRefusedError(
      `${describeLocation(to)} is in use by a broker or command (${brokers.rows[0]!.n} session${brokers.rows[0]!.n === 1 ? "" : "s"}): ` +
        "stop them, then run migrate again",
    );
  }
  // No broker may read or write the tables until the copy is committed (or rolled back).
  await client.query(`LOCK TABLE ${all.join(", ")} IN ACCESS EXCLUSIVE MODE`);
  const held = await countRows(client, all);
  const replaced = held.reduce((sum, h) => sum + h.rows, 0);
  if (replaced > 0) {
    if (!force) {
      const what = held.filter((h) => h.rows > 0).map((h) => `${h.table} ${h.rows}`);
      throw new MigrationRefusedError(
        `${describeLocation(to)} already holds data (${what.join(", ")}): migrate copies into an empty database; ` +
          "add --force to replace everything it holds",
      );
    }
    await client.query(`TRUNCATE ${all.join(", ")} RESTART IDENTITY`);
  }
  const tables: MigrationReport["tables"] = [];
  for (const table of COPIED_TABLES) tables.push({ table: table.name, rows: await copyTable(source, client, table) });
  const copied = await countRows(
    client,
    COPIED_TABLES.map((t) => t.name),
  );
  for (const [i, t] of tables.entries()) {
    const inSource = (source.prepare(`SELECT count(*) FROM ${t.table}`).pluck().get() as number) ?? 0;
    if (copied[i]!.rows !== t.rows || inSource !== t.rows) {
      throw new Error(`${t.table}: ${inSource} rows in the source, ${t.rows} copied, ${copied[i]!.rows} in the destination`);
    }
  }
  const leasesLeftBehind = source.prepare(`SELECT count(*) FROM ${LEFT_BEHIND}`).pluck().get() as number;
  return { tables, leasesLeftBehind, replaced };
}

/** Copies one table's rows, a page of the source at a time in rowid order; returns how many. */
async function copyTable(source: Database.Database, client: Queryable, table: CopiedTable): Promise<number> {
  const columns = sqliteColumns(source, table.name);
  const mismatch = columnMismatch(table.name, columns, await postgresColumns(client, table.name));
  if (mismatch) throw new Error(`the SQLite and PostgreSQL schemas do not line up: ${mismatch}`);
  const names = columns.map((c) => `"${c}"`).join(", ");
  const perInsert = Math.max(1, Math.floor(VALUES_PER_INSERT / columns.length));
  const page = source.prepare(`SELECT rowid, ${names} FROM ${table.name} WHERE rowid > ? ORDER BY rowid LIMIT ?`).raw();
  const overriding = table.identity ? " OVERRIDING SYSTEM VALUE" : "";
  let after = -Infinity;
  let count = 0;
  for (;;) {
    const rows = page.all(after, perInsert) as unknown[][];
    if (rows.length === 0) break;
    after = rows[rows.length - 1]![0] as number;
    const tuples = rows.map((_, r) => `(${columns.map((_, c) => `$${r * columns.length + c + 1}`).join(", ")})`);
    await client.query(
      `INSERT INTO ${table.name} (${names})${overriding} VALUES ${tuples.join(", ")}`,
      rows.flatMap((row) => row.slice(1)),
    );
    count += rows.length;
  }
  if (table.identity) {
    await client.query(
      `SELECT setval(pg_get_serial_sequence($1, $2), (SELECT coalesce(max(${table.identity}), 0) + 1 FROM ${table.name}), false)`,
      [table.name, table.identity],
    );
  }
  return count;
}

async function countRows(client: Queryable, tables: readonly string[]): Promise<Array<{ table: string; rows: number }>> {
  const { rows } = await client.query<Record<string, number>>(
    `SELECT ${tables.map((t) => `(SELECT count(*) FROM ${t}) AS ${t}`).join(", ")}`,
  );
  return tables.map((table) => ({ table, rows: rows[0]![table]! }));
}
