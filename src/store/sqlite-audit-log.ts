import type { AuditEntry } from "../audit/audit-log.js";
import type { AuditQuery, AuditStore } from "./audit-store.js";
import type { SqliteDatabase } from "./sqlite-database.js";

interface AuditRow {
  at: number;
  actor: string | null;
  action: string;
  tenant_id: string | null;
  connection_id: string | null;
  outcome: string;
  detail: string | null;
}

/** {@link AuditStore} in the `audit_log` table: one transaction a batch. */
export function createSqliteAuditLog(sqlite: SqliteDatabase): AuditStore {
  const db = sqlite.db;
  const insert = db.prepare(
    `INSERT INTO audit_log (at, actor, action, tenant_id, connection_id, outcome, detail)
     VALUES (@at, @actor, @action, @tenant_id, @connection_id, @outcome, @detail)`,
  );
  const recent = db.prepare(`SELECT * FROM audit_log WHERE at >= ? ORDER BY at DESC, id DESC LIMIT ?`);
  const writeAll = db.transaction((entries: readonly AuditEntry[]) => {
    for (const e of entries) {
      insert.run({
        at: e.at,
        actor: e.actor ?? null,
        action: e.action,
        tenant_id: e.tenantId ?? null,
        connection_id: e.connectionId ?? null,
        outcome: e.outcome,
        detail: e.detail ?? null,
      });
    }
  });
  return {
    async write(entries) {
      if (db.open) writeAll.immediate(entries);
    },
    async read(query: AuditQuery = {}) {
      const rows = recent.all(query.since ?? 0, query.limit ?? 100) as AuditRow[];
      return rows.reverse().map((r) => ({
        at: r.at,
        actor: r.actor ?? undefined,
        action: r.action,
        tenantId: r.tenant_id ?? undefined,
        connectionId: r.connection_id ?? undefined,
        outcome: r.outcome,
        detail: r.detail ?? undefined,
      }));
    },
  };
}
