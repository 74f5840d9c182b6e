import type { QuotaLimit } from "../quota/call-budget.js";

/**
 * The budgets a claim is checked against (Xero's, or a smaller tier's).
 * `Infinity` turns one off.
 */
export interface QuotaLimits {
  /** Calls in flight per organisation (Xero: 5). */
  readonly inFlight: number;
  /** Calls per organisation in any minute (Xero: 60). */
  readonly perMinute: number;
  /** Calls per organisation in any day (Xero: 5,000; the Starter tier 1,000). */
  readonly perDay: number;
  /** Calls of the whole app, every organisation together, in any minute (Xero: 10,000). */
  readonly appPerMinute: number;
}

/** One call asking to start: see {@link QuotaStore.claim}. */
export interface QuotaClaim {
  /** The organisation called, or undefined for a call with none (`/connections`: the app's budget only). */
  readonly tenantId: string | undefined;
  /** Names the call-in-flight slot this claim takes, for {@link QuotaStore.release}: unique (a random UUID). */
  readonly slotId: string;
  /**
   * When the slot lapses if it is never released (its holder died): longer
   * than any call may take to get Xero's answer.
   */
  readonly slotExpiresAt: number;
  readonly limits: QuotaLimits;
}

/**
 * The answer to a claim: granted (the slot is taken and the call counted),
 * or which limit refused it and until when.
 */
export type QuotaAnswer = { readonly granted: true } | QuotaRefusal;

/** A claim refused: see {@link QuotaAnswer}. */
export interface QuotaRefusal {
  readonly granted: false;
  /** The limit that refused it (the one that frees last, when several do). */
  readonly limit: QuotaLimit;
  /**
   * The earliest time (ms, the store's clock) the claim can succeed as far
   * as the store can tell. For `concurrent` it is when the oldest slot
   * lapses: a slot released earlier frees it sooner.
   */
  readonly retryAt: number;
  /** True when Xero's own 429 holds the organisation or app until {@link retryAt}. */
  readonly heldByXero: boolean;
}

/** What Xero's answer to a call said, for {@link QuotaStore.release}. */
export interface QuotaFeedback {
  /** The organisation called, or undefined (app only). */
  readonly tenantId: string | undefined;
  readonly limits: QuotaLimits;
  /**
   * Xero's `X-MinLimit-Remaining`, `X-DayLimit-Remaining`,
   * `X-AppMinLimit-Remaining`: where one says fewer calls are left than
   * counted, the count is raised to match.
   */
  readonly remaining?: { readonly minute?: number; readonly day?: number; readonly appMinute?: number };
  /** Xero's 429: hold the organisation (or, for `app_minute`, the app) until `until` (ms). */
  readonly hold?: { readonly limit: QuotaLimit; readonly until: number };
}

/** The calls of one organisation, as the status page and the metrics show them. */
export interface TenantQuotaUsage {
  readonly tenantId: string;
  /** Calls counted in the minute window (with those Xero's headers said it counted besides). */
  readonly minute: number;
  /** Calls counted in the day window (likewise). */
  readonly day: number;
  /** Calls started in each of the last 60 whole minutes and the current one, oldest first (61 numbers). */
  readonly lastHour: readonly number[];
  /** Until when Xero's 429 holds it (ms), if it does. */
  readonly heldUntil?: number;
}

/** Every organisation's calls and the app's: see {@link QuotaStore.usage}. */
export interface QuotaUsage {
  /** Organisations with a call in the last day, or a hold. */
  readonly tenants: readonly TenantQuotaUsage[];
  /** The app's calls counted in the minute window. */
  readonly appMinute: number;
  /** Until when Xero's 429 holds the whole app (ms), if it does. */
  readonly appHeldUntil?: number;
}

/**
 * Xero's call limits as counted in the database, shared by every broker that
 * shares it (processes on one SQLite file, hosts on one PostgreSQL
 * database): calls in flight per organisation (slots, each lapsing at its
 * expiry if its holder dies), calls per organisation per minute and per
 * day, the app's calls per minute, Xero's 429 holds, and the counts Xero's
 * remaining headers raise.
 *
 * The windows slide, and are counted conservatively (see quota-windows.ts):
 * a minute is any 61 s, in one-second buckets; a day any 24 h, in one-hour
 * buckets (so up to 25 h). Each claim is one short transaction.
 */
export interface QuotaStore {
  /** Checks every budget the call draws on and, if all fit, takes a slot and counts the call: atomically. */
  claim(claim: QuotaClaim): Promise<QuotaAnswer>;
  /** Frees the slot (once; again does nothing) and learns from Xero's answer, in one transaction. */
  release(slotId: string, feedback?: QuotaFeedback): Promise<void>;
  /** The counts of every organisation with recent calls, for the status page and the metrics. */
  usage(): Promise<QuotaUsage>;
  /** Deletes what no window looks at any more: lapsed slots and holds, buckets older than a day (an hour for minutes). */
  prune(): Promise<void>;
}
