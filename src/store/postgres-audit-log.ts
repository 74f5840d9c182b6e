import { type AuditRow, toAuditEntry } from "./audit-rows.js";
import type { AuditEntry } from "../audit/audit-log.js";
import type { AuditQuery, AuditStore } from "./audit-store.js";
import type { PostgresDatabase } from "./postgres-database.js";

/** {@link AuditStore} in PostgreSQL's `audit_log` table: one statement a batch. */
export function createPostgresAuditLog(db: PostgresDatabase): AuditStore {
  return {
    async write(entries) {
      // Nothing once the store is closed (the last flush of a stopping broker may come after).
      if (entries.length === 0 || db.isClosed) return;
      // One INSERT of the whole batch from arrays: atomic, one round trip.
      const column = <K extends keyof AuditEntry>(k: K) => entries.map((e) => clean(e[k] ?? null));
      await db.query(
        `INSERT INTO audit_log (at, actor, action, tenant_id, connection_id, outcome, detail)
           SELECT * FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])`,
        [
          entries.map((e) => e.at),
          column("actor"),
          column("action"),
          column("tenantId"),
          column("connectionId"),
          column("outcome"),
          column("detail"),
        ],
      );
    },
    async read(query: AuditQuery = {}) {
      const { rows } = await db.query<AuditRow>(
        `SELECT at, actor, action, tenant_id, connection_id, outcome, detail FROM audit_log WHERE at >= $1
         ORDER BY at DESC, id DESC LIMIT $2`,
        [query.since ?? 0, query.limit ?? 100],
      );
      return rows.reverse().map(toAuditEntry);
    },
  };
}

/** PostgreSQL text cannot hold NUL (an audited tenant id comes from the network): it is written as U+FFFD. */
function clean<T>(value: T): T {
  return (typeof value === "string" && value.includes("\u0000") ? value.replaceAll("\u0000", "\ufffd") : value) as T;
}
