import type { BenchSelector, GetTokenCall } from "./clients.js";

/** Options for {@link runClosedLoop}. */
export interface ClosedLoopOptions {
  /** Callers, each sending its next request as soon as the last one is answered. */
  concurrency: number;
  /** How long to measure, ms (after the warm-up). */
  durationMs: number;
  /** Unmeasured requests before, ms. */
  warmupMs: number;
  /** Token sets asked for, in turn. */
  selectors: BenchSelector[];
  /** Ask for every selector once before the warm-up (a broker in service has seen all its tenants). */
  primeAll?: boolean;
}

/** What a closed-loop run measured. */
export interface ClosedLoopResult {
  /** Latency of every answered request in the measured window, ms. */
  samples: Float64Array;
  /** Failed requests (any error); the bench reports them, they should be 0. */
  errors: number;
  /** Length of the measured window, ms. */
  durationMs: number;
}

/**
 * Closed-loop load: `concurrency` callers each send GetToken, wait for the
 * answer, and send the next one. Latency is measured per request from send to
 * answer; throughput is answers per second in the measured window.
 */
export async function runClosedLoop(call: GetTokenCall, options: ClosedLoopOptions): Promise<ClosedLoopResult> {
  if (options.primeAll) await primeAll(call, options);
  await phase(call, options, options.warmupMs, undefined);
  const latencies: number[] = [];
  const started = performance.now();
  const errors = await phase(call, options, options.durationMs, latencies);
  const durationMs = performance.now() - started;
  return { samples: Float64Array.from(latencies), errors, durationMs };
}

/** Every selector asked for once, by `concurrency` callers. */
async function primeAll(call: GetTokenCall, options: ClosedLoopOptions): Promise<void> {
  let next = 0;
  const caller = async () => {
    while (next < options.selectors.length) await call(options.selectors[next++]!).catch(() => {});
  };
  await Promise.all(Array.from({ length: options.concurrency }, caller));
}

async function phase(call: GetTokenCall, options: ClosedLoopOptions, ms: number, latencies: number[] | undefined): Promise<number> {
  const end = performance.now() + ms;
  const selectors = options.selectors;
  let next = 0;
  let errors = 0;
  const caller = async () => {
    while (performance.now() < end) {
      const selector = selectors[next++ % selectors.length]!;
      const t0 = performance.now();
      try {
        await call(selector);
        latencies?.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, caller));
  return errors;
}
