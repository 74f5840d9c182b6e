import type { QuotaLimit } from "./call-budget.js";

/**
 * What the quota keeper tells its listeners (the metrics), one event per
 * acquire once it is settled, and one per 429 Xero sent. Never a token,
 * never a request: an organisation id, a limit, a time.
 */
export type QuotaEvent =
  /** A call may start, after waiting `waitedMs` in its organisation's queue. */
  | { type: "granted"; tenantId: string | undefined; waitedMs: number }
  /** The broker answered 429 itself: the call did not reach Xero ("a 429 avoided"). */
  | { type: "refused"; tenantId: string | undefined; waitedMs: number; limit: QuotaLimit; heldByXero: boolean }
  /** The caller went away while waiting. */
  | { type: "abandoned"; tenantId: string | undefined; waitedMs: number }
  /** Xero answered 429 (`limit` from its `X-Rate-Limit-Problem`). */
  | { type: "xero_429"; tenantId: string | undefined; limit: QuotaLimit };

/** Hears {@link QuotaEvent}s. */
export type QuotaListener = (event: QuotaEvent) => void;
