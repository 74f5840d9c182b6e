import type { ConnectionState, NewTokenSet, TokenRecord } from "../token-set.js";

/** A `token_sets` row joined with its connection's state and active tenants (see {@link SELECT_TOKEN}). */
export interface TokenRow {
  connection_id: string;
  access_token: string;
  refresh_token: string;
  id_token: string | null;
  token_type: string;
  scope: string;
  expires_at: number;
  obtained_at: number;
  refresh_token_issued_at: number;
  version: number;
  state: ConnectionState;
  tenant_ids: string | null;
}

/** One connection's token set as a {@link TokenRow}, by connection id. */
export const SELECT_TOKEN = `SELECT s.*, c.state,
     (SELECT group_concat(tenant_id, char(31)) FROM
       (SELECT tenant_id FROM tenants WHERE connection_id = s.connection_id AND state = 'active'
        ORDER BY created_at, tenant_id)) AS tenant_ids
   FROM token_sets s JOIN connections c ON c.id = s.connection_id
   WHERE s.connection_id = ?`;

/** The named parameters of a `token_sets` row (secrets in clear: seal them before writing). */
export function tokenParams(connectionId: string, t: NewTokenSet, version: number) {
  return {
    connection_id: connectionId,
    access_token: t.accessToken,
    refresh_token: t.refreshToken,
    id_token: t.idToken ?? null,
    token_type: t.tokenType,
    scope: t.scopes.join(" "),
    expires_at: t.expiresAt,
    obtained_at: t.obtainedAt,
    refresh_token_issued_at: t.refreshTokenIssuedAt,
    version,
  };
}

/** The record of an opened row. */
export function toRecord(row: TokenRow): TokenRecord {
  return {
    connectionId: row.connection_id,
    accessToken: row.access_token,
    refreshToken: row.refresh_token,
    idToken: row.id_token ?? undefined,
    tokenType: row.token_type,
    scopes: row.scope === "" ? [] : row.scope.split(" "),
    expiresAt: row.expires_at,
    obtainedAt: row.obtained_at,
    refreshTokenIssuedAt: row.refresh_token_issued_at,
    version: row.version,
    state: row.state,
    tenantIds: row.tenant_ids ? row.tenant_ids.split("\u001f") : [],
  };
}

/** `record` and its arrays made read-only (a TokenRecord shared by every reader of the read cache). */
export function freezeRecord(record: TokenRecord): TokenRecord {
  Object.freeze(record.scopes);
  Object.freeze(record.tenantIds);
  return Object.freeze(record);
}
