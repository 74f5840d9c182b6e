import type { Clock } from "../clock.js";
import type { StoreChange, StoreChanges } from "../store/store.js";
import type { TokenSetStore, TokenState } from "../store/token-set-store.js";
import type { RefreshCause } from "./refresh-events.js";
import type { TokenBroker } from "./token-broker.js";

/** Options for {@link Scheduler}. */
export interface SchedulerOptions {
  /** Refresh a token set in use this long before it expires, ms (default 5 minutes; never more than half the token's lifetime). */
  leadTimeMs?: number;
  /** A token set asked for within this window counts as in use, ms (default 1 hour). */
  inUseWindowMs?: number;
  /** Refresh an idle token set when its refresh token is this old, ms (default 30 days; Xero's die after 60). */
  keepAliveAfterMs?: number;
  /** How often {@link Scheduler.start} runs a tick, ms (default 1000). */
  intervalMs?: number;
  /** Between ticks, how often the token sets are checked for refreshes by other processes while this process has watchers, ms (default 250). */
  watchPollMs?: number;
  /**
   * The store's changes as they are committed by any process (`Store.changes`, PostgreSQL): each reaches this
   * process's watchers at once, instead of at the next poll. Polling stays, as the fallback.
   */
  changes?: StoreChanges;
  /** Called with errors of background refreshes (already reported as refresh events). */
  onError?: (error: unknown) => void;
  /** Called at each pass with every token set's state and the time: how notifications notice transitions. Must not throw. */
  onPass?: (states: readonly TokenState[], now: number) => void;
}

/**
 * The "producer": refreshes token sets in use shortly before they expire, so
 * callers rarely wait; keeps idle token sets alive before their refresh token
 * dies; finishes refreshes interrupted by a crash; and pushes refreshes made by
 * other processes to this process's watchers. Every refresh it starts is tied
 * to the version it saw, so it never adds a second refresh for one expiry.
 */
export class Scheduler {
  private readonly leadTimeMs: number;
  private readonly inUseWindowMs: number;
  private readonly keepAliveAfterMs: number;
  private readonly intervalMs: number;
  private readonly watchPollMs: number;
  private readonly onError: (error: unknown) => void;
  private readonly onPass: (states: readonly TokenState[], now: number) => void;
  private readonly seen = new Map<string, string>();
  private timer: NodeJS.Timeout | undefined;
  private watchTimer: NodeJS.Timeout | undefined;
  private pushing: Promise<void> | undefined;
  private ticking: Promise<void> | undefined;
  private readonly changes: StoreChanges | undefined;
  private unsubscribe: (() => void) | undefined;

  constructor(
    private readonly broker: TokenBroker,
    private readonly tokens: Pick<TokenSetStore, "listTokenStates" | "listLapsedLeases" | "getToken">,
    private readonly clock: Clock,
    options: SchedulerOptions = {},
  ) {
    this.leadTimeMs = options.leadTimeMs ?? 5 * 60_000;
    this.inUseWindowMs = options.inUseWindowMs ?? 60 * 60_000;
    this.keepAliveAfterMs = options.keepAliveAfterMs ?? 30 * 24 * 60 * 60_000;
    this.intervalMs = options.intervalMs ?? 1000;
    this.watchPollMs = options.watchPollMs ?? 250;
    this.onError = options.onError ?? (() => {});
    this.onPass = options.onPass ?? (() => {});
    this.changes = options.changes;
  }

  /** Runs {@link tick} every interval until {@link stop}. */
  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.tick(), this.intervalMs);
    this.timer.unref();
    this.watchTimer = setInterval(() => void this.pushToWatchers(), this.watchPollMs);
    this.watchTimer.unref();
    this.unsubscribe = this.changes?.subscribe((change) => this.onChange(change));
  }

  /**
   * Stops the timer and waits for a running tick. Refreshes it started are
   * drained by the broker; once the broker's refresher is stopped (shutdown),
   * a tick starts none.
   */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    clearInterval(this.watchTimer);
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.timer = undefined;
    this.watchTimer = undefined;
    await Promise.all([this.ticking, this.pushing]);
  }

  /** One pass over every token set. Overlapping calls share the running pass. */
  tick(): Promise<void> {
    this.ticking ??= this.pass().finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  /** When a token set in use is refreshed ahead of expiry (ms since the epoch). */
  refreshDueAt(t: Pick<TokenState, "expiresAt" | "obtainedAt">): number {
    const lifetime = t.expiresAt - t.obtainedAt;
    return t.expiresAt - Math.min(this.leadTimeMs, lifetime / 2);
  }

  private async pass(): Promise<void> {
    try {
      const now = this.clock.now();
      const inUse = this.broker.inUse(now - this.inUseWindowMs);
      const states = await this.tokens.listTokenStates();
      this.onPass(states, now);
      for (const t of states) {
        this.propagate(t);
        if (t.state !== "active" || this.broker.refresher.isRefreshing(t.connectionId)) continue;
        if (inUse.has(t.connectionId) && now >= this.refreshDueAt(t)) {
          this.launch(t, "proactive");
        } else if (now - t.refreshTokenIssuedAt >= this.keepAliveAfterMs) {
          this.launch(t, "keepalive");
        }
      }
      // The clock read again: a lease taken since `now` (while the states were read) is not one "in the future".
      for (const connectionId of await this.tokens.listLapsedLeases(this.clock.now())) {
        const t = states.find((s) => s.connectionId === connectionId);
        if (t && !this.broker.refresher.isRefreshing(connectionId)) this.launch(t, "recovery");
      }
    } catch (e) {
      this.onError(e);
    }
  }

  /** Between ticks: a refresh committed by another process reaches this process's watchers within {@link SchedulerOptions.watchPollMs}. */
  private pushToWatchers(): Promise<void> {
    if (this.broker.hub.size === 0) return Promise.resolve();
    this.pushing ??= this.tokens
      .listTokenStates()
      .then((states) => {
        for (const t of states) this.propagate(t);
      })
      .catch(this.onError)
      .finally(() => (this.pushing = undefined));
    return this.pushing;
  }

  /** A change told by the store: pushed to this process's watchers of that connection at once. */
  private onChange(change: StoreChange): void {
    if ("everything" in change) {
      void this.pushToWatchers();
      return;
    }
    const { connectionId } = change;
    if (this.broker.hub.count(connectionId) === 0) return;
    this.tokens
      .getToken(connectionId)
      .then((record) => {
        if (!record) return;
        const key = `${record.version}:${record.state}`;
        if (this.seen.get(connectionId) === key) return;
        this.seen.set(connectionId, key);
        this.broker.hub.publish(record);
      })
      .catch(this.onError);
  }

  private launch(t: TokenState, cause: RefreshCause): void {
    // Shutting down (the refresher is stopped): a pass that was reading the store then starts nothing.
    if (this.broker.refresher.stopped) return;
    this.broker.refresher.refresh(t.connectionId, cause, t.version).catch(this.onError);
  }

  /** A token set changed by another process reaches this process's watchers. */
  private propagate(t: TokenState): void {
    const key = `${t.version}:${t.state}`;
    if (this.seen.get(t.connectionId) === key) return;
    if (this.broker.hub.count(t.connectionId) === 0) {
      this.seen.set(t.connectionId, key);
      return;
    }
    // Subscriptions skip versions they have delivered, so pushing on the first pass is harmless.
    this.tokens
      .getToken(t.connectionId)
      .then((record) => {
        if (!record) return;
        // Seen only once read as new as listed: a read cache not yet told of the commit (PostgreSQL: its
        // notification still on the way) answers the old record, and the next poll must try again.
        if (record.version >= t.version) this.seen.set(t.connectionId, `${record.version}:${record.state}`);
        this.broker.hub.publish(record);
      })
      .catch(this.onError);
  }
}
