/**
 * What the Xero API proxy asks of the quota keeper before and after each call
 * it forwards. Xero limits each organisation (calls in flight, per minute, per
 * day) and each app (per minute); every channel calling one organisation
 * draws on the same budget, and only the broker sees them all.
 *
 * The proxy (`src/proxy`) calls {@link CallBudget.acquire} before it sends a
 * call to Xero and {@link CallPermit.release} once Xero's response headers
 * have arrived (or the call failed). The keeper (`src/quota`) implements it on
 * the store, so brokers sharing a database share the budgets. Nothing here
 * knows HTTP beyond a status and a header lookup.
 */
export interface CallBudget {
  /**
   * Waits, first in first out per organisation, until a call to `tenantId`
   * fits every budget (its organisation's calls in flight, per minute and per
   * day, and the app's per minute; `undefined` for a call with no
   * organisation, such as `/connections`: the app's budget only). Resolves
   * with a permit that holds one call-in-flight slot until released.
   *
   * Rejects with {@link QuotaExceededError} when the call cannot start within
   * the keeper's longest wait (`TOKENBROKER_QUOTA_WAIT_MS`), or when Xero's
   * own 429 holds the organisation or app for longer than that; the proxy
   * then answers 429 with `Retry-After` without calling Xero. Rejects with
   * `signal.reason` when the caller goes away while waiting (its place in the
   * queue is given up).
   */
  acquire(tenantId: string | undefined, signal?: AbortSignal): Promise<CallPermit>;
}

/** One call's hold on its budget, from {@link CallBudget.acquire}. */
export interface CallPermit {
  /**
   * Frees the call-in-flight slot. With Xero's response, the keeper also
   * learns from it: `X-MinLimit-Remaining`, `X-DayLimit-Remaining` and
   * `X-AppMinLimit-Remaining` lower its counts when they say less than it
   * counted, and a 429 holds every channel's calls to that organisation (or
   * the whole app, as `X-Rate-Limit-Problem` says) until `Retry-After` has
   * passed. Without a response (the call failed before Xero answered) only
   * the slot is freed. Calling it again does nothing.
   */
  release(response?: XeroResponseHead): void;
}

/** The part of Xero's response the keeper reads. */
export interface XeroResponseHead {
  status: number;
  /** A response header's value by lower-case name, or undefined. */
  header(name: string): string | undefined;
}

/** Which of Xero's limits held a call back. */
export type QuotaLimit = "concurrent" | "minute" | "day" | "app_minute";

/**
 * A call that cannot start soon enough: the proxy answers 429 with
 * `Retry-After: ceil(retryAfterMs / 1000)` and `X-Rate-Limit-Problem: limit`
 * (Xero's own spelling: `minute`, `day`, `concurrent`, `appminute`), without calling Xero.
 */
export class QuotaExceededError extends Error {
  override readonly name = "QuotaExceededError";
  constructor(
    /** Which limit. */
    readonly limit: QuotaLimit,
    /** When a call to this organisation may next start, ms from now (at least 1000). */
    readonly retryAfterMs: number,
    /** True when Xero's own 429 holds the calls (false: the broker's count). */
    readonly heldByXero: boolean,
  ) {
    super(`Xero's ${limit.replace("_", " ")} call limit: retry after ${Math.ceil(retryAfterMs / 1000)} s`);
  }
}

/** A budget that never waits: what the proxy uses when no keeper is configured (tests of forwarding alone). */
export const unlimitedBudget: CallBudget = {
  acquire: () => Promise.resolve({ release() {} }),
};
