import type { AuditEntry } from "../audit/audit-log.js";

/** A row of the `audit_log` table, as both stores read it. */
export interface AuditRow {
  at: number;
  actor: string | null;
  action: string;
  tenant_id: string | null;
  connection_id: string | null;
  outcome: string;
  detail: string | null;
}

/** An audit row as `tokenbroker audit` shows it. */
export function toAuditEntry(r: AuditRow): AuditEntry {
  return {
    at: r.at,
    actor: r.actor ?? undefined,
    action: r.action,
    tenantId: r.tenant_id ?? undefined,
    connectionId: r.connection_id ?? undefined,
    outcome: r.outcome,
    detail: r.detail ?? undefined,
  };
}
