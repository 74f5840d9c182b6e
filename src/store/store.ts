import type { Clock } from "../clock.js";
import type { TokenCipher } from "../crypto/token-cipher.js";
import type { Logger } from "../logger.js";
import type { ApiKeyStore } from "./api-key-store.js";
import type { AuditStore } from "./audit-store.js";
import type { ConnectionStore } from "./connection-store.js";
import type { ConsentStore } from "./consent-store.js";
import type { TokenSetStore } from "./token-set-store.js";

/**
 * Everything the broker keeps, split by concern. Each part is an interface
 * with no trace of the database behind it: the SQLite implementation is the
 * one there is, a networked one (PostgreSQL) implements the same parts.
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
  /** A cheap query that fails when the store cannot be used (closed, unreachable): what readiness checks run. */
  ping(): Promise<void>;
  /**
   * Writes a consistent copy of everything to `path`, safe while this or
   * other processes read and write the store; `path` never holds half a copy,
   * and an existing file there is replaced.
   */
  backup(path: string): Promise<void>;
  /** Closes the store; pending writes are finished first. Later calls fail (`ping` too). */
  close(): Promise<void>;
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
  /** How long to wait for another process's write lock, ms (default 5000). */
  busyTimeoutMs?: number;
  /** How soon another process's commit is seen by the read cache, ms (default 5). */
  readCacheCheckMs?: number;
}
