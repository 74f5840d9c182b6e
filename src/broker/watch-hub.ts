import type { TokenRecord } from "../token-set.js";

/**
 * Decides whether the subscriptions of an owner (an opaque name of whoever
 * opened them, e.g. the hash of an API key) may go on receiving records.
 */
export interface WatchGate {
  /**
   * `undefined` to let the owner's subscriptions go on, or the reason they end
   * with (handed to whoever reads them). Called synchronously, once per
   * owner and publish (before anything is pushed to the owner's
   * subscriptions), before a subscription's first record, and once per owner
   * every {@link WatchGate.everyMs}: it must be cheap, and current.
   */
  refuse(owner: string): unknown;
  /** How often every owner with open subscriptions is checked, ms. */
  readonly everyMs: number;
}

/** Marks an owner let through in one publish's verdicts. */
const LET_THROUGH = Symbol("let through");

/**
 * Fans out each stored token set to the subscribers of its connection.
 *
 * A subscriber receives records in order of version, each at most once; a
 * change of state at the same version (active → needs re-authorisation) is
 * delivered too. Memory per subscriber is a small object and a queue that is
 * almost always empty.
 *
 * With a {@link WatchGate}, subscriptions opened with an owner are also kept
 * by owner, and ended with the gate's reason as soon as it refuses their
 * owner: at the next publish (before anything is pushed) or at the next
 * periodic check, whichever comes first. One timer checks every owner; no
 * timer or closure is held per subscription.
 */
export class WatchHub {
  private readonly subscribers = new Map<string, Set<Subscription>>();
  /** Open subscriptions by owner (only with a gate). */
  private readonly owned = new Map<string, Set<Subscription>>();
  private timer: NodeJS.Timeout | undefined;
  private isClosed = false;

  constructor(private readonly gate?: WatchGate) {}

  /**
   * Starts receiving the connection's updates. Close the subscription when
   * done. `owner` names whoever opened it, for the gate.
   */
  subscribe(connectionId: string, owner?: string, tenantId?: string): Subscription {
    const gated = this.gate && owner !== undefined ? owner : undefined;
    const sub = new Subscription(this, connectionId, gated, tenantId);
    if (this.isClosed) {
      sub.end();
      return sub;
    }
    let set = this.subscribers.get(connectionId);
    if (!set) {
      set = new Set();
      this.subscribers.set(connectionId, set);
    }
    set.add(sub);
    if (gated !== undefined) {
      let mine = this.owned.get(gated);
      if (!mine) {
        mine = new Set();
        this.owned.set(gated, mine);
      }
      mine.add(sub);
      if (!this.timer) {
        this.timer = setInterval(() => this.recheck(), this.gate!.everyMs);
        this.timer.unref();
      }
    }
    return sub;
  }

  /**
   * Delivers a stored record to every subscriber of its connection. A
   * subscriber whose listener throws is ended; the others, and the refresh
   * that published the record, are not affected. With a gate, each owner
   * among the subscribers is checked once, before anything is pushed to it;
   * the subscriptions of a refused owner end (all of them) instead.
   */
  publish(record: TokenRecord): void {
    const set = this.subscribers.get(record.connectionId);
    if (!set) return;
    let verdicts: Map<string, unknown> | undefined;
    for (const sub of set) {
      const owner = sub.owner;
      if (owner !== undefined) {
        verdicts ??= new Map();
        let verdict = verdicts.get(owner);
        if (verdict === undefined) {
          verdict = this.refusal(owner) ?? LET_THROUGH;
          verdicts.set(owner, verdict);
        }
        if (verdict !== LET_THROUGH) {
          this.endOwner(owner, verdict);
          continue;
        }
      }
      try {
        sub.push(record);
      } catch {
        sub.close();
      }
    }
  }

  /**
   * Why the gate refuses this owner now (a gate that throws refuses with
   * its error), or undefined to go on (no gate, no owner, or let through).
   */
  refusal(owner: string | undefined): unknown {
    if (!this.gate || owner === undefined) return undefined;
    try {
      return this.gate.refuse(owner);
    } catch (e) {
      return e;
    }
  }

  /** Checks every owner with open subscriptions now, and ends those of each refused one (the gate's timer calls it). */
  recheck(): void {
    for (const owner of [...this.owned.keys()]) {
      const reason = this.refusal(owner);
      if (reason !== undefined) this.endOwner(owner, reason);
    }
  }

  /** Ends with `reason` every subscription of the connection opened for `tenantId` (the tenant was removed at Xero); returns how many. */
  endTenant(connectionId: string, tenantId: string, reason: unknown): number {
    const set = this.subscribers.get(connectionId);
    if (!set) return 0;
    const ending = [...set].filter((sub) => sub.tenantId === tenantId);
    for (const sub of ending) sub.close(reason);
    return ending.length;
  }

  /** The tenant ids this connection's open subscriptions were opened for. */
  tenantsWatched(connectionId: string): Set<string> {
    const ids = new Set<string>();
    for (const sub of this.subscribers.get(connectionId) ?? []) if (sub.tenantId !== undefined) ids.add(sub.tenantId);
    return ids;
  }

  /** Ends every subscription of `owner` with `reason`. */
  endOwner(owner: string, reason: unknown): void {
    const mine = this.owned.get(owner);
    if (!mine) return;
    for (const sub of [...mine]) sub.close(reason);
  }

  /** Whether {@link closeAll} ended everything (a server shutting down). */
  get closed(): boolean {
    return this.isClosed;
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
    this.isClosed = true;
    for (const set of this.subscribers.values()) for (const sub of set) sub.end();
    this.subscribers.clear();
    this.owned.clear();
    this.stopTimer();
  }

  /** @internal Called by a subscription that closes. */
  remove(sub: Subscription): void {
    const set = this.subscribers.get(sub.connectionId);
    if (set) {
      set.delete(sub);
      if (set.size === 0) this.subscribers.delete(sub.connectionId);
    }
    if (sub.owner === undefined) return;
    const mine = this.owned.get(sub.owner);
    if (!mine) return;
    mine.delete(sub);
    if (mine.size === 0) {
      this.owned.delete(sub.owner);
      if (this.owned.size === 0) this.stopTimer();
    }
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** What hears a {@link Subscription}'s records and its end (see {@link Subscription.attach}). */
export interface SubscriptionListener {
  onRecord(record: TokenRecord): void;
  onEnd(reason: unknown): void;
}

/**
 * One subscriber's records, pushed to a listener with {@link listen} (no
 * queue, no promise per record: what a server with thousands of subscribers
 * wants). Records published before the listener is set (while the first
 * token is fetched) wait in a queue, and are handed over when it is.
 */
export class Subscription {
  private queue: TokenRecord[] = [];
  private listener: SubscriptionListener | undefined;
  private ended = false;
  private lastVersion = -1;
  private lastState: TokenRecord["state"] | undefined;
  private reason: unknown;

  /** @internal Made by {@link WatchHub.subscribe}. */
  constructor(
    private readonly hub: WatchHub,
    /** The connection whose records it receives. */
    readonly connectionId: string,
    /** Whoever opened it, checked by the hub's gate (undefined: not gated). */
    readonly owner: string | undefined,
    /** The tenant it was opened for, if it named one (see {@link WatchHub.endTenant}). */
    readonly tenantId: string | undefined = undefined,
  ) {}

  /** Why the subscription was ended (e.g. its key was revoked), or undefined: closed by its reader, or the hub shut down. */
  get endReason(): unknown {
    return this.reason;
  }

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
    } else {
      this.queue.push(record);
    }
  }

  /**
   * Hands every record from now on to `onRecord` as it is published (queued
   * ones first), and calls `onEnd` once when the subscription ends, with the
   * reason it was ended for, if any (see {@link endReason}).
   */
  listen(onRecord: (record: TokenRecord) => void, onEnd: (reason: unknown) => void): void {
    this.attach({ onRecord, onEnd });
  }

  /**
   * {@link listen} with one object whose methods hear the records and the
   * end: a subscriber that is already an object (a waiting long poll) holds
   * no closures for them.
   */
  attach(listener: SubscriptionListener): void {
    if (this.ended) {
      listener.onEnd(this.reason);
      return;
    }
    this.listener = listener;
    const queued = this.queue;
    this.queue = [];
    for (const record of queued) this.push(record);
  }

  /**
   * Ends the subscription: a listener hears `onEnd`; nothing more is delivered. `reason`: why, if it is not a normal end (see
   * {@link endReason}).
   */
  end(reason?: unknown): void {
    if (this.ended) return;
    this.ended = true;
    this.reason = reason;
    this.queue = [];
    const listener = this.listener;
    this.listener = undefined;
    listener?.onEnd(reason);
  }

  /** Ends the subscription (with `reason`, if any: see {@link end}) and removes it from the hub. */
  close(reason?: unknown): void {
    this.end(reason);
    this.hub.remove(this);
  }

  private isNew(r: TokenRecord): boolean {
    return r.version > this.lastVersion || (r.version === this.lastVersion && r.state !== this.lastState);
  }
}
