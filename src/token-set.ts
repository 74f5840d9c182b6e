/**
 * The domain model: a connection is one Xero user's grant; it owns one token
 * set, shared by all the tenants (organisations) that user authorised.
 */

/** Health of a connection's token set. */
export type ConnectionState = "active" | "needs_reauthorization";

/** The secrets and timing of a token set, as stored. */
export interface TokenSet {
  /** Bearer token for Xero's API. */
  accessToken: string;
  /**
   * What obtains the next access token. For a user's grant, the single-use refresh token (every refresh returns a
   * new one); for a custom connection ({@link TokenRecord.custom}), the app's client secret, which renewal never
   * changes. Sealed at rest either way.
   */
  refreshToken: string;
  /** The OpenID Connect id token of the last token response, if any. */
  idToken: string | undefined;
  /** "Bearer". */
  tokenType: string;
  /** Granted scopes. */
  scopes: string[];
  /** When the access token expires, ms since the epoch. */
  expiresAt: number;
  /** When this access token was obtained, ms since the epoch. */
  obtainedAt: number;
  /** When the current refresh token was issued (it dies 60 days after). */
  refreshTokenIssuedAt: number;
}

/** One tenant (Xero organisation) reachable through a connection. */
export interface Tenant {
  /** Xero's tenant id, as sent in the `xero-tenant-id` header. */
  tenantId: string;
  /** Xero's id of this tenant connection (for `DELETE /connections/{id}`). */
  xeroConnectionId: string | undefined;
  /** The organisation's name. */
  tenantName: string | undefined;
  /** "ORGANISATION" or "PRACTICE". */
  tenantType: string | undefined;
  /** The authentication event that connected this tenant. */
  authEventId: string | undefined;
}

/** Whether a tenant is still in its grant's connections list at Xero ("gone" once it vanished). */
export type TenantState = "active" | "gone";

/** A connection's current token set with its identity and state. */
export interface TokenRecord extends TokenSet {
  /** The broker's id for this connection (one Xero user's grant). */
  connectionId: string;
  /** Grows by one with each refresh. */
  version: number;
  /** Whether the token set can still be refreshed. */
  state: ConnectionState;
  /** Tenant ids that share this token set. */
  tenantIds: string[];
  /** Set for a custom connection: renewed with the `client_credentials` grant, `refreshToken` being the client secret. */
  custom?: CustomConnection;
}

/**
 * A Xero custom connection: an app of its own for one organisation, renewed with the `client_credentials` grant
 * (its client id and secret; no refresh token, no user). Not secret: the client secret is the token set's `refreshToken`.
 */
export interface CustomConnection {
  /** The operator's name for it (`tokenbroker custom add --name`). */
  name: string;
  /** The custom connection app's client id. */
  clientId: string;
}

/** A freshly obtained token set, from a refresh or an import. */
export type NewTokenSet = TokenSet;

/** Xero's refresh tokens die this long after they were issued if unused: 60 days, ms. */
export const REFRESH_TOKEN_LIFETIME_MS = 60 * 24 * 60 * 60_000;
