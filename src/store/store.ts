import type { Clock } from "../clock.js";
import type { TokenCipher } from "../crypto/token-cipher.js";
import type { Logger } from "../logger.js";
import type { ApiKeyStore } from "./api-key-store.js";
import type { AuditStore } from "./audit-store.js";
import type { ConnectionStore } from "./connection-store.js";
import type { ConsentStore } from "./consent-store.js";
import type { QuotaStore } from "./quota-store.js";
import type { TokenSetStore } from "./token-set-store.js";

/**
 * Everything the broker keeps, split by concern. Each part is an interface
 * with no trace of the database behind it, implemented on SQLite (one file,
 * `sqlite-*.ts`) and on PostgreSQL (several hosts, `postgres-*.ts`).
 * Built by `openStore` (open-store.ts); nothing outside `src/store` holds the driver.
 */
export interface Store {
  /** Token sets and their refresh leases. */
  readonly tokens: TokenSetStore;
  /** Connections, their state and their tenants. */
  readonly connections: ConnectionStore;
  /** Consents under way (pending authorisations). */
  readonly consents: ConsentStore;
  /** Client API keys. */
  readonly apiKeys: ApiKeyStore;
  /** The audit log. */
  readonly auditLog: AuditStore;
  /** Xero's call limits as counted by every broker sharing the store (the quota keeper's). */
  readonly quota: QuotaStore;
  /**
   * Changes committed by any process sharing the store, as they happen:
   * what pushes another host's refresh to this process's watchers at once.
   * Absent when the store cannot tell (SQLite: the scheduler polls
   * `listTokenStates` instead, which stays the fallback everywhere).
   */
  readonly changes?: StoreChanges;
  /** A cheap query that fails when the store cannot be used (closed, unreachable): what readiness checks run. */
  ping(): Promise<void>;
  /**
   * Writes a consistent copy of everything to `path`, safe while this or
   * other processes read and write the store; `path` never holds half a copy,
   * and an existing file there is replaced. A PostgreSQL store refuses, with
   * a message that says to use `pg_dump`.
   */
  backup(path: string): Promise<void>;
  /** Closes the store; pending writes are finished first. Later calls fail (`ping` too). */
  close(): Promise<void>;
}

/**
 * A change to one connection (its token set, state or tenants; `version` is
 * its token set's version after it, 0 once removed), or, after the store lost
 * sight of changes for a while (its listening connection dropped and came
 * back), `everything`: anything may have changed, read it all again. Never a token.
 */
export type StoreChange = { connectionId: string; version: number } | { everything: true };

/** Changes committed by any process sharing a store (see {@link Store.changes}). */
export interface StoreChanges {
  /** Calls `listener` with each change from now on, until the returned function is called. */
  subscribe(listener: (change: StoreChange) => void): () => void;
}

/**
 * The database could not be reached (a networked store: PostgreSQL is down,
 * restarting or cut off). Callers see UNAVAILABLE and may retry; its message
 * names no host and no password.
 */
export class StoreUnavailableError extends Error {
  override readonly name = "StoreUnavailableError";
}

/** Options for {@link openStore}. */
export interface StoreOptions {
  /** Time source for timestamps and lease expiry. */
  clock?: Clock;
  /** Seals access, refresh and id tokens at rest (AES-256-GCM); without it they are stored in plain text. */
  encryption?: TokenCipher;
  /**
   * Told why a stored token set was refused (at most once every ten minutes
   * per connection and column) and which files were made private on open.
   * Never a token.
   */
  logger?: Logger;
  /** SQLite: how long to wait for another process's write lock, ms (default 5000). */
  busyTimeoutMs?: number;
  /** SQLite: how soon another process's commit is seen by the read cache, ms (default 5). PostgreSQL's is told at once (LISTEN/NOTIFY). */
  readCacheCheckMs?: number;
  /** PostgreSQL: connections in the pool, besides the one that listens for changes (default 10). */
  poolSize?: number;
  /** PostgreSQL: how long to wait for a connection to the server, and for the listening connection's check, ms (default 5000). */
  connectTimeoutMs?: number;
  /** PostgreSQL: a statement unanswered after this fails, ms (default 10000): what bounds a wait on a server gone silent. */
  queryTimeoutMs?: number;
}
