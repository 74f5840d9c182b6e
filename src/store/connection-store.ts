import type { ConnectionState, CustomConnection, NewTokenSet, Tenant, TenantState } from "../token-set.js";

/** What an import or a consent hands to the store. */
export interface SaveConnectionInput {
  /** The Xero user whose grant this is; the same user replaces their token set. */
  xeroUserId: string | undefined;
  /** The user's name or email from the id token, for the status page (not a secret). */
  userName?: string | undefined;
  /** The token set just obtained. */
  tokenSet: NewTokenSet;
  /** The tenants the grant reaches. */
  tenants: Tenant[];
  /**
   * Set for a custom connection (then `xeroUserId` is ignored and `tokenSet.refreshToken` is its client secret):
   * the custom connection of the same name is replaced (its client id too) and becomes active again.
   */
  custom?: CustomConnection;
}

/** A tenant as listed for operators: whether Xero still lists it for the grant. */
export interface TenantSummary extends Tenant {
  state: TenantState;
  /** When it vanished from the grant's connections list (removed at Xero), ms since the epoch. */
  goneAt: number | undefined;
  /** When Xero's connections list last listed it, ms since the epoch (undefined: not read since it was stored). */
  checkedAt: number | undefined;
}

/** When a connection's tenants were last re-read from Xero (see {@link ConnectionStore.claimTenantCheck}). */
export interface TenantCheckState {
  connectionId: string;
  /** When a broker last claimed the re-read (started it), ms since the epoch; undefined: never. */
  claimedAt: number | undefined;
}

/** A tenant that Xero stopped listing for its grant (see {@link ConnectionStore.findRemovedTenant}). */
export interface RemovedTenant {
  connectionId: string;
  tenantId: string;
  tenantName: string | undefined;
  /** When the broker noticed, ms since the epoch. */
  goneAt: number;
}

/** A connection as listed for operators: no secrets. */
export interface ConnectionSummary {
  connectionId: string;
  xeroUserId: string | undefined;
  /** The user's name or email, when a consent told it. */
  userName: string | undefined;
  /** When the user last consented (or the token set was imported), ms since the epoch. */
  authorizedAt: number;
  state: ConnectionState;
  version: number;
  expiresAt: number;
  refreshTokenIssuedAt: number;
  lastRefreshAt: number | undefined;
  lastError: string | undefined;
  tenants: TenantSummary[];
  /** Set for a custom connection (client credentials). */
  custom?: CustomConnection;
}

/**
 * The connections (one Xero user's grant each), their state and their
 * tenants. A connection is stored with its first token set, in one
 * transaction; later token sets go through the `TokenSetStore`.
 */
export interface ConnectionStore {
  /** The connection that serves this tenant, or undefined. When several grants reach the tenant, the most recently authorised active one wins. */
  findConnectionByTenant(tenantId: string): Promise<string | undefined>;
  /**
   * Stores a newly authorised or imported grant; the same Xero user replaces their earlier token set (and becomes
   * active again), as does a custom connection of the same name.
   */
  saveConnection(input: SaveConnectionInput): Promise<{ connectionId: string; created: boolean }>;
  /** Adds or updates tenants of a connection. */
  saveTenants(connectionId: string, tenants: Tenant[]): Promise<void>;
  /**
   * Stores a grant's full tenant list as Xero returned it: listed tenants are
   * added or updated (and active again), tenants of the connection missing
   * from the list are marked gone; every listed one is stamped as checked now.
   * Returns the ones newly marked gone and the ones newly added (or active again).
   */
  syncTenants(connectionId: string, tenants: Tenant[]): Promise<{ gone: Tenant[]; added: Tenant[] }>;
  /**
   * Every active connection with when its tenants' re-read was last claimed:
   * what the periodic re-read decides on. No secrets.
   */
  listTenantChecks(): Promise<TenantCheckState[]>;
  /**
   * Claims the re-read of an active connection's tenants: a compare-and-set
   * that stamps the claim with the store's clock only while it is still
   * `seenClaimedAt` (what {@link listTenantChecks} said). True for exactly one
   * of the brokers sharing the store that try with the same value.
   */
  claimTenantCheck(connectionId: string, seenClaimedAt: number | undefined): Promise<boolean>;
  /**
   * The tenant marked gone most recently, when no connection serves it:
   * explains a `not_found` for a tenant removed at Xero. Undefined otherwise.
   */
  findRemovedTenant(tenantId: string): Promise<RemovedTenant | undefined>;
  /** Marks the connection as needing re-authorisation and releases any refresh lease. */
  markNeedsReauthorization(connectionId: string, reason: string): Promise<void>;
  /** Records the last error shown to operators (no secrets). */
  recordError(connectionId: string, reason: string): Promise<void>;
  /** Every connection with its tenants, for operators. */
  listConnections(): Promise<ConnectionSummary[]>;
  /** Removes one tenant from a connection; false if it had no such tenant. */
  removeTenant(connectionId: string, tenantId: string): Promise<boolean>;
  /** Removes a connection with its token set and tenants; false if there was none. */
  removeConnection(connectionId: string): Promise<boolean>;
}
