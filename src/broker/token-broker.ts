import { createHash, timingSafeEqual } from "node:crypto";
import { systemClock, type Clock } from "../clock.js";
import { BrokerError, isBrokerError, needsReauthorizationError } from "../errors.js";
import type { Store } from "../store/store.js";
import { readStoredToken } from "./stored-token.js";
import type { TokenRecord } from "../token-set.js";
import type { IdentityServer } from "../upstream/identity-server.js";
import { abortable, within, type CancelSignal } from "./abortable.js";
import type { RefreshCause, RefreshListener, RefreshWaitListener } from "./refresh-events.js";
import { Refresher, type RefresherOptions } from "./refresher.js";
import { WatchHub, type Subscription, type WatchGate } from "./watch-hub.js";

/** Names a token set: exactly one of a tenant id or a connection id. */
export type Selector = { tenantId: string } | { connectionId: string };

/** Options for {@link TokenBroker}. */
export interface TokenBrokerOptions {
  /** Where token sets are read, and tenants resolved to connections. */
  store: Pick<Store, "tokens" | "connections">;
  identity: IdentityServer;
  clock?: Clock;
  /** Default for {@link TokenBroker.getToken}'s minimum validity, ms (default 60 000: the clock-skew margin). */
  defaultMinValidForMs?: number;
  /**
   * A caller whose stored token is still valid, but valid for less than it
   * asked, waits at most this long for the refresh before it gets the stored
   * token, ms (default 2000): a slow upstream never holds up such a caller.
   */
  validTokenWaitMs?: number;
  /** Receives an event for every refresh (logs, metrics). */
  onRefresh?: RefreshListener;
  /** Receives an event each time a caller waited for a refresh (metrics). */
  onWait?: RefreshWaitListener;
  /** Tuning of retries and leases. */
  refresher?: RefresherOptions;
  /**
   * Ends the watch streams of an owner it refuses (e.g. of an API key that was
   * revoked), checked before each record is pushed to them and periodically.
   */
  watchGate?: WatchGate;
}

/**
 * The token logic: hands out access tokens, refreshing each token set exactly
 * once per expiry however many callers ask at once, and streams new tokens to
 * watchers. Knows nothing of HTTP or gRPC; fails with {@link BrokerError}.
 */
export class TokenBroker {
  /** Subscribers of each connection's token set. */
  readonly hub: WatchHub;
  /** Performs the refreshes. */
  readonly refresher: Refresher;
  private readonly store: Pick<Store, "tokens" | "connections">;
  private readonly clock: Clock;
  private readonly defaultMinValidForMs: number;
  private readonly validTokenWaitMs: number;
  private readonly lastUsed = new Map<string, number>();
  private readonly onWait: RefreshWaitListener;

  constructor(options: TokenBrokerOptions) {
    this.store = options.store;
    this.clock = options.clock ?? systemClock;
    this.defaultMinValidForMs = options.defaultMinValidForMs ?? 60_000;
    this.validTokenWaitMs = options.validTokenWaitMs ?? 2000;
    this.onWait = options.onWait ?? (() => {});
    this.hub = new WatchHub(options.watchGate);
    this.refresher = new Refresher(
      options.store,
      options.identity,
      this.hub,
      this.clock,
      options.onRefresh,
      options.refresher,
    );
  }

  /** The connection id a selector names; `not_found` for an unknown tenant (an unknown connection id fails at the read that follows). */
  async resolve(selector: Selector): Promise<string> {
    if ("tenantId" in selector) {
      const id = await this.store.connections.findConnectionByTenant(selector.tenantId);
      if (id === undefined) throw new BrokerError("not_found", `tenant ${selector.tenantId} is not connected`);
      return id;
    }
    // Whether the connection exists is learnt from the read every caller makes next
    // (`current`), which throws the same not_found: no second read on the hot path.
    return selector.connectionId;
  }

  /**
   * A token valid for at least `minValidForMs` (capped at half the token's
   * lifetime, so that a fresh token always qualifies). Refreshes when needed;
   * if the refresh fails transiently while the stored token is still valid,
   * that token is returned.
   */
  async getToken(
    selector: Selector,
    options: { minValidForMs?: number | undefined; signal?: CancelSignal | undefined } = {},
  ): Promise<TokenRecord> {
    const connectionId = await this.resolve(selector);
    // `options` is passed on whole: its signal is read only if the caller has to wait for a refresh.
    return this.validToken(connectionId, options.minValidForMs ?? this.defaultMinValidForMs, options);
  }

  /**
   * A channel's API call with `accessToken` got 401. If that is the current
   * token, it is refreshed (once, however many report it); otherwise the
   * current token is returned untouched.
   */
  async reportExpired(
    selector: Selector,
    accessToken: string,
    options: { signal?: CancelSignal | undefined } = {},
  ): Promise<{ token: TokenRecord; refreshed: boolean }> {
    const connectionId = await this.resolve(selector);
    const current = await this.current(connectionId);
    this.touch(connectionId);
    if (current.state !== "active") throw needsReauthorizationError(connectionId);
    if (!sameToken(current.accessToken, accessToken)) {
      const token = await this.validToken(connectionId, this.defaultMinValidForMs, options);
      return { token, refreshed: false };
    }
    const token = await this.awaitRefresh(connectionId, "report", current.version, options.signal);
    return { token, refreshed: true };
  }

  /**
   * Streams the token set: first a valid token at once (or the state, if the
   * connection needs re-authorisation), then every new token and change of
   * state, in order of version. Ends when `signal` aborts or the broker closes;
   * throws the gate's reason when the gate refuses `owner` (see
   * {@link TokenBrokerOptions.watchGate}).
   *
   * An async iterator over {@link subscribe}: the same records under the same
   * rules. A record published while the reader is busy waits in a queue of
   * its own, and its owner is checked with the gate again when it is taken.
   */
  async *watch(selector: Selector, signal?: AbortSignal, owner?: string): AsyncGenerator<TokenRecord> {
    const queue: TokenRecord[] = [];
    let reader: ((record: TokenRecord | undefined) => void) | undefined;
    const wake = (record: TokenRecord | undefined) => {
      const r = reader;
      reader = undefined;
      r?.(record);
    };
    const subscription = this.subscribe(selector, (record) => (reader ? wake(record) : queue.push(record)), owner);
    let failed: { reason: unknown } | undefined;
    let over = false;
    subscription.ended.then(
      () => ((over = true), wake(undefined)),
      (reason: unknown) => ((over = true), (failed = { reason }), wake(undefined)),
    );
    const abort = () => subscription.close();
    signal?.addEventListener("abort", abort, { once: true });
    if (signal?.aborted) abort();
    try {
      for (;;) {
        // Nothing queued is handed out once the watch was aborted or the broker closed (the gate is checked below).
        let record = signal?.aborted || this.hub.closed ? undefined : queue.shift();
        if (record !== undefined) {
          // Queued while the reader was busy: its owner was let through then, but is checked again now.
          const refused = this.hub.refusal(owner);
          if (refused !== undefined) {
            this.hub.endOwner(owner!, refused);
            throw refused;
          }
        } else {
          if (!over) record = await new Promise<TokenRecord | undefined>((resolve) => (reader = resolve));
          if (record === undefined) {
            if (failed) throw failed.reason;
            return;
          }
        }
        yield record;
      }
    } finally {
      signal?.removeEventListener("abort", abort);
      subscription.close();
    }
  }

  /**
   * {@link watch} for servers with thousands of subscribers: the same records
   * in the same order, handed to `onRecord` as they are published (each
   * record is one object for all subscribers) instead of through an async
   * iterator, and no abort signal held per subscriber. `ended` resolves when
   * the subscription ends (`close()` or the broker closing) and rejects as
   * `watch` throws: before any record, or with the gate's reason when it
   * refuses `owner`. The delivery rules live here; {@link watch} is built on it.
   */
  subscribe(selector: Selector, onRecord: (record: TokenRecord) => void, owner?: string): TokenSubscription {
    let closed = false;
    let subscription: Subscription | undefined;
    // Made only if the first token has to wait for a refresh, and dropped once that wait is over: close() then
    // lets the subscriber go at once, as an aborted watch does, with no signal held for the stream's life.
    let firstWait: AbortController | undefined;
    const waiting = {
      get signal(): AbortSignal {
        firstWait ??= new AbortController();
        if (closed) firstWait.abort();
        return firstWait.signal;
      },
    };
    const ended = (async () => {
      const connectionId = await this.resolve(selector);
      if (closed) return;
      const sub = (subscription = this.hub.subscribe(connectionId, owner));
      let first: TokenRecord;
      try {
        const current = await this.current(connectionId);
        first = current.state === "active" ? await this.validToken(connectionId, this.defaultMinValidForMs, waiting) : current;
        const refused = this.hub.refusal(sub.owner);
        if (refused !== undefined) throw refused;
      } catch (e) {
        sub.close();
        if (closed) return; // closed while the first token was awaited: an end, not an error
        throw e;
      } finally {
        firstWait = undefined;
      }
      if (closed) {
        sub.close();
        return;
      }
      sub.delivered(first);
      onRecord(first);
      // Returned, not awaited: while it stays open, a subscriber holds its listener and nothing suspended.
      return new Promise<void>((resolve, reject) => {
        sub.listen(onRecord, (reason) => {
          sub.close();
          if (reason === undefined) resolve();
          else reject(reason);
        });
      });
    })();
    return {
      ended,
      close() {
        closed = true;
        firstWait?.abort();
        subscription?.end();
      },
    };
  }

  /** Connection ids asked for since `since` (ms), or watched now: the ones worth refreshing ahead of expiry. */
  inUse(since: number): Set<string> {
    const ids = new Set(this.hub.watched());
    for (const [id, at] of this.lastUsed) {
      if (at >= since) ids.add(id);
      else this.lastUsed.delete(id);
    }
    return ids;
  }

  /**
   * Ends every watch stream, starts no more upstream attempts, and waits for
   * running refreshes to be committed; with `deadline`, those still waiting
   * for the identity server when it aborts are abandoned (see {@link Refresher.drain}).
   */
  async close(deadline?: AbortSignal): Promise<void> {
    this.refresher.stop();
    this.hub.closeAll();
    await this.refresher.drain(deadline);
  }

  private async validToken(
    connectionId: string,
    minValidForMs: number,
    waiting: { readonly signal?: CancelSignal | undefined },
  ): Promise<TokenRecord> {
    const current = await this.current(connectionId);
    this.touch(connectionId);
    if (current.state !== "active") throw needsReauthorizationError(connectionId);
    const lifetime = current.expiresAt - current.obtainedAt;
    const needed = Math.min(Math.max(0, minValidForMs), lifetime / 2);
    const now = this.clock.now();
    if (current.expiresAt - now >= needed) return current;
    const refreshing = this.awaitRefresh(connectionId, "caller", current.version, waiting.signal);
    refreshing.catch(() => {}); // awaited below, unless the caller is served the stored token first
    try {
      // While the stored token is still valid, a slow or hanging upstream delays the caller by
      // at most validTokenWaitMs: then it gets the stored token, and the refresh goes on.
      const validForMs = current.expiresAt - now;
      if (validForMs > 0) {
        const refreshed = await within(refreshing, Math.min(this.validTokenWaitMs, validForMs));
        if (refreshed) return refreshed;
        if (current.expiresAt > this.clock.now()) return current;
      }
      return await refreshing;
    } catch (e) {
      // Upstream trouble (or a misconfigured client): a token that is still valid is better than none.
      const upstreamTrouble = isBrokerError(e, "unavailable") || isBrokerError(e, "misconfigured");
      if (upstreamTrouble && current.expiresAt > this.clock.now()) return current;
      throw e;
    }
  }

  /** A caller waits for a refresh (shared with every other caller of the moment); the wait is reported. */
  private async awaitRefresh(
    connectionId: string,
    cause: Extract<RefreshCause, "caller" | "report">,
    seenVersion: number,
    signal: CancelSignal | undefined,
  ): Promise<TokenRecord> {
    const started = performance.now();
    const waited = (outcome: "ok" | "error") =>
      this.onWait({ connectionId, cause, waitedMs: performance.now() - started, outcome });
    try {
      const record = await abortable(this.refresher.refresh(connectionId, cause, seenVersion), signal);
      waited("ok");
      return record;
    } catch (e) {
      waited("error");
      throw e;
    }
  }

  private async current(connectionId: string): Promise<TokenRecord> {
    return readStoredToken(this.store.tokens, connectionId);
  }

  private touch(connectionId: string): void {
    this.lastUsed.set(connectionId, this.clock.now());
  }
}

/** A subscription made by {@link TokenBroker.subscribe}. */
export interface TokenSubscription {
  /** Resolves when the subscription ended; rejects (before any record) if the token set cannot be watched. */
  readonly ended: Promise<void>;
  /** Ends the subscription (a first token still being fetched is not delivered). */
  close(): void;
}

/** Compares two tokens in constant time. */
function sameToken(a: string, b: string): boolean {
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb);
}
