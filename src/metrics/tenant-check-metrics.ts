import { Counter, type Registry } from "prom-client";
import type { TenantCheckListener } from "../broker/tenant-refresh.js";

/**
 * Registers the metrics of the organisations' re-read: re-reads by cause and
 * outcome, and tenants found removed at Xero or added to a grant.
 */
export function createTenantCheckMetrics(registry: Registry): TenantCheckListener {
  const checks = new Counter({
    name: "tokenbroker_tenant_checks_total",
    help: "Re-reads of a connection's organisations from Xero's connections list, by cause (periodic, recheck) and outcome (checked, no_valid_token, failed).",
    labelNames: ["cause", "outcome"] as const,
    registers: [registry],
  });
  for (const cause of ["periodic", "recheck"])
    for (const outcome of ["checked", "no_valid_token", "failed"]) checks.inc({ cause, outcome }, 0);
  const changes = new Counter({
    name: "tokenbroker_tenant_changes_total",
    help: "Tenants found removed at Xero (change=removed) or newly listed for a grant (change=added) by the re-read.",
    labelNames: ["change"] as const,
    registers: [registry],
  });
  changes.inc({ change: "removed" }, 0);
  changes.inc({ change: "added" }, 0);
  return (event) => {
    checks.inc({ cause: event.cause, outcome: event.outcome });
    if (event.removed.length > 0) changes.inc({ change: "removed" }, event.removed.length);
    if (event.added.length > 0) changes.inc({ change: "added" }, event.added.length);
  };
}
