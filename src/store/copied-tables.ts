import type Database from "better-sqlite3";
import type { Queryable } from "./postgres-database.js";

/** A table `tokenbroker migrate` copies from SQLite to PostgreSQL, row for row and value for value. */
export interface CopiedTable {
  /** The same name in both schemas. */
  readonly name: string;
  /** Its key is PostgreSQL's `GENERATED ALWAYS AS IDENTITY` (the audit log's `id`): copied as it is, then the sequence moved past it. */
  readonly identity?: string;
}

/**
 * Every table `tokenbroker migrate` copies, parents before children (the
 * foreign keys hold at each insert). Token sets are copied as stored: their
 * sealed columns are never opened. Refresh leases are not copied (see
 * {@link LEFT_BEHIND}).
 */
export const COPIED_TABLES: readonly CopiedTable[] = [
  { name: "connections" },
  { name: "tenants" },
  { name: "token_sets" },
  { name: "oauth_states" },
  { name: "api_keys" },
  { name: "audit_log", identity: "id" },
];

/**
 * Refresh leases stay behind: the copy runs only while no broker has the
 * SQLite file open, so every lease in it belongs to a process that is gone
 * (a crash during a refresh) and would only keep PostgreSQL's brokers from
 * refreshing that connection until it lapsed. A refresh such a process
 * spent at Xero is recovered as after any crash: the next refresh sends the
 * stored refresh token again, within Xero's grace period.
 */
export const LEFT_BEHIND = "refresh_leases";

/**
 * Xero's call limits as counted (slots, calls per bucket, 429 holds) are not
 * copied either: the copy runs while no broker runs, so every slot belongs
 * to a process that is gone, and the minute windows and most holds have
 * passed by the time a broker starts on PostgreSQL. Only the day's count is
 * lost, and Xero's `X-DayLimit-Remaining` on the first answer for each
 * organisation puts it back (a day hold lost is taken again at Xero's next 429).
 */
export const QUOTA_TABLES = ["quota_slots", "quota_calls", "quota_holds"] as const;

/**
 * The SQLite schema version (`user_version`) and the PostgreSQL one
 * (`tokenbroker_migrations`) whose tables {@link COPIED_TABLES} maps one to
 * the other. A new migration on either side must be looked at here: the
 * copy refuses to run until these say it was.
 */
export const KNOWN_SCHEMAS = { sqlite: 6, postgres: 4 } as const;

/** The stored (not generated) columns of `table` in the SQLite database, in their order. */
export function sqliteColumns(db: Database.Database, table: string): string[] {
  const columns = db.prepare(`SELECT name, hidden FROM pragma_table_xinfo(?)`).all(table) as Array<{ name: string; hidden: number }>;
  return columns.filter((c) => c.hidden === 0).map((c) => c.name);
}

/** The stored (not generated) columns of `table` in the PostgreSQL database, in their order. */
export async function postgresColumns(client: Queryable, table: string): Promise<string[]> {
  const { rows } = await client.query<{ column_name: string }>(
    `SELECT column_name FROM information_schema.columns
     WHERE table_schema = current_schema() AND table_name = $1 AND is_generated = 'NEVER' ORDER BY ordinal_position`,
    [table],
  );
  return rows.map((r) => r.column_name);
}

/**
 * Why `table`'s columns do not line up between the two databases (a column
 * one has and the other lacks), or undefined when they do.
 */
export function columnMismatch(table: string, sqlite: readonly string[], postgres: readonly string[]): string | undefined {
  const onlySqlite = sqlite.filter((c) => !postgres.includes(c));
  const onlyPostgres = postgres.filter((c) => !sqlite.includes(c));
  if (onlySqlite.length === 0 && onlyPostgres.length === 0) return undefined;
  const parts = [
    onlySqlite.length > 0 ? `only SQLite has ${onlySqlite.join(", ")}` : "",
    onlyPostgres.length > 0 ? `only PostgreSQL has ${onlyPostgres.join(", ")}` : "",
  ].filter((p) => p !== "");
  return `table ${table} differs: ${parts.join("; ")}`;
}
