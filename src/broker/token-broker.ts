import { createHash, timingSafeEqual } from "node:crypto";
import { systemClock, type Clock } from "../clock.js";
import { BrokerError, isBrokerError, needsReauthorizationError, tenantRemovedError } from "../errors.js";
import type { Store } from "../store/store.js";
import { readStoredToken } from "./stored-token.js";
import type { TokenRecord } from "../token-set.js";
import type { IdentityServer } from "../upstream/identity-server.js";
import { abortable, within, type CancelSignal } from "./abortable.js";
import { LongPolls } from "./long-poll.js";
import type { RefreshCause, RefreshListener, RefreshWaitListener } from "./refresh-events.js";
import { Refresher, type RefresherOptions } from "./refresher.js";
import { WatchHub, type Subscription, type WatchGate } from "./watch-hub.js";

/** Names a token set: exactly one of a tenant id or a connection id. */
export type Selector = { tenantId: string } | { connectionId: string };

/** Options for {@link TokenBroker.getToken}. */
export interface GetTokenOptions {
  /** How long the token must stay valid, ms (default {@link TokenBrokerOptions.defaultMinValidForMs}). */
  minValidForMs?: number | undefined;
  /**
   * Long poll: the version of the token the caller holds. While the stored
   * version is this one (and the connection active), the call first waits up
   * to `waitMs` for a newer token or a change of state.
   */
  newerThan?: number | undefined;
  /** Long poll: how long to wait, ms (at most `MAX_LONG_POLL_WAIT_MS`; 0 or unset: no wait). */
  waitMs?: number | undefined;
  /** Ends any wait (for a refresh, or a long poll's) with its reason: the caller went away or its deadline passed. */
  signal?: CancelSignal | undefined;
  /** Whoever asks (e.g. the hash of an API key): a long poll of an owner the gate refuses ends with the gate's reason. */
  owner?: string | undefined;
}

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
  /** GetToken calls waiting for a newer token (long polls), on the hub. */
  readonly longPolls: LongPolls;
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
    this.longPolls = new LongPolls(this.hub);
    this.refresher = new Refresher(options.store, options.identity, this.hub, this.clock, options.onRefresh, options.refresher);
  }

  /** The connection id a selector names; `not_found` for an unknown tenant (an unknown connection id fails at the read that follows). */
  async resolve(selector: Selector): Promise<string> {
    if ("tenantId" in selector) {
      const id = await this.store.connections.findConnectionByTenant(selector.tenantId);
      if (id === undefined) {
        // Only on a miss: a tenant Xero stopped listing is told apart from one never connected.
        const removed = await this.store.connections.findRemovedTenant(selector.tenantId);
        throw removed ? tenantRemovedError(removed) : new BrokerError("not_found", `tenant ${selector.tenantId} is not connected`);
      }
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
   *
   * With `newerThan` and `waitMs` (a long poll), it first waits while the
   * stored version is `newerThan`: until a newer token is stored, the state
   * changes (then it fails as GetToken fails: needs re-authorisation), or
   * `waitMs` runs out; then it answers as above. The wait is a hub
   * subscription (see {@link LongPolls}); `signal` ends it.
   */
  async getToken(selector: Selector, options: GetTokenOptions = {}): Promise<TokenRecord> {
    const connectionId = await this.resolve(selector);
    const { newerThan, waitMs } = options;
    if (newerThan !== undefined && waitMs !== undefined && waitMs > 0) {
      this.touch(connectionId);
      // Returned, not awaited: a waiting long poll holds no suspended frame of this function.
      const minValidForMs = options.minValidForMs ?? this.defaultMinValidForMs;
      // A stored token that will not stay valid long enough is refreshed at once, not after the wait.
      const answerNow = (current: TokenRecord) => !this.qualifies(current, minValidForMs);
      return this.longPolls
        .wait(connectionId, () => this.current(connectionId), {
          newerThan,
          waitMs,
          signal: options.signal,
          owner: options.owner,
          answerNow,
        })
        .then((record) => this.validToken(connectionId, minValidForMs, options, record));
    }
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
    if (current.state !== "active") throw needsReauthorizationError(connectionId, current.custom);
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
   * The pulling side of {@link subscribe}, on the same first delivery and the
   * same hub subscription: the same records under the same rules. A record
   * published while the reader is busy waits in a queue of its own, and its
   * owner is checked with the gate again when it is taken.
   */
  async *watch(selector: Selector, signal?: AbortSignal, owner?: string): AsyncGenerator<TokenRecord> {
    const handle = new BrokerSubscription();
    const abort = () => handle.close();
    signal?.addEventListener("abort", abort, { once: true });
    if (signal?.aborted) abort();
    try {
      let first: TokenRecord | undefined;
      const sub = await this.deliverFirst(selector, (record) => (first = record), owner, handle);
      if (!sub || !first) return;
      yield first;
      // One small object of state, one callback for records and one for the end: what each watcher holds.
      const pull: Pull = { queue: undefined, reader: undefined, over: false, failure: undefined };
      sub.listen(
        (record) => hand(pull, record),
        (reason) => {
          sub.close();
          end(pull, reason === undefined ? undefined : { reason });
        },
      );
      for (;;) {
        // Nothing queued is handed out once the watch was aborted or the broker closed (the gate is checked below).
        let record = signal?.aborted || this.hub.closed ? undefined : pull.queue?.shift();
        if (record !== undefined) {
          // Queued while the reader was busy: its owner was let through then, but is checked again now.
          const refused = this.hub.refusal(owner);
          if (refused !== undefined) {
            this.hub.endOwner(owner!, refused);
            throw refused;
          }
        } else {
          if (!pull.over) record = await new Promise<TokenRecord | undefined>((resolve) => (pull.reader = resolve));
          if (record === undefined) {
            if (pull.failure) throw pull.failure.reason;
            return;
          }
        }
        yield record;
      }
    } finally {
      signal?.removeEventListener("abort", abort);
      handle.close();
      handle.subscription?.close();
    }
  }

  /**
   * {@link watch} for servers with thousands of subscribers: the same records
   * in the same order, handed to `onRecord` as they are published (each
   * record is one object for all subscribers) instead of through an async
   * iterator, and no abort signal held per subscriber. `ended` resolves when
   * the subscription ends (`close()` or the broker closing) and rejects as
   * `watch` throws: before any record, or with the gate's reason when it
   * refuses `owner`. The delivery rules live here (the first record) and in
   * the hub (the rest); {@link watch} pulls from the same two.
   */
  subscribe(selector: Selector, onRecord: (record: TokenRecord) => void, owner?: string): TokenSubscription {
    const handle = new BrokerSubscription();
    handle.ended = new Promise<void>((resolve, reject) => {
      this.deliverFirst(selector, onRecord, owner, handle).then((sub) => {
        if (!sub) return resolve();
        // While it stays open, a subscriber holds its listener and nothing suspended.
        sub.listen(onRecord, (reason) => {
          sub.close();
          if (reason === undefined) resolve();
          else reject(reason);
        });
      }, reject);
    });
    return handle;
  }

  /**
   * The first record of a subscription: subscribes to the hub, reads (or
   * refreshes) the token, asks the gate, and hands the record to `onRecord`.
   * Returns the hub's subscription, or undefined if `handle` was closed first.
   */
  private async deliverFirst(
    selector: Selector,
    onRecord: (record: TokenRecord) => void,
    owner: string | undefined,
    handle: BrokerSubscription,
  ): Promise<Subscription | undefined> {
    const connectionId = await this.resolve(selector);
    if (handle.closed) return undefined;
    const sub = this.hub.subscribe(connectionId, owner, "tenantId" in selector ? selector.tenantId : undefined);
    handle.subscription = sub;
    let first: TokenRecord;
    try {
      const current = await this.current(connectionId);
      first = current.state === "active" ? await this.validToken(connectionId, this.defaultMinValidForMs, handle) : current;
      const refused = this.hub.refusal(sub.owner);
      if (refused !== undefined) throw refused;
    } catch (e) {
      sub.close();
      if (handle.closed) return undefined; // closed while the first token was awaited: an end, not an error
      throw e;
    } finally {
      handle.firstWait = undefined;
    }
    if (handle.closed) {
      sub.close();
      return undefined;
    }
    sub.delivered(first);
    onRecord(first);
    return sub;
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
    /** The stored record, if the caller has just been handed it (a long poll woken by its publish): no second read. */
    stored?: TokenRecord,
  ): Promise<TokenRecord> {
    const current = stored ?? (await this.current(connectionId));
    this.touch(connectionId);
    if (current.state !== "active") throw needsReauthorizationError(connectionId, current.custom);
    if (this.qualifies(current, minValidForMs)) return current;
    const now = this.clock.now();
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

  /** Whether `record` stays valid for `minValidForMs` (capped at half its lifetime, so that a fresh token always does). */
  private qualifies(record: TokenRecord, minValidForMs: number): boolean {
    const needed = Math.min(Math.max(0, minValidForMs), (record.expiresAt - record.obtainedAt) / 2);
    return record.expiresAt - this.clock.now() >= needed;
  }

  /** A caller waits for a refresh (shared with every other caller of the moment); the wait is reported. */
  private async awaitRefresh(
    connectionId: string,
    cause: Extract<RefreshCause, "caller" | "report">,
    seenVersion: number,
    signal: CancelSignal | undefined,
  ): Promise<TokenRecord> {
    const started = performance.now();
    const waited = (outcome: "ok" | "error") => this.onWait({ connectionId, cause, waitedMs: performance.now() - started, outcome });
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

/**
 * A subscription made by {@link TokenBroker.subscribe}: a class, so that
 * each of thousands of subscribers holds a few fields and shares its methods.
 */
class BrokerSubscription implements TokenSubscription {
  ended!: Promise<void>;
  /** Set by close(). */
  closed = false;
  /** The hub's subscription, once made. */
  subscription: Subscription | undefined;
  /**
   * Made only if the first token has to wait for a refresh, and dropped once that wait is over: close() then
   * lets the subscriber go at once, as an aborted watch does, with no signal held for the stream's life.
   */
  firstWait: AbortController | undefined;

  /** What the first token's wait for a refresh obeys. */
  get signal(): AbortSignal {
    this.firstWait ??= new AbortController();
    if (this.closed) this.firstWait.abort();
    return this.firstWait.signal;
  }

  close(): void {
    this.closed = true;
    this.firstWait?.abort();
    this.subscription?.end();
  }
}

/** What {@link TokenBroker.watch} holds between its reader and its subscription. */
interface Pull {
  /** Records published while the reader was busy (made at the first). */
  queue: TokenRecord[] | undefined;
  /** The reader waiting for the next record, if it is waiting. */
  reader: ((record: TokenRecord | undefined) => void) | undefined;
  /** The subscription ended (`failure`: with an error). */
  over: boolean;
  failure: { reason: unknown } | undefined;
}

/** A record for the reader: to it at once if it waits, else queued. */
function hand(pull: Pull, record: TokenRecord | undefined): void {
  const reader = pull.reader;
  if (reader) {
    pull.reader = undefined;
    reader(record);
  } else if (record !== undefined) {
    pull.queue ??= [];
    pull.queue.push(record);
  }
}

/** The subscription ended: a waiting reader wakes to the end. */
function end(pull: Pull, failure: { reason: unknown } | undefined): void {
  pull.over = true;
  pull.failure = failure;
  hand(pull, undefined);
}

/** Compares two tokens in constant time. */
function sameToken(a: string, b: string): boolean {
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb);
}
