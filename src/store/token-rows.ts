import type { Logger } from "../logger.js";
import type { TokenCipher } from "../crypto/token-cipher.js";
import type { ConnectionState, NewTokenSet, TokenRecord } from "../token-set.js";
import { openTokenColumns } from "./sealed-token-columns.js";
import { UnreadableTokenSetError } from "./token-set-store.js";

/** A `token_sets` row joined with its connection's state and active tenants (tenant ids joined by U+001F), as each store reads it. */
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
  /** The connection's custom-connection name and client id (both null for a user's grant). */
  custom_name: string | null;
  client_id: string | null;
}

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
    ...(row.custom_name !== null && row.client_id !== null ? { custom: { name: row.custom_name, clientId: row.client_id } } : {}),
  };
}

/** `record` and its arrays made read-only (a TokenRecord shared by every reader of the read cache). */
export function freezeRecord(record: TokenRecord): TokenRecord {
  Object.freeze(record.scopes);
  Object.freeze(record.tenantIds);
  if (record.custom) Object.freeze(record.custom);
  return Object.freeze(record);
}

/** A token set that stays refused is logged again after this long, ms (not at every call). */
export const REFUSAL_LOG_EVERY_MS = 10 * 60_000;

/**
 * Opens the secret columns of stored rows (see `openTokenColumns`); a refused
 * row is logged (at most every {@link REFUSAL_LOG_EVERY_MS} per connection,
 * column and problem, never a value) and thrown as an
 * {@link UnreadableTokenSetError} that carries the connection's tenants.
 */
export class TokenRowOpener {
  /** When each refusal (connection, column, problem) was last logged, `performance.now()`. */
  readonly #refusalsLogged = new Map<string, number>();

  constructor(
    private readonly cipher: () => TokenCipher | undefined,
    private readonly logger: Logger,
  ) {}

  /** The row with its secrets opened. */
  open(row: TokenRow): TokenRow {
    try {
      return openTokenColumns(row, this.cipher());
    } catch (e) {
      if (!(e instanceof UnreadableTokenSetError)) throw e;
      this.logRefusal(e);
      const tenantIds = toRecord(row).tenantIds;
      throw new UnreadableTokenSetError(e.connectionId, e.column, e.problem, e.message, tenantIds);
    }
  }

  private logRefusal(e: UnreadableTokenSetError): void {
    const key = `${e.connectionId}\u0000${e.column}\u0000${e.problem}`;
    const now = performance.now();
    const last = this.#refusalsLogged.get(key);
    if (last !== undefined && now - last < REFUSAL_LOG_EVERY_MS) return;
    this.#refusalsLogged.set(key, now);
    this.logger.error({ event: "token_set_refused", connectionId: e.connectionId, column: e.column, problem: e.problem }, e.message);
  }
}
