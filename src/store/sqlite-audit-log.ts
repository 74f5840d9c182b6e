import { type AuditRow, toAuditEntry } from "./audit-rows.js";
import { sameAuditEntry, type AuditEntry } from "../audit/audit-log.js";
import type { AuditQuery, AuditStore } from "./audit-store.js";
import type { SqliteDatabase } from "./sqlite-database.js";

/**
 * {@link AuditStore} in the `audit_log` table: one transaction a batch, and
 * one statement for each run of entries that differ only in their time (the
 * same key asking for the same token: the rows are made by SQLite from the
 * list of times, about a third of the CPU of one statement per row).
 */
export function createSqliteAuditLog(sqlite: SqliteDatabase): AuditStore {
  const db = sqlite.db;
  const insert = db.prepare(
    `INSERT INTO audit_log (at, actor, action, tenant_id, connection_id, outcome, detail)
     VALUES (@at, @actor, @action, @tenant_id, @connection_id, @outcome, @detail)`,
  );
  // json_each walks the array in order: the rows' ids keep the order the entries were recorded in.
  const insertRun = db.prepare(
    `INSERT INTO audit_log (at, actor, action, tenant_id, connection_id, outcome, detail)
     SELECT value, @actor, @action, @tenant_id, @connection_id, @outcome, @detail FROM json_each(@times)`,
  );
  const recent = db.prepare(`SELECT * FROM audit_log WHERE at >= ? ORDER BY at DESC, id DESC LIMIT ?`);
  const writeAll = db.transaction((entries: readonly AuditEntry[]) => {
    for (let i = 0; i < entries.length; ) {
      const e = entries[i]!;
      let end = i + 1;
      while (end < entries.length && sameAuditEntry(e, entries[end]!)) end++;
      const columns = {
        actor: e.actor ?? null,
        action: e.action,
        tenant_id: e.tenantId ?? null,
        connection_id: e.connectionId ?? null,
        outcome: e.outcome,
        detail: e.detail ?? null,
      };
      if (end - i === 1) insert.run({ ...columns, at: e.at });
      else insertRun.run({ ...columns, times: JSON.stringify(timesOf(entries, i, end)) });
      i = end;
    }
  });
  return {
    async write(entries) {
      if (db.open) writeAll.immediate(entries);
    },
    async read(query: AuditQuery = {}) {
      const rows = recent.all(query.since ?? 0, query.limit ?? 100) as AuditRow[];
      return rows.reverse().map(toAuditEntry);
    },
  };
}

/** The times of `entries[from..to)`: integers (ms), as the STRICT `at` column takes them. */
function timesOf(entries: readonly AuditEntry[], from: number, to: number): number[] {
  const times = new Array<number>(to - from);
  for (let i = from; i < to; i++) times[i - from] = entries[i]!.at;
  return times;
}
