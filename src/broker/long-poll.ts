import type { TokenRecord } from "../token-set.js";
import type { CancelSignal } from "./abortable.js";
import { SharedDeadlines, type Expiring } from "./shared-deadlines.js";
import type { Subscription, WatchHub } from "./watch-hub.js";

/** The longest wait of a long poll, ms: below every idle timeout between a channel and the broker that is worth having. */
export const MAX_LONG_POLL_WAIT_MS = 60_000;

/** What a long poll asks: wait while the stored version is `newerThan`, for at most `waitMs`. */
export interface LongPollOptions {
  /** The version the caller holds. */
  newerThan: number;
  /** How long to wait at most, ms (at most {@link MAX_LONG_POLL_WAIT_MS}). */
  waitMs: number;
  /** Ends the wait with its reason (the caller went away, or its deadline passed). */
  signal?: CancelSignal | undefined;
  /** Whoever asks, for the hub's gate: a revoked key ends its waits as it ends its streams. */
  owner?: string | undefined;
}

/**
 * Long polls on the {@link WatchHub}: a wait is a hub subscription, as a
 * WatchToken stream is, so it hears the same publishes (this process's
 * refreshes, and those of other processes the scheduler pushes), and the
 * same gate and shutdown end it. Every wait's deadline is on one shared
 * timer; nothing polls.
 */
export class LongPolls {
  private readonly deadlines = new SharedDeadlines<Waiter>();

  constructor(private readonly hub: WatchHub) {}

  /**
   * Resolves when the connection's stored record is no longer `newerThan`
   * (at once if it is not now), its state changes, the wait runs out, or the
   * hub shuts down; rejects with the signal's reason when the caller goes
   * away, and with the gate's reason when it refuses the owner. `read` reads
   * the stored record; it is called once, after subscribing, so that nothing
   * published in between is missed.
   */
  async wait(connectionId: string, read: () => Promise<TokenRecord>, options: LongPollOptions): Promise<void> {
    const { signal } = options;
    if (signal?.aborted) throw signal.reason;
    const sub = this.hub.subscribe(connectionId, options.owner);
    let current: TokenRecord;
    try {
      current = await read();
    } catch (e) {
      sub.close();
      throw e;
    }
    if (current.state !== "active" || current.version !== options.newerThan || signal?.aborted) {
      sub.close();
      if (signal?.aborted) throw signal.reason;
      return;
    }
    sub.delivered(current); // anything newer, queued since subscribing or published later, ends the wait
    return new Promise<void>((resolve, reject) => {
      const waiter = new Waiter(sub, this.deadlines, signal, resolve, reject);
      waiter.slot = this.deadlines.add(waiter, options.waitMs);
      signal?.addEventListener("abort", waiter.onAbort, { once: true });
      sub.listen(waiter.onRecord, waiter.onEnd);
    });
  }

  /** Number of long polls waiting now. */
  get waiting(): number {
    return this.deadlines.size;
  }
}

/** One waiting long poll: what it holds until it is answered. */
class Waiter implements Expiring {
  slot = 0;
  private over = false;
  readonly onRecord = () => this.finish(undefined);
  readonly onEnd = (reason: unknown) => this.finish(reason === undefined ? undefined : { reason });
  readonly onAbort = () => this.finish({ reason: this.signal!.reason });

  constructor(
    private readonly sub: Subscription,
    private readonly deadlines: SharedDeadlines<Waiter>,
    private readonly signal: CancelSignal | undefined,
    private readonly resolve: () => void,
    private readonly reject: (e: unknown) => void,
  ) {}

  expire(): void {
    this.finish(undefined);
  }

  private finish(failure: { reason: unknown } | undefined): void {
    if (this.over) return;
    this.over = true;
    this.deadlines.delete(this, this.slot);
    this.signal?.removeEventListener("abort", this.onAbort);
    this.sub.close();
    if (failure) this.reject(failure.reason);
    else this.resolve();
  }
}
