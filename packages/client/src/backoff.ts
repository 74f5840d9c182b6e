/** How a dropped stream is reconnected: exponential backoff with jitter. */
export interface ReconnectOptions {
  /** Delay before the first reconnect attempt, ms (default 100). */
  initialDelayMs: number;
  /** Largest delay between attempts, ms (default 30 000). */
  maxDelayMs: number;
}

/** The defaults of {@link ReconnectOptions}. */
export const defaultReconnect: ReconnectOptions = { initialDelayMs: 100, maxDelayMs: 30_000 };

/**
 * The delay before reconnect attempt `attempt` (0 for the first): the base
 * doubles with each attempt up to `maxDelayMs`, and "equal jitter" picks a
 * random point in its upper half, so that many clients dropped at once by a
 * restarting broker do not all come back in the same millisecond.
 */
export function backoffDelay(attempt: number, options: ReconnectOptions, random: () => number = Math.random): number {
  const base = Math.min(options.maxDelayMs, options.initialDelayMs * 2 ** Math.min(attempt, 30));
  return base / 2 + random() * (base / 2);
}

/** Resolves after `ms`, or at once when `signal` aborts; the timer never outlives the abort. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}
