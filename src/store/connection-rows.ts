import type { ConnectionState, Tenant, TenantState } from "../token-set.js";
import type { ConnectionSummary, TenantSummary } from "./connection-store.js";

/** A row of the `tenants` table, as both stores read it. */
export interface TenantRow {
  connection_id: string;
  tenant_id: string;
  xero_connection_id: string | null;
  tenant_name: string | null;
  tenant_type: string | null;
  auth_event_id: string | null;
  state: TenantState;
  gone_at: number | null;
  /** When Xero's connections list last listed it (migration 4; PostgreSQL's 2). */
  checked_at: number | null;
}

/** A connection joined with its token set's version and times, as `listConnections` reads it on both stores. */
export interface SummaryRow {
  id: string;
  xero_user_id: string | null;
  user_name: string | null;
  authorised_at: number;
  state: ConnectionState;
  version: number;
  expires_at: number;
  refresh_token_issued_at: number;
  last_refresh_at: number | null;
  last_error: string | null;
  custom_name: string | null;
  client_id: string | null;
}

/** A tenant row as the token logic sees it. */
export function toTenant(row: TenantRow): Tenant {
  return {
    tenantId: row.tenant_id,
    xeroConnectionId: row.xero_connection_id ?? undefined,
    tenantName: row.tenant_name ?? undefined,
    tenantType: row.tenant_type ?? undefined,
    authEventId: row.auth_event_id ?? undefined,
  };
}

/** A tenant row with its state, for listings. */
export function toTenantSummary(row: TenantRow): TenantSummary {
  return { ...toTenant(row), state: row.state, goneAt: row.gone_at ?? undefined, checkedAt: row.checked_at ?? undefined };
}

/** The connections of `listConnections`, each with its tenants (`tenants` in any order of connection). */
export function toConnectionSummaries(rows: readonly SummaryRow[], tenants: readonly TenantRow[]): ConnectionSummary[] {
  return rows.map((r) => ({
    connectionId: r.id,
    xeroUserId: r.xero_user_id ?? undefined,
    userName: r.user_name ?? undefined,
    authorizedAt: r.authorised_at,
    state: r.state,
    version: r.version,
    expiresAt: r.expires_at,
    refreshTokenIssuedAt: r.refresh_token_issued_at,
    lastRefreshAt: r.last_refresh_at ?? undefined,
    lastError: r.last_error ?? undefined,
    tenants: tenants.filter((t) => t.connection_id === r.id).map(toTenantSummary),
    ...(r.custom_name !== null && r.client_id !== null ? { custom: { name: r.custom_name, clientId: r.client_id } } : {}),
  }));
}
