/** One audited event: who did what to which tenant or connection, and when. Never a token. */
export interface AuditEntry {
  /** When, ms since the epoch. */
  at: number;
  /** The API key's name, `cli:<user>` for the local admin commands, `broker` for refreshes; undefined without authentication. */
  actor: string | undefined;
  /** e.g. `get_token`, `watch_token`, `report_expired`, `refresh`, `keys_create`, `keys_revoke`, `connect`, `disconnect`. */
  action: string;
  tenantId?: string | undefined;
  connectionId?: string | undefined;
  /** `ok`, or why not (`permission_denied`, a refresh outcome, …). */
  outcome: string;
  /** A short secret-free note (refresh cause, key scope). */
  detail?: string | undefined;
}

/** Where audit entries are written, a batch at a time. */
export interface AuditSink {
  write(entries: readonly AuditEntry[]): void | Promise<void>;
}

/** Options for {@link createAuditLog}. */
export interface AuditLogOptions {
  sink: AuditSink;
  /**
   * Entries are written this long after the first of a batch was recorded, ms
   * (default 1000). Each batch is one SQLite commit, whose fsync blocks the
   * event loop for milliseconds: at 100 ms, the commits took about 6% of the
   * broker's busy time serving cached GetToken with keys on (a CPU profile
   * under h2load).
   */
  flushMs?: number;
  /** Entries held at most; beyond, new ones are counted in `dropped` (default 50 000). */
  maxQueued?: number;
  /** Wall-clock time (default Date.now). */
  now?: () => number;
  /** Told when a batch could not be written (it is dropped). */
  onError?: (e: unknown) => void;
}

/** Records audit entries cheaply: in memory at once, to the sink in batches. */
export interface AuditLog {
  /** Queues an entry (`at` defaults to now); never throws, never waits. */
  record(entry: Omit<AuditEntry, "at"> & { at?: number }): void;
  /** Writes everything queued so far. */
  flush(): Promise<void>;
  /** Flushes and stops; later entries are written at once, one batch each. */
  close(): Promise<void>;
  /** Entries dropped because the queue was full or a write failed. */
  readonly dropped: number;
}

/**
 * An audit log that queues entries in memory and writes them to the sink in
 * one batch (one SQLite transaction) every `flushMs`, so that recording a
 * token handed out costs an array push on the request path. Entries not yet
 * written when the process dies (at most `flushMs` of them) are lost;
 * `close()` writes them on shutdown.
 */
export function createAuditLog(options: AuditLogOptions): AuditLog {
  const flushMs = options.flushMs ?? 1000;
  const maxQueued = options.maxQueued ?? 50_000;
  const now = options.now ?? Date.now;
  let queue: AuditEntry[] = [];
  let timer: NodeJS.Timeout | undefined;
  let dropped = 0;
  let closed = false;
  let writing: Promise<void> = Promise.resolve();

  const flush = (): Promise<void> => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    const batch = queue;
    queue = [];
    writing = writing.then(async () => {
      if (batch.length === 0) return;
      try {
        await options.sink.write(batch);
      } catch (e) {
        dropped += batch.length;
        options.onError?.(e);
      }
    });
    return writing;
  };

  return {
    record(entry) {
      if (queue.length >= maxQueued) {
        dropped++;
        return;
      }
      queue.push({ ...entry, at: entry.at ?? now() });
      if (closed) void flush();
      else if (!timer) {
        timer = setTimeout(() => void flush(), flushMs);
        timer.unref();
      }
    },
    flush,
    async close() {
      closed = true;
      await flush();
    },
    get dropped() {
      return dropped;
    },
  };
}
