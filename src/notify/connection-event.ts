import type { ConnectionState } from "../token-set.js";

/** What happened to a connection. */
export type ConnectionEventType =
  /** Xero rejected the refresh token: a person must re-authorise the connection. */
  | "connection.needs_reauthorization"
  /** The refresh token is close to its 60-day death and has not been refreshed. */
  | "connection.refresh_token_expiring"
  /** A connection that needed re-authorisation is active again (re-imported). */
  | "connection.recovered"
  /**
   * Xero refused a refresh token tokenbroker never used while the grant is still alive: another client holding a
   * copy of it spent it. The connection needs re-authorisation, and that client must be found.
   */
  | "connection.refresh_token_spent_elsewhere";

/**
 * The JSON body of a notification webhook. No token or secret: ids, names,
 * times and a sentence saying what to do.
 */
export interface ConnectionEvent {
  /** Unique per event: a receiver can drop a retried delivery it already has. */
  id: string;
  type: ConnectionEventType;
  /** When the broker noticed it (ISO 8601). */
  occurredAt: string;
  /** What happened and what to do, for a person. */
  message: string;
  connection: {
    id: string;
    state: ConnectionState;
    /** Grows by one with each refresh or import. */
    version: number;
    /** When the current refresh token was issued, and when it dies unused (ISO 8601). */
    refreshTokenIssuedAt: string;
    refreshTokenExpiresAt: string;
    /** The organisations that share this token set. */
    tenants: Array<{ tenantId: string; tenantName?: string }>;
    /** The last refresh error, if any (no secrets). */
    lastError?: string;
  };
}
