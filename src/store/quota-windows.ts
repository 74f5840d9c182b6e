/**
 * How the quota store counts Xero's windows, the same on every backend: the
 * rules of a claim, given the rows the backend read in its transaction.
 *
 * Xero does not say whether its minute is aligned to the clock or slides, so
 * the store keeps every window Xero might use under the limit: it counts
 * calls in one-second buckets and refuses a call when the current second
 * and the 61 before it (62 buckets: at least 61 s, any 60 s of Xero's plus
 * a second for the calls' travel) already hold `perMinute` calls. A day is
 * counted in one-hour buckets: the current hour and the 24 before it (so up
 * to 25 h). Both can only undercount what Xero allows, never overcount it.
 */
import type { QuotaLimit } from "../quota/call-budget.js";
import type { QuotaAnswer, QuotaLimits, TenantQuotaUsage } from "./quota-store.js";

/** A count per bucket: `s` one second, `m` one minute (kept an hour, for the status page), `h` one hour. */
export type BucketUnit = "s" | "m" | "h";

/** The length of a bucket of each unit, ms. */
export const BUCKET_MS: Readonly<Record<BucketUnit, number>> = { s: 1000, m: 60_000, h: 3_600_000 };

/** Buckets in a window: a minute is 62 one-second buckets, a day 25 one-hour buckets, an hour of history 61 minutes. */
export const WINDOW_BUCKETS: Readonly<Record<BucketUnit, number>> = { s: 62, m: 61, h: 25 };

/** The scope of the app's own budget in the tables. */
export const APP_SCOPE = "app";

/** The scope of an organisation's budgets in the tables. */
export function tenantScope(tenantId: string): string {
  return `tenant:${tenantId}`;
}

/** The organisation of a tenant scope, or undefined for the app's. */
export function tenantOfScope(scope: string): string | undefined {
  return scope.startsWith("tenant:") ? scope.slice(7) : undefined;
}

/** The start (ms) of the bucket of `unit` that holds `now`. */
export function bucketStart(unit: BucketUnit, now: number): number {
  return Math.floor(now / BUCKET_MS[unit]) * BUCKET_MS[unit];
}

/** The start (ms) of the oldest bucket of `unit` still in its window at `now`. */
export function windowStart(unit: BucketUnit, now: number): number {
  return bucketStart(unit, now) - (WINDOW_BUCKETS[unit] - 1) * BUCKET_MS[unit];
}

/** One bucket's count (calls started, plus those Xero said it counted besides). */
export interface Bucket {
  start: number;
  count: number;
}

/** A hold from Xero's 429. */
export interface Hold {
  scope: string;
  limit: QuotaLimit;
  until: number;
}

/** What a backend read, in the claim's transaction, for {@link decideClaim}. */
export interface ClaimState {
  now: number;
  limits: QuotaLimits;
  /** The claim names an organisation. */
  tenant: boolean;
  /** Holds in force on the organisation or the app. */
  holds: readonly Hold[];
  /** The organisation's live slots (not lapsed) and the earliest of their expiries. */
  slots: { count: number; firstExpiry: number | null };
  /** The organisation's second buckets in the minute window, and hour buckets in the day window. */
  seconds: readonly Bucket[];
  hours: readonly Bucket[];
  /** The app's second buckets in the minute window. */
  appSeconds: readonly Bucket[];
}

/**
 * Grants the claim, or says which limit refuses it until when: a hold first
 * (the latest); else the count that frees last (a call needs them all).
 */
export function decideClaim(s: ClaimState): QuotaAnswer {
  if (s.holds.length > 0) {
    const last = s.holds.reduce((a, b) => (b.until > a.until ? b : a));
    return { granted: false, limit: last.limit, retryAt: last.until, heldByXero: true };
  }
  const refusals: Array<{ limit: QuotaLimit; retryAt: number }> = [];
  const counted = (limit: QuotaLimit, buckets: readonly Bucket[], max: number, unit: BucketUnit) => {
    const at = fitsAt(buckets, max, unit);
    if (at !== undefined) refusals.push({ limit, retryAt: at });
  };
  if (s.tenant) {
    counted("minute", s.seconds, s.limits.perMinute, "s");
    counted("day", s.hours, s.limits.perDay, "h");
  }
  counted("app_minute", s.appSeconds, s.limits.appPerMinute, "s");
  if (s.tenant && s.slots.count >= s.limits.inFlight) {
    refusals.push({ limit: "concurrent", retryAt: s.slots.firstExpiry ?? Number.POSITIVE_INFINITY });
  }
  if (refusals.length === 0) return { granted: true };
  // A slot may free at any moment; a count frees at a known time: the latter decides when, if any.
  const counts = refusals.filter((r) => r.limit !== "concurrent");
  const last = (counts.length > 0 ? counts : refusals).reduce((a, b) => (b.retryAt > a.retryAt ? b : a));
  return { granted: false, limit: last.limit, retryAt: last.retryAt, heldByXero: false };
}

/**
 * When one more call fits under `max` in the window of `unit`, as the
 * oldest buckets leave it; undefined when it fits now.
 */
export function fitsAt(buckets: readonly Bucket[], max: number, unit: BucketUnit): number | undefined {
  if (max === Number.POSITIVE_INFINITY) return undefined;
  const total = buckets.reduce((sum, b) => sum + b.count, 0);
  const excess = total + 1 - max;
  if (excess <= 0) return undefined;
  const sorted = [...buckets].sort((a, b) => a.start - b.start);
  let left = 0;
  for (const b of sorted) {
    left += b.count;
    if (left >= excess) return b.start + WINDOW_BUCKETS[unit] * BUCKET_MS[unit];
  }
  return Number.POSITIVE_INFINITY; // max is 0 or less: never
}

/**
 * How many calls to add to the window's count so that what is left of
 * `max` is no more than Xero's `remaining` (never fewer: Xero's word only
 * lowers a budget).
 */
export function extraCalls(max: number, counted: number, remaining: number | undefined): number {
  if (remaining === undefined || !Number.isFinite(max) || !Number.isFinite(remaining)) return 0;
  return Math.max(0, Math.floor(max - counted - Math.max(0, remaining)));
}

/** The sum of the buckets' counts. */
export function total(buckets: readonly Bucket[]): number {
  return buckets.reduce((sum, b) => sum + b.count, 0);
}

/** A bucket row as {@link summarizeUsage} reads it: calls started and extra calls Xero said it counted. */
export interface UsageRow {
  scope: string;
  unit: BucketUnit;
  start: number;
  calls: number;
  extra: number;
}

/** Every organisation's counts from its rows in their windows, and the app's. */
export function summarizeUsage(
  now: number,
  rows: readonly UsageRow[],
  holds: readonly Hold[],
): { tenants: TenantQuotaUsage[]; appMinute: number; appHeldUntil?: number } {
  const byTenant = new Map<string, { minute: number; day: number; lastHour: number[]; heldUntil?: number }>();
  const entry = (tenantId: string) => {
    let e = byTenant.get(tenantId);
    if (!e) {
      e = { minute: 0, day: 0, lastHour: new Array<number>(WINDOW_BUCKETS.m).fill(0) };
      byTenant.set(tenantId, e);
    }
    return e;
  };
  let appMinute = 0;
  const firstMinute = windowStart("m", now);
  for (const r of rows) {
    if (r.start < windowStart(r.unit, now)) continue;
    const tenantId = tenantOfScope(r.scope);
    if (tenantId === undefined) {
      if (r.unit === "s") appMinute += r.calls + r.extra;
      continue;
    }
    const e = entry(tenantId);
    if (r.unit === "s") e.minute += r.calls + r.extra;
    else if (r.unit === "h") e.day += r.calls + r.extra;
    else {
      const i = Math.round((r.start - firstMinute) / BUCKET_MS.m);
      if (i >= 0 && i < e.lastHour.length) e.lastHour[i] = r.calls;
    }
  }
  let appHeldUntil: number | undefined;
  for (const h of holds) {
    if (h.until <= now) continue;
    const tenantId = tenantOfScope(h.scope);
    if (tenantId === undefined) appHeldUntil = Math.max(appHeldUntil ?? 0, h.until);
    else entry(tenantId).heldUntil = h.until;
  }
  const tenants = [...byTenant].map(([tenantId, e]) => ({ tenantId, ...e })).sort((a, b) => (a.tenantId < b.tenantId ? -1 : 1));
  return { tenants, appMinute, ...(appHeldUntil === undefined ? {} : { appHeldUntil }) };
}

/** The counts a release's feedback is compared with: the windows' sums now. */
export interface CountedNow {
  minute: number;
  day: number;
  appMinute: number;
}

/** A count to add to one bucket. */
export interface BucketWrite {
  scope: string;
  unit: BucketUnit;
  start: number;
  calls: number;
  extra: number;
}

/** The buckets a granted claim counts its call in: the organisation's second, minute and hour, and the app's second. */
export function claimWrites(tenantId: string | undefined, now: number): BucketWrite[] {
  const writes: BucketWrite[] = [{ scope: APP_SCOPE, unit: "s", start: bucketStart("s", now), calls: 1, extra: 0 }];
  if (tenantId !== undefined) {
    const scope = tenantScope(tenantId);
    for (const unit of ["s", "m", "h"] as const) writes.push({ scope, unit, start: bucketStart(unit, now), calls: 1, extra: 0 });
  }
  return writes;
}

/**
 * The extra calls Xero's remaining headers add to the current buckets,
 * where they say fewer calls are left than `counted` leaves.
 */
export function feedbackWrites(
  tenantId: string | undefined,
  limits: QuotaLimits,
  remaining: { minute?: number; day?: number; appMinute?: number },
  counted: CountedNow,
  now: number,
): BucketWrite[] {
  const writes: BucketWrite[] = [];
  const add = (scope: string, unit: BucketUnit, extra: number) => {
    if (extra > 0) writes.push({ scope, unit, start: bucketStart(unit, now), calls: 0, extra });
  };
  if (tenantId !== undefined) {
    add(tenantScope(tenantId), "s", extraCalls(limits.perMinute, counted.minute, remaining.minute));
    add(tenantScope(tenantId), "h", extraCalls(limits.perDay, counted.day, remaining.day));
  }
  add(APP_SCOPE, "s", extraCalls(limits.appPerMinute, counted.appMinute, remaining.appMinute));
  return writes;
}

/** The scope a 429 of `limit` holds: the app for `app_minute` (or a call with no organisation), else the organisation. */
export function holdScope(tenantId: string | undefined, limit: QuotaLimit): string {
  return limit === "app_minute" || tenantId === undefined ? APP_SCOPE : tenantScope(tenantId);
}

/** What {@link QuotaStore.prune} deletes: buckets of each unit that started before these times. */
export function pruneBefore(now: number): Readonly<Record<BucketUnit, number>> {
  return { s: windowStart("s", now), m: windowStart("m", now), h: windowStart("h", now) };
}
