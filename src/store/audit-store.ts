import type { AuditEntry, AuditSink } from "../audit/audit-log.js";

/** Which entries {@link AuditStore.read} returns. */
export interface AuditQuery {
  /** Only entries at or after this time, ms. */
  since?: number | undefined;
  /** At most this many, the most recent (default 100). */
  limit?: number | undefined;
}

/** The audit log as stored: written a batch at a time (by `createAuditLog`), read by `tokenbroker audit`. */
export interface AuditStore extends AuditSink {
  /** Writes a batch in one transaction (nothing once the store is closed). */
  write(entries: readonly AuditEntry[]): Promise<void>;
  /** The most recent entries (within `since`), oldest first. */
  read(query?: AuditQuery): Promise<AuditEntry[]>;
}
