import type { TenantCheckEvent } from "../broker/tenant-refresh.js";
import type { Logger } from "../logger.js";

/**
 * Logs a re-read of a connection's organisations: each tenant removed at Xero
 * (warn, `tenant_removed_at_xero`) or added (info, `tenant_added_at_xero`), a
 * re-read that failed (warn), and every other one at debug. No token.
 */
export function tenantCheckLog(logger: Logger, event: TenantCheckEvent): void {
  const { connectionId, cause } = event;
  for (const t of event.removed) {
    logger.warn(
      { event: "tenant_removed_at_xero", connectionId, tenantId: t.tenantId, tenantName: t.tenantName, cause },
      `tenant ${t.tenantId} was disconnected at Xero: GetToken for it now answers NOT_FOUND`,
    );
  }
  for (const t of event.added) {
    logger.info(
      { event: "tenant_added_at_xero", connectionId, tenantId: t.tenantId, tenantName: t.tenantName, cause },
      `tenant ${t.tenantId} was added to connection ${connectionId} at Xero: it is served from now on`,
    );
  }
  if (event.outcome === "failed") {
    logger.warn(
      { event: "tenant_check", connectionId, cause, outcome: event.outcome, error: event.error },
      "re-reading the organisations failed",
    );
  } else {
    logger.debug({ event: "tenant_check", connectionId, cause, outcome: event.outcome }, `organisations re-read: ${event.outcome}`);
  }
}
