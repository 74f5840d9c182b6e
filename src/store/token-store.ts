import { DecryptionError } from "../crypto/token-cipher.js";
import type { ConnectionState, NewTokenSet, Tenant, TenantState, TokenRecord } from "../token-set.js";
import type { AuthorisationStatus, ClaimedAuthorisation, NewPendingAuthorisation, TakenAuthorisation } from "./pending-authorisation.js";

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
}

/**
 * {@link TokenStore.commitRefresh} refused because the committer no longer
 * holds the refresh lease: another process took it over after it lapsed.
 */
export class LeaseLostError extends Error {
  override readonly name = "LeaseLostError";
}

/** Why a stored token set was refused: see {@link UnreadableTokenSetError}. */
export type UnreadableProblem =
  /** A secret column holds clear text although an encryption key is configured. */
  | "not_sealed"
  /** The column is sealed but no encryption key is configured. */
  | "no_key"
  /** The column is sealed under a key that is not configured, or was altered or moved from another row. */
  | "cannot_open";

/**
 * {@link TokenStore.getToken} refused a stored token set that cannot be used
 * as stored: one of its secret columns is not sealed under a configured key.
 * Its message names the connection, the column and what to do, never a value.
 */
export class UnreadableTokenSetError extends DecryptionError {
  override readonly name = "UnreadableTokenSetError";

  constructor(
    readonly connectionId: string,
    readonly column: string,
    readonly problem: UnreadableProblem,
    message: string,
    /** The connection's active tenants (not secret): a scope check needs them to refuse as it refuses a readable one. */
    readonly tenantIds: readonly string[] = [],
  ) {
    super(message);
  }
}

/** Result of {@link TokenStore.tryAcquireLease}. */
export type LeaseResult =
  | { acquired: true }
  | { acquired: false; holder: string; expiresAt: number };

/** When a token set expires and which version is stored: no secrets. */
export interface TokenState {
  connectionId: string;
  version: number;
  state: ConnectionState;
  expiresAt: number;
  obtainedAt: number;
  refreshTokenIssuedAt: number;
}

/** A tenant as listed for operators: whether Xero still lists it for the grant. */
export interface TenantSummary extends Tenant {
  state: TenantState;
  /** When it vanished from the grant's connections list, ms since the epoch. */
  goneAt: number | undefined;
}

/** A connection as listed for operators: no secrets. */
export interface ConnectionSummary {
  connectionId: string;
  xeroUserId: string | undefined;
  /** The user's name or email, when a consent told it. */
  userName: string | undefined;
  /** When the user last consented (or the token set was imported), ms since the epoch. */
  authorisedAt: number;
  state: ConnectionState;
  version: number;
  expiresAt: number;
  refreshTokenIssuedAt: number;
  lastRefreshAt: number | undefined;
  lastError: string | undefined;
  tenants: TenantSummary[];
}

/**
 * Durable storage of connections, their tenants and token sets.
 *
 * Every method is async so that a networked store (PostgreSQL) can implement
 * the same interface. Writes are atomic: a new token set, its version and the
 * release of the refresh lease are committed together or not at all.
 */
export interface TokenStore {
  /** The connection that serves this tenant, or undefined. When several grants reach the tenant, the most recently authorised active one wins. */
  findConnectionByTenant(tenantId: string): Promise<string | undefined>;
  /**
   * The current token set of a connection, or undefined if there is none.
   * Throws {@link UnreadableTokenSetError} for a token set whose secrets are
   * not sealed under a configured key (never served, never refreshed with).
   */
  getToken(connectionId: string): Promise<TokenRecord | undefined>;
  /** Stores a newly authorised or imported grant; the same Xero user replaces their earlier token set (and becomes active again). */
  saveConnection(input: SaveConnectionInput): Promise<{ connectionId: string; created: boolean }>;
  /** Adds or updates tenants of a connection. */
  saveTenants(connectionId: string, tenants: Tenant[]): Promise<void>;
  /**
   * Claims the right to refresh a connection for `ttlMs`. Only one holder at a
   * time across every process sharing the store; a lapsed lease can be taken
   * over. The lease also records that a refresh is under way, so that one
   * interrupted by a crash is found and finished after a restart.
   */
  tryAcquireLease(connectionId: string, holder: string, ttlMs: number): Promise<LeaseResult>;
  /** Gives up a lease without a new token (the refresh failed). */
  releaseLease(connectionId: string, holder: string): Promise<void>;
  /**
   * Commits a refreshed token set in one transaction: stores it, bumps the
   * version from `fromVersion`, clears the last error and releases the lease.
   * Throws if the stored version is no longer `fromVersion`, and
   * {@link LeaseLostError} if `holder` no longer holds the lease (a lapsed
   * lease nobody took over still counts as held).
   */
  commitRefresh(connectionId: string, holder: string, fromVersion: number, tokenSet: NewTokenSet): Promise<TokenRecord>;
  /** Marks the connection as needing re-authorisation and releases any lease. */
  markNeedsReauthorization(connectionId: string, reason: string): Promise<void>;
  /** Records the last refresh error shown to operators (no secrets). */
  recordError(connectionId: string, reason: string): Promise<void>;
  /** Connections with a lease that has lapsed (or was taken at a time later than `now`: the clock went back): a refresh that was interrupted. */
  listLapsedLeases(now: number): Promise<string[]>;
  /** The timing and version of every token set, without secrets: what the scheduler decides on, and how it notices refreshes made by other processes. */
  listTokenStates(): Promise<TokenState[]>;
  /** Every connection with its tenants, for operators. */
  listConnections(): Promise<ConnectionSummary[]>;
  /** A cheap query that fails when the database cannot be used (closed, unreachable): what readiness checks run. */
  ping(): Promise<void>;
  /**
   * Stores a grant's full tenant list as Xero returned it: listed tenants are
   * added or updated (and active again), tenants of the connection missing
   * from the list are marked gone. Returns the ones newly marked gone.
   */
  syncTenants(connectionId: string, tenants: Tenant[]): Promise<{ gone: Tenant[] }>;
  /** Removes one tenant from a connection; false if it had no such tenant. */
  removeTenant(connectionId: string, tenantId: string): Promise<boolean>;
  /** Removes a connection with its token set and tenants; false if there was none. */
  removeConnection(connectionId: string): Promise<boolean>;
  /** Records a consent just started (its state and PKCE verifier); also forgets long-expired ones. */
  createAuthorisation(pending: NewPendingAuthorisation): Promise<void>;
  /**
   * Marks a state used, atomically, and returns its verifier, unless it is unknown, not bound to `browserHash`
   * (the state is then left untouched), already used or expired (at `now`).
   */
  takeAuthorisation(state: string, now: number, browserHash: string | undefined): Promise<TakenAuthorisation>;
  /**
   * Binds the pending consent whose one-time link hashes to `linkHash` to the browser `browserHash`, atomically,
   * once: undefined if no unused, unexpired consent is waiting for that link (unknown, opened before, expired).
   */
  claimAuthorisation(linkHash: string, browserHash: string, now: number): Promise<ClaimedAuthorisation | undefined>;
  /** Records how a taken authorisation ended: the connection it stored, or why it failed. */
  finishAuthorisation(state: string, outcome: { connectionId: string } | { error: string }): Promise<void>;
  /** How a pending authorisation stands (no verifier), or undefined if unknown. */
  getAuthorisation(state: string, now: number): Promise<AuthorisationStatus | undefined>;
  /** Closes the store; pending writes are finished first. */
  close(): Promise<void>;
}
