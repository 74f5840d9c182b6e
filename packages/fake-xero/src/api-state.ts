import { newAccountingBook, type AccountingBook } from "./accounting-data.js";
import { createRateLimiter, type RateLimiter, type XeroApiLimits } from "./rate-limits.js";

/** The accounting API's state: limits and their counts, response delay, each tenant's data. */
export interface ApiState {
  readonly limiter: RateLimiter;
  /** Delay before an admitted API call is answered, ms (it counts as in flight meanwhile). */
  latencyMs: number;
  /** Clock in ms. */
  readonly now: () => number;
  /** A tenant's data, created on first use. */
  bookOf(tenant: { tenantId: string; tenantName: string; tenantType: "ORGANISATION" | "PRACTICE" }): AccountingBook;
  /** A tenant's data if it was ever used. */
  existingBook(tenantId: string): AccountingBook | undefined;
}

/** Creates the API state with `limits` over Xero's defaults. */
export function createApiState(options: { limits: Partial<XeroApiLimits>; latencyMs: number; now: () => number }): ApiState {
  const books = new Map<string, AccountingBook>();
  return {
    limiter: createRateLimiter(options.limits, options.now),
    latencyMs: options.latencyMs,
    now: options.now,
    bookOf(tenant) {
      let book = books.get(tenant.tenantId);
      if (!book) {
        book = newAccountingBook(tenant.tenantId, tenant.tenantName, tenant.tenantType, options.now());
        books.set(tenant.tenantId, book);
      }
      return book;
    },
    existingBook(tenantId) {
      return books.get(tenantId);
    },
  };
}
