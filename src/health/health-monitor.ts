import type { Store } from "../store/store.js";

/** Whether the broker can do its job now, and if not, why (no secrets, no upstream text). */
export type Readiness = { ready: true } | { ready: false; reason: string };

/** Options for {@link createHealthMonitor}. */
export interface HealthMonitorOptions {
  /** The store whose `ping()` proves the database usable. */
  store: Pick<Store, "ping">;
  /** Why the upstream configuration is invalid right now (the refresher's `misconfiguration`), or undefined. */
  misconfiguration?: () => string | undefined;
  /** How often the state is re-checked while someone watches it, ms (default 1000). */
  pollMs?: number;
  /** A ping slower than this counts as a database failure, ms (default 2000). */
  pingTimeoutMs?: number;
}

/**
 * Knows whether the broker is serving: the database answers a ping, the
 * identity server accepts the broker's client credentials, and the server is
 * not shutting down. Read by the gRPC health service and `/readyz`.
 */
export interface HealthMonitor {
  /** True once {@link shutdown} was called. */
  readonly shuttingDown: boolean;
  /** Checks now (pings the store); watchers hear of a change. */
  check(): Promise<Readiness>;
  /**
   * The readiness now, then each change (checked every `pollMs` while
   * watched). After shutdown it yields "shutting down" once and ends; it also
   * ends when `signal` aborts.
   */
  watch(signal?: AbortSignal): AsyncGenerator<Readiness>;
  /** Resolves at shutdown, or when `signal` aborts. */
  untilShutdown(signal?: AbortSignal): Promise<void>;
  /** Not serving from now on: load balancers stop sending; watchers are told and their streams end. */
  shutdown(): void;
}

const SHUTTING_DOWN: Readiness = { ready: false, reason: "shutting down" };

/** Creates a {@link HealthMonitor}; it runs no timer until someone watches. */
export function createHealthMonitor(options: HealthMonitorOptions): HealthMonitor {
  const pollMs = options.pollMs ?? 1000;
  const pingTimeoutMs = options.pingTimeoutMs ?? 2000;
  let last: Readiness | undefined;
  /** Grows with every change of `last`, so a watcher cannot miss one. */
  let generation = 0;
  let shuttingDown = false;
  const wakers = new Set<() => void>();
  let timer: NodeJS.Timeout | undefined;

  const publish = (next: Readiness) => {
    if (last && same(last, next)) return;
    last = next;
    generation++;
    for (const wake of [...wakers]) wake();
  };

  /** The check running now: concurrent callers (probes, the poll) share one ping. */
  let running: Promise<Readiness> | undefined;
  const check = (): Promise<Readiness> => {
    if (shuttingDown) return Promise.resolve(SHUTTING_DOWN);
    running ??= evaluate().then((next) => {
      running = undefined;
      if (shuttingDown) return SHUTTING_DOWN;
      publish(next);
      return next;
    });
    return running;
  };

  const evaluate = async (): Promise<Readiness> => {
    try {
      await withTimeout(options.store.ping(), pingTimeoutMs);
    } catch {
      return { ready: false, reason: "database unavailable" };
    }
    if (options.misconfiguration?.() !== undefined) return { ready: false, reason: "invalid client credentials" };
    return { ready: true };
  };

  /** Resolves at the next change after `seen`, at shutdown, or when `signal` aborts. */
  const changeAfter = (seen: number, signal: AbortSignal | undefined) =>
    new Promise<void>((resolve) => {
      if (generation !== seen || shuttingDown || signal?.aborted) return resolve();
      const done = () => {
        wakers.delete(done);
        signal?.removeEventListener("abort", done);
        if (wakers.size === 0 && timer) {
          clearInterval(timer);
          timer = undefined;
        }
        resolve();
      };
      wakers.add(done);
      signal?.addEventListener("abort", done, { once: true });
      timer ??= setInterval(() => void check(), pollMs).unref();
    });

  return {
    get shuttingDown() {
      return shuttingDown;
    },
    check,
    async *watch(signal) {
      let current = await check();
      let seen = generation;
      yield current;
      while (!signal?.aborted) {
        if (shuttingDown) {
          if (!same(current, SHUTTING_DOWN)) yield SHUTTING_DOWN;
          return;
        }
        await changeAfter(seen, signal);
        seen = generation;
        const next = shuttingDown ? SHUTTING_DOWN : last;
        if (next && !same(next, current) && !signal?.aborted) {
          current = next;
          yield current;
        }
      }
    },
    async untilShutdown(signal) {
      while (!shuttingDown && !signal?.aborted) await changeAfter(generation, signal);
    },
    shutdown() {
      if (shuttingDown) return;
      shuttingDown = true;
      publish(SHUTTING_DOWN);
      for (const wake of [...wakers]) wake();
    },
  };
}

function same(a: Readiness, b: Readiness): boolean {
  return a.ready === b.ready && (a.ready || b.ready || a.reason === b.reason);
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
