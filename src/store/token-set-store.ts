import { DecryptionError, type TokenCipher } from "../crypto/token-cipher.js";
import type { ConnectionState, NewTokenSet, TokenRecord } from "../token-set.js";

/**
 * {@link TokenSetStore.commitRefresh} refused because the committer no longer
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
 * {@link TokenSetStore.getToken} refused a stored token set that cannot be used
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

/** Result of {@link TokenSetStore.tryAcquireLease}. */
export type LeaseResult = { acquired: true } | { acquired: false; holder: string; expiresAt: number };

/** When a token set expires and which version is stored: no secrets. */
export interface TokenState {
  connectionId: string;
  version: number;
  state: ConnectionState;
  expiresAt: number;
  obtainedAt: number;
  refreshTokenIssuedAt: number;
}

/** Options for {@link TokenSetStore.reencrypt}. */
export interface ReencryptOptions {
  /** Opens the values as they are now: every old key (and the new one). Undefined when the store is plain text. */
  from: TokenCipher | undefined;
  /** Seals under its current key. */
  to: TokenCipher;
  /** Token sets per transaction (default 100): short transactions keep running brokers' writes waiting only briefly. */
  batchSize?: number;
  /** Passes over the token sets before giving up on those that keep being rewritten under another key (default 5). */
  maxPasses?: number;
}

/** What {@link TokenSetStore.reencrypt} did. */
export interface ReencryptResult {
  /** Token sets re-sealed under the new key. */
  reencrypted: number;
  /** Token sets that were already under the new key. */
  unchanged: number;
}

/** Token sets still under another key after every pass (some broker writes with an old key), or refused as stored. */
export class RotationIncompleteError extends Error {
  override readonly name = "RotationIncompleteError";
}

/**
 * The token sets and their refresh leases: what is served, and the one
 * refresh per expiry across every process sharing the store.
 *
 * Every method is async so that a networked store (PostgreSQL) can implement
 * the same interface. Writes are atomic: a new token set, its version and the
 * release of the refresh lease are committed together or not at all.
 */
export interface TokenSetStore {
  /**
   * The current token set of a connection, or undefined if there is none.
   * Throws {@link UnreadableTokenSetError} for a token set whose secrets are
   * not sealed under a configured key (never served, never refreshed with).
   * The record may be shared by every caller of the moment (it is frozen).
   */
  getToken(connectionId: string): Promise<TokenRecord | undefined>;
  /**
   * Claims the right to refresh a connection for `ttlMs`. Only one holder at a
   * time across every process sharing the store; a lapsed lease can be taken
   * over, and so can one stamped later than now by more than it lasts (the
   * clock went back; a lease stamped a moment later is another process's,
   * taken while this call waited). The lease also records that a refresh is under way, so that one
   * interrupted by a crash is found and finished after a restart.
   */
  tryAcquireLease(connectionId: string, holder: string, ttlMs: number): Promise<LeaseResult>;
  /** Gives up a lease without a new token (the refresh failed). */
  releaseLease(connectionId: string, holder: string): Promise<void>;
  /**
   * Commits a refreshed token set in one transaction: stores it, bumps the
   * version from `fromVersion`, clears the connection's last error and
   * releases the lease. Throws if the stored version is no longer
   * `fromVersion`, and {@link LeaseLostError} if `holder` no longer holds the
   * lease (a lapsed lease nobody took over still counts as held).
   */
  commitRefresh(connectionId: string, holder: string, fromVersion: number, tokenSet: NewTokenSet): Promise<TokenRecord>;
  /** Connections with a lease that has lapsed (or was taken later than `now` by more than it lasts: the clock went back): a refresh that was interrupted. */
  listLapsedLeases(now: number): Promise<string[]>;
  /** The timing and version of every token set, without secrets: what the scheduler decides on, and how it notices refreshes made by other processes. */
  listTokenStates(): Promise<TokenState[]>;
  /**
   * Re-seals every token set under `to`'s current key, in small transactions,
   * while brokers keep serving, losing no refresh committed meanwhile. Token
   * sets wholly in clear text are encrypted; one partly in clear text, or
   * that does not open, is left as it is and named in the
   * {@link RotationIncompleteError} thrown once every other one is done.
   */
  reencrypt(options: ReencryptOptions): Promise<ReencryptResult>;
  /** The distinct key ids token sets are sealed under (`null` for token sets in clear text). */
  keyIds(): Promise<Array<string | null>>;
  /** Connection ids of token sets with a secret in clear text: refused while an encryption key is configured, until `rotate-key` encrypts them. */
  unsealed(): Promise<string[]>;
}
