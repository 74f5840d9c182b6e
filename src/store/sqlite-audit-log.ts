import type Database from "better-sqlite3";
import type { AuditEntry, AuditSink } from "../audit/audit-log.js";

interface AuditRow {
  at: number;
  actor: string | null;
  action: string;
  tenant_id: string | null;
  connection_id: string | null;
  outcome: string;
  detail: string | null;
}

/** Which entries {@link readAuditLog} returns. */
export interface AuditQuery {
  /** Only entries at or after this time, ms. */
  since?: number | undefined;
  /** At most this many, the most recent (default 100). */
  limit?: number | undefined;
}

/** Writes audit batches to the `audit_log` table, one transaction a batch. */
export function createSqliteAuditSink(db: Database.Database): AuditSink {
  const insert = db.prepare(
    `INSERT INTO audit_log (at, actor, action, tenant_id, connection_id, outcome, detail)
     VALUES (@at, @actor, @action, @tenant_id, @connection_id, @outcome, @detail)`,
  );
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
    write(entries) {
      if (db.open) writeAll.immediate(entries);
    },
  };
}

/** The most recent audit entries (within `since`), oldest first. */
export function readAuditLog(db: Database.Database, query: AuditQuery = {}): AuditEntry[] {
  const rows = db
    .prepare(`SELECT * FROM audit_log WHERE at >= ? ORDER BY at DESC, id DESC LIMIT ?`)
    .all(query.since ?? 0, query.limit ?? 100) as AuditRow[];
  return rows.reverse().map((r) => ({
    at: r.at,
    actor: r.actor ?? undefined,
    action: r.action,
    tenantId: r.tenant_id ?? undefined,
    connectionId: r.connection_id ?? undefined,
    outcome: r.outcome,
    detail: r.detail ?? undefined,
  }));
}
