import type { ConnectionSummary, TenantSummary } from "../store/connection-store.js";
import { ageText, countdownText } from "../web/durations.js";
import { terminalSafe } from "./terminal-text.js";

/** A connection as `tokenbroker connections` prints it: no secret. */
export function describeConnection(c: ConnectionSummary, now: number): string {
  const lines = [
    `connection ${c.connectionId}  ${stateLabel(c.state)}  ${c.custom ? `custom connection ${c.custom.name}` : (c.userName ?? c.xeroUserId ?? "(unknown user)")}`,
    c.custom ? `  client id      ${c.custom.clientId} (client credentials)` : `  xero user      ${c.xeroUserId ?? "unknown"}`,
    `  access token   ${c.state === "active" ? `${iso(c.expiresAt)} (${countdownText(c.expiresAt - now)})` : "none until re-authorised"}, version ${c.version}`,
    ...(c.custom ? [] : [`  refresh token  issued ${iso(c.refreshTokenIssuedAt)} (${ageText(now - c.refreshTokenIssuedAt)} old)`]),
    `  authorised     ${iso(c.authorizedAt)} (${ageText(now - c.authorizedAt)} ago)`,
    `  last refresh   ${c.lastRefreshAt === undefined ? "never" : `${iso(c.lastRefreshAt)} (${ageText(now - c.lastRefreshAt)} ago)`}`,
    `  last error     ${c.lastError ?? "none"}`,
    ...c.tenants.map((t) => `  ${describeTenant(t)}`),
  ];
  return lines.map(terminalSafe).join("\n");
}

/** `tenant <id>  <name>` with `(removed at Xero <when>)` for a tenant Xero no longer lists. */
export function describeTenant(t: TenantSummary): string {
  const note = t.state === "gone" ? `  (removed at Xero${t.goneAt === undefined ? "" : ` ${iso(t.goneAt)}`})` : "";
  return terminalSafe(`tenant ${t.tenantId}  ${t.tenantName ?? ""}${note}`);
}

/** When Xero last listed the tenant, or when it was found removed: one ISO time, or "not yet". */
export function lastCheckedText(t: TenantSummary): string {
  if (t.state === "gone" && t.goneAt !== undefined) return iso(t.goneAt);
  return t.checkedAt === undefined ? "not yet" : iso(t.checkedAt);
}

/** A connection for `--json`: times as ISO strings, no secret. */
export function connectionJson(c: ConnectionSummary): Record<string, unknown> {
  return {
    connectionId: c.connectionId,
    xeroUserId: c.xeroUserId ?? null,
    userName: c.userName ?? null,
    state: c.state,
    version: c.version,
    accessTokenExpiresAt: iso(c.expiresAt),
    refreshTokenIssuedAt: iso(c.refreshTokenIssuedAt),
    authorisedAt: iso(c.authorizedAt),
    lastRefreshAt: c.lastRefreshAt === undefined ? null : iso(c.lastRefreshAt),
    lastError: c.lastError ?? null,
    ...(c.custom ? { custom: { name: c.custom.name, clientId: c.custom.clientId } } : {}),
    tenants: c.tenants.map(tenantJson),
  };
}

/** A tenant for `--json`. */
export function tenantJson(t: TenantSummary): Record<string, unknown> {
  return {
    tenantId: t.tenantId,
    tenantName: t.tenantName ?? null,
    tenantType: t.tenantType ?? null,
    state: t.state,
    goneAt: t.goneAt === undefined ? null : iso(t.goneAt),
    removedAtXero: t.state === "gone",
    checkedAt: t.checkedAt === undefined ? null : iso(t.checkedAt),
    xeroConnectionId: t.xeroConnectionId ?? null,
  };
}

/** "active" or "needs-re-authorisation": one word, for columns and grep. */
export function stateLabel(state: ConnectionSummary["state"]): string {
  return state === "active" ? "active" : "needs-re-authorisation";
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}
