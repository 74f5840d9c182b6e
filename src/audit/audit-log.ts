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

/** Entries recorded one after the other that differ only in their time: held as one object and their times. */
interface Run {
  readonly entry: Omit<AuditEntry, "at">;
  readonly at: number[];
}

/**
 * An audit log that queues entries in memory and writes them to the sink in
 * one batch (one SQLite transaction) every `flushMs`, so that recording a
 * token handed out costs a comparison and a push on the request path. Entries not yet
 * written when the process dies (at most `flushMs` of them) are lost;
 * `close()` writes them on shutdown.
 *
 * Entries recorded in a row that differ only in their time (a caller asking
 * for the same token again and again) are held as one entry and its times
 * until the flush: a second of calls held for the flush costs a number each,
 * not an object each that lives through several garbage collections
 * (`npm run bench`, cached GetToken with keys on).
 */
export function createAuditLog(options: AuditLogOptions): AuditLog {
  const flushMs = options.flushMs ?? 1000;
  const maxQueued = options.maxQueued ?? 50_000;
  const now = options.now ?? Date.now;
  let queue: Run[] = [];
  let queued = 0;
  let timer: NodeJS.Timeout | undefined;
  let dropped = 0;
  let closed = false;
  let writing: Promise<void> = Promise.resolve();

  const flush = (): Promise<void> => {
    if (timer) clearTimeout(timer);
    timer = undefined;
    const runs = queue;
    queue = [];
    queued = 0;
    writing = writing.then(async () => {
      if (runs.length === 0) return;
      const batch = entriesOf(runs);
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
      if (queued >= maxQueued) {
        dropped++;
        return;
      }
      queued++;
      const at = entry.at ?? now();
      const last = queue.length === 0 ? undefined : queue[queue.length - 1]!;
      if (last !== undefined && sameAuditEntry(last.entry, entry)) last.at.push(at);
      else queue.push({ entry: withoutTime(entry), at: [at] });
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

type Untimed = Omit<AuditEntry, "at">;

/** True when `a` and `b` record the same thing, their times aside (a sink may write such runs as one). */
export function sameAuditEntry(a: Untimed, b: Untimed): boolean {
  return (
    a.actor === b.actor &&
    a.action === b.action &&
    a.tenantId === b.tenantId &&
    a.connectionId === b.connectionId &&
    a.outcome === b.outcome &&
    a.detail === b.detail
  );
}

/** A copy of the entry's fields (not of anything else the caller's object holds), without its time. */
function withoutTime(e: Untimed): Untimed {
  return { actor: e.actor, action: e.action, tenantId: e.tenantId, connectionId: e.connectionId, outcome: e.outcome, detail: e.detail };
}

/** The entries of the runs, in the order they were recorded. */
function entriesOf(runs: readonly Run[]): AuditEntry[] {
  const entries: AuditEntry[] = [];
  for (const { entry: e, at } of runs) {
    // Written out, not spread: a spread of an object with undefined fields costs about a microsecond each.
    for (const t of at)
      entries.push({
        at: t,
        actor: e.actor,
        action: e.action,
        tenantId: e.tenantId,
        connectionId: e.connectionId,
        outcome: e.outcome,
        detail: e.detail,
      });
  }
  return entries;
}
