import { randomUUID } from "node:crypto";
import { systemClock, type Clock } from "../clock.js";
import { errorFields, silentLogger, type Logger } from "../logger.js";
import type { QuotaLimits, QuotaRefusal, QuotaStore, QuotaUsage } from "../store/quota-store.js";
import { type CallBudget, type CallPermit, QuotaExceededError, type XeroResponseHead } from "./call-budget.js";
import type { QuotaEvent, QuotaListener } from "./quota-events.js";
import { feedbackOf } from "./xero-feedback.js";

/** Options for {@link createCallBudget}. */
export interface CallBudgetOptions {
  /** Where the budgets are counted: `Store.quota`, shared by every broker on the database. */
  store: QuotaStore;
  /** Xero's limits for this app's tier (`TOKENBROKER_TENANT_CALLS_IN_FLIGHT`, `_PER_MINUTE`, `_PER_DAY`, `TOKENBROKER_APP_CALLS_PER_MINUTE`). */
  limits: QuotaLimits;
  /** The longest a call waits in its queue before the broker answers 429 itself, ms (`TOKENBROKER_QUOTA_WAIT_MS`). */
  maxWaitMs: number;
  clock?: Clock;
  /**
   * How often a queue waiting for calls in flight asks the store again, ms
   * (default 100): what notices a slot freed by another broker (this
   * broker's own releases are noticed at once). A queue waiting for a
   * count or a hold to pass asks when it passes, or every ten of these.
   */
  recheckMs?: number;
  /** How long a call-in-flight slot lasts if its holder dies without releasing it, ms (default 120 000). */
  slotTtlMs?: number;
  /** How often counts no window looks at any more are deleted, ms (default 60 000). */
  pruneEveryMs?: number;
  /** Hears of a store that failed to release or prune (never a token). */
  logger?: Logger;
}

/**
 * The quota keeper: a {@link CallBudget} on the store, with what the status
 * page and the metrics read of it.
 */
export interface QuotaKeeper extends CallBudget {
  /** The limits it keeps. */
  readonly limits: QuotaLimits;
  /** Calls waiting now, in every organisation's queue. */
  queued(): number;
  /** Every organisation's counts (shared by every broker on the store). */
  usage(): Promise<QuotaUsage>;
  /** Calls `listener` with each event from now on, until the returned function is called. */
  subscribe(listener: QuotaListener): () => void;
  /** Resolves once every release begun so far is written. */
  idle(): Promise<void>;
  /** Stops its timers and refuses the calls still waiting (the broker is stopping). */
  close(): void;
}

interface Waiter {
  readonly tenantId: string | undefined;
  readonly since: number;
  readonly deadline: number;
  readonly signal: AbortSignal | undefined;
  settled: boolean;
  resolve(permit: CallPermit): void;
  reject(e: unknown): void;
  onAbort?: () => void;
}

interface Queue {
  readonly tenantId: string | undefined;
  readonly waiters: Waiter[];
  /** A claim for the head is in flight. */
  running: boolean;
  /** A slot was freed during that claim: try again at once if it is refused. */
  again: boolean;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Creates the quota keeper: one first-in-first-out queue per organisation
 * (and one for calls with none); only the head of a queue asks the store,
 * again when this broker frees a slot of that organisation and every
 * `recheckMs` (slots freed, holds lifted elsewhere). A call whose
 * organisation cannot take it before its wait would end (a count that
 * frees later, or a 429 hold of Xero's that lasts longer) is refused at once
 * with the time it frees; one held back only by calls in flight waits until
 * its wait ends. Calls behind a head that is held longer than they may
 * wait are refused at once too. Fair within one broker; brokers sharing a
 * database take turns at the store, not in one queue.
 */
export function createCallBudget(options: CallBudgetOptions): QuotaKeeper {
  const { store, limits, maxWaitMs } = options;
  const clock = options.clock ?? systemClock;
  const recheckMs = options.recheckMs ?? 100;
  const slotTtlMs = options.slotTtlMs ?? 120_000;
  const logger = options.logger ?? silentLogger;
  const queues = new Map<string | undefined, Queue>();
  const listeners = new Set<QuotaListener>();
  const releasing = new Set<Promise<void>>();
  let closed = false;

  const emit = (event: QuotaEvent) => {
    for (const l of listeners) {
      try {
        l(event);
      } catch (e) {
        logger.error({ ...errorFields(e), event: "quota_listener_failed" }, "a quota listener threw");
      }
    }
  };

  const pruner = setInterval(() => {
    store.prune().catch((e: unknown) => logger.warn({ ...errorFields(e), event: "quota_prune_failed" }, "pruning call counts failed"));
  }, options.pruneEveryMs ?? 60_000);
  pruner.unref();

  const queueOf = (tenantId: string | undefined): Queue => {
    let q = queues.get(tenantId);
    if (!q) {
      q = { tenantId, waiters: [], running: false, again: false, timer: undefined };
      queues.set(tenantId, q);
    }
    return q;
  };

  /** Takes `w` out of its queue (settled: granted, refused, gone). */
  const leave = (q: Queue, w: Waiter) => {
    w.settled = true;
    if (w.onAbort) w.signal?.removeEventListener("abort", w.onAbort);
    const i = q.waiters.indexOf(w);
    if (i >= 0) q.waiters.splice(i, 1);
    if (q.waiters.length === 0 && !q.running) {
      if (q.timer) clearTimeout(q.timer);
      queues.delete(q.tenantId);
    }
  };

  const refuse = (q: Queue, w: Waiter, error: QuotaExceededError) => {
    leave(q, w);
    emit({ type: "refused", tenantId: w.tenantId, waitedMs: clock.now() - w.since, limit: error.limit, heldByXero: error.heldByXero });
    w.reject(error);
  };

  /** Refuses the waiters of `q` (from `from` on) who cannot be served before their wait ends, given the head's refusal. */
  const refuseHopeless = (q: Queue, refusal: QuotaRefusal, from: number) => {
    const now = clock.now();
    const known = refusal.limit !== "concurrent" || refusal.heldByXero;
    for (const w of q.waiters.slice(from)) {
      if ((known && refusal.retryAt > w.deadline) || now >= w.deadline) {
        refuse(q, w, new QuotaExceededError(refusal.limit, known ? Math.max(1000, refusal.retryAt - now) : 1000, refusal.heldByXero));
      }
    }
  };

  const permitFor = (tenantId: string | undefined, slotId: string): CallPermit => {
    let released = false;
    return {
      release(response?: XeroResponseHead) {
        if (released) return;
        released = true;
        const feedback = response ? feedbackOf(response, tenantId, limits, clock.now()) : undefined;
        if (feedback?.hold) emit({ type: "xero_429", tenantId, limit: feedback.hold.limit });
        const done: Promise<void> = store
          .release(slotId, feedback)
          .catch((e: unknown) => logger.warn({ ...errorFields(e), event: "quota_release_failed" }, "freeing a call slot failed"))
          .finally(() => {
            releasing.delete(done);
            const q = queues.get(tenantId);
            if (q) pump(q);
          });
        releasing.add(done);
      },
    };
  };

  /** Serves the head of `q` while the store grants; then waits for a release or the next recheck. */
  const pump = (q: Queue) => {
    if (q.running) {
      q.again = true;
      return;
    }
    if (q.timer) clearTimeout(q.timer);
    q.timer = undefined;
    q.running = true;
    let delay = recheckMs;
    void (async () => {
      try {
        while (q.waiters.length > 0 && !closed) {
          const w = q.waiters[0]!;
          const slotId = randomUUID();
          q.again = false;
          let answer: Awaited<ReturnType<QuotaStore["claim"]>>;
          try {
            answer = await store.claim({ tenantId: q.tenantId, slotId, slotExpiresAt: clock.now() + slotTtlMs, limits });
          } catch (e) {
            // The store failed (unreachable): this call fails with it; the next one asks again.
            if (!w.settled) {
              leave(q, w);
              w.reject(e);
            }
            continue;
          }
          if (w.settled) {
            // Gone while its claim was in flight: give the slot back (the call stays counted, the cautious way).
            if (answer.granted) permitFor(q.tenantId, slotId).release();
            continue;
          }
          if (answer.granted) {
            leave(q, w);
            emit({ type: "granted", tenantId: w.tenantId, waitedMs: clock.now() - w.since });
            w.resolve(permitFor(q.tenantId, slotId));
            continue;
          }
          refuseHopeless(q, answer, 0);
          if (q.waiters[0] !== w) continue; // the head was refused: the next one asks
          if (q.again) continue; // a slot was freed meanwhile
          // A count or a hold frees at a known time, nothing frees it sooner: ask then (at most every 10 rechecks meanwhile).
          if (answer.limit !== "concurrent" || answer.heldByXero) {
            delay = Math.min(Math.max(answer.retryAt - clock.now(), recheckMs), 10 * recheckMs);
          }
          break;
        }
      } finally {
        q.running = false;
        if (q.waiters.length === 0) queues.delete(q.tenantId);
        else if (!closed) {
          q.timer = setTimeout(() => pump(q), delay);
          q.timer.unref?.();
        }
      }
    })();
  };

  return {
    limits,
    acquire(tenantId, signal) {
      if (closed) return Promise.reject(new Error("the quota keeper is closed"));
      if (signal?.aborted) return Promise.reject(signal.reason);
      return new Promise<CallPermit>((resolve, reject) => {
        const since = clock.now();
        const q = queueOf(tenantId);
        const w: Waiter = { tenantId, since, deadline: since + maxWaitMs, signal, settled: false, resolve, reject };
        if (signal) {
          w.onAbort = () => {
            if (w.settled) return;
            const head = q.waiters[0] === w;
            leave(q, w);
            emit({ type: "abandoned", tenantId, waitedMs: clock.now() - since });
            reject(signal.reason);
            if (head && q.waiters.length > 0) pump(q); // the next one need not wait for the recheck
          };
          signal.addEventListener("abort", w.onAbort, { once: true });
        }
        q.waiters.push(w);
        // A queue already waiting keeps its order: the newcomer is served after the others.
        if (q.waiters.length === 1) pump(q);
      });
    },
    queued() {
      let n = 0;
      for (const q of queues.values()) n += q.waiters.length;
      return n;
    },
    usage: () => store.usage(),
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    async idle() {
      while (releasing.size > 0) await Promise.allSettled([...releasing]);
    },
    close() {
      closed = true;
      clearInterval(pruner);
      for (const q of [...queues.values()]) {
        if (q.timer) clearTimeout(q.timer);
        for (const w of [...q.waiters]) {
          leave(q, w);
          w.reject(new QuotaExceededError("concurrent", 1000, false));
        }
      }
      queues.clear();
    },
  };
}
