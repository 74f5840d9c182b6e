import type { AuditEntry } from "../audit/audit-log.js";
import type { StoredGrant } from "./store-grant.js";

/** Longest tenant list kept in an entry's detail; a longer one is cut with `…`. */
const MAX_DETAIL = 1000;

/**
 * The audit entry of a stored consent: the Xero user who consented as the actor (`xero:<user id>`), the
 * connection, and its tenants (ids only, sorted), whether the connection is new, and the counts added and
 * gone. Nothing in it is a token, and nothing but printable ASCII comes from Xero.
 */
export function consentAuditEntry(stored: StoredGrant): Omit<AuditEntry, "at"> {
  const tenants = stored.tenants
    .map((t) => printable(t.tenantId))
    .sort()
    .join(",");
  const detail = `${stored.created ? "new" : "replaced"} tenants=${tenants} added=${stored.added.length} gone=${stored.gone.length}`;
  return {
    actor: `xero:${printable(stored.xeroUserId ?? "unknown").slice(0, 100)}`,
    action: "consent",
    connectionId: stored.connectionId,
    outcome: stored.tenantsError === undefined ? "ok" : "tenants_unread",
    detail: detail.length > MAX_DETAIL ? `${detail.slice(0, MAX_DETAIL)}…` : detail,
  };
}

function printable(text: string): string {
  return text.replace(/[^\x20-\x7E]/g, "?");
}
