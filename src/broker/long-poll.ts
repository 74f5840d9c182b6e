import type { TokenRecord } from "../token-set.js";
import type { CancelSignal } from "./abortable.js";
import { SharedDeadlines, type Expiring } from "./shared-deadlines.js";
import type { Subscription, SubscriptionListener, WatchHub } from "./watch-hub.js";

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
  /** True for a stored record that must be answered at once although its version is `newerThan` (it will not stay valid long enough). */
  answerNow?: ((current: TokenRecord) => boolean) | undefined;
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
   * hub shuts down: with the record that ended the wait (undefined when it
   * ran out or the hub shut down); rejects with the signal's reason when the caller goes
   * away, and with the gate's reason when it refuses the owner. `read` reads
   * the stored record; it is called once, after subscribing, so that nothing
   * published in between is missed.
   */
  wait(connectionId: string, read: () => Promise<TokenRecord>, options: LongPollOptions): Promise<TokenRecord | undefined> {
    const { signal } = options;
    if (signal?.aborted) return Promise.reject(signal.reason);
    const sub = this.hub.subscribe(connectionId, options.owner);
    // One promise and callbacks, not an async function: ten thousand waits hold no suspended frames.
    return new Promise<TokenRecord | undefined>((resolve, reject) => {
      read().then(
        (current) => {
          if (signal?.aborted) {
            sub.close();
            return reject(signal.reason);
          }
          if (current.state !== "active" || current.version !== options.newerThan || options.answerNow?.(current)) {
            sub.close();
            return resolve(current);
          }
          sub.delivered(current); // anything newer, queued since subscribing or published later, ends the wait
          const waiter = new Waiter(sub, this.deadlines, signal, resolve, reject);
          waiter.slot = this.deadlines.add(waiter, options.waitMs);
          if (signal) {
            waiter.onAbort = () => waiter.finish({ reason: signal.reason });
            signal.addEventListener("abort", waiter.onAbort, { once: true });
          }
          sub.attach(waiter);
        },
        (e: unknown) => {
          sub.close();
          reject(e);
        },
      );
    });
  }

  /** Number of long polls waiting now. */
  get waiting(): number {
    return this.deadlines.size;
  }
}

/** One waiting long poll: what it holds until it is answered (its methods hear the subscription). */
class Waiter implements Expiring, SubscriptionListener {
  slot = 0;
  onAbort: (() => void) | undefined;
  private over = false;

  constructor(
    private readonly sub: Subscription,
    private readonly deadlines: SharedDeadlines<Waiter>,
    private readonly signal: CancelSignal | undefined,
    private readonly resolve: (record: TokenRecord | undefined) => void,
    private readonly reject: (e: unknown) => void,
  ) {}

  /** A newer record, or a change of state: the wait is over. */
  onRecord(record: TokenRecord): void {
    this.finish(undefined, record);
  }

  /** The subscription ended: the hub shut down (the wait is over), or the gate refused the owner (it fails). */
  onEnd(reason: unknown): void {
    this.finish(reason === undefined ? undefined : { reason });
  }

  expire(): void {
    this.finish(undefined);
  }

  finish(failure: { reason: unknown } | undefined, record?: TokenRecord): void {
    if (this.over) return;
    this.over = true;
    this.deadlines.delete(this, this.slot);
    if (this.onAbort) this.signal?.removeEventListener("abort", this.onAbort);
    this.sub.close();
    if (failure) this.reject(failure.reason);
    else this.resolve(record);
  }
}
