import type { TokenRecord } from "../token-set.js";

/**
 * Fans out each stored token set to the subscribers of its connection.
 *
 * A subscriber receives records in order of version, each at most once; a
 * change of state at the same version (active → needs re-authorisation) is
 * delivered too. Memory per subscriber is a small object and a queue that is
 * almost always empty.
 */
export class WatchHub {
  private readonly subscribers = new Map<string, Set<Subscription>>();
  private closed = false;

  /** Starts receiving the connection's updates. Close the subscription when done. */
  subscribe(connectionId: string): Subscription {
    const sub = new Subscription(() => this.remove(connectionId, sub));
    if (this.closed) {
      sub.end();
      return sub;
    }
    let set = this.subscribers.get(connectionId);
    if (!set) this.subscribers.set(connectionId, (set = new Set()));
    set.add(sub);
    return sub;
  }

  /**
   * Delivers a stored record to every subscriber of its connection. A
   * subscriber whose listener throws is ended; the others, and the refresh
   * that published the record, are not affected.
   */
  publish(record: TokenRecord): void {
    const set = this.subscribers.get(record.connectionId);
    if (!set) return;
    for (const sub of set) {
      try {
        sub.push(record);
      } catch {
        sub.close();
      }
    }
  }

  /** Number of open subscriptions for a connection. */
  count(connectionId: string): number {
    return this.subscribers.get(connectionId)?.size ?? 0;
  }

  /** Number of open subscriptions in all. */
  get size(): number {
    let n = 0;
    for (const set of this.subscribers.values()) n += set.size;
    return n;
  }

  /** Connection ids with at least one subscriber. */
  watched(): IterableIterator<string> {
    return this.subscribers.keys();
  }

  /** Ends every subscription (server shutdown); later subscriptions end at once. */
  closeAll(): void {
    this.closed = true;
    for (const set of this.subscribers.values()) for (const sub of set) sub.end();
    this.subscribers.clear();
  }

  private remove(connectionId: string, sub: Subscription): void {
    const set = this.subscribers.get(connectionId);
    if (!set) return;
    set.delete(sub);
    if (set.size === 0) this.subscribers.delete(connectionId);
  }
}

/**
 * One subscriber's records: pulled one at a time with {@link next}, or
 * pushed to a listener with {@link listen} (no queue, no promise per record:
 * what a server with thousands of subscribers wants).
 */
export class Subscription {
  private queue: TokenRecord[] = [];
  private waiter: ((r: TokenRecord | undefined) => void) | undefined;
  private listener: { onRecord: (r: TokenRecord) => void; onEnd: () => void } | undefined;
  private ended = false;
  private lastVersion = -1;
  private lastState: TokenRecord["state"] | undefined;

  constructor(private readonly onClose: () => void) {}

  /** Marks a record as already delivered, so older or equal ones are skipped. */
  delivered(record: TokenRecord): void {
    this.lastVersion = record.version;
    this.lastState = record.state;
    this.queue = this.queue.filter((r) => this.isNew(r));
  }

  /** @internal Called by the hub. */
  push(record: TokenRecord): void {
    if (this.ended || !this.isNew(record)) return;
    if (this.listener) {
      this.delivered(record);
      this.listener.onRecord(record);
    } else if (this.waiter) {
      const w = this.waiter;
      this.waiter = undefined;
      this.delivered(record);
      w(record);
    } else {
      this.queue.push(record);
    }
  }

  /**
   * The next record, or undefined when the subscription ended (closed, hub
   * shut down, or `signal` aborted).
   */
  next(signal?: AbortSignal): Promise<TokenRecord | undefined> {
    const queued = this.queue.shift();
    if (queued) {
      this.delivered(queued);
      return Promise.resolve(queued);
    }
    if (this.ended || signal?.aborted) return Promise.resolve(undefined);
    return new Promise((resolve) => {
      const onAbort = () => {
        this.waiter = undefined;
        resolve(undefined);
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.waiter = (r) => {
        signal?.removeEventListener("abort", onAbort);
        resolve(r);
      };
    });
  }

  /**
   * Hands every record from now on to `onRecord` as it is published (queued
   * ones first), and calls `onEnd` once when the subscription ends. Use
   * either this or {@link next}, not both.
   */
  listen(onRecord: (record: TokenRecord) => void, onEnd: () => void): void {
    if (this.ended) {
      onEnd();
      return;
    }
    this.listener = { onRecord, onEnd };
    const queued = this.queue;
    this.queue = [];
    for (const record of queued) this.push(record);
  }

  /** Ends the subscription: pending and later `next` calls return undefined, a listener hears `onEnd`. */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.queue = [];
    const w = this.waiter;
    this.waiter = undefined;
    w?.(undefined);
    const listener = this.listener;
    this.listener = undefined;
    listener?.onEnd();
  }

  /** Ends the subscription and removes it from the hub. */
  close(): void {
    this.end();
    this.onClose();
  }

  private isNew(r: TokenRecord): boolean {
    return r.version > this.lastVersion || (r.version === this.lastVersion && r.state !== this.lastState);
  }
}
