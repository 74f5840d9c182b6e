import type { QuotaFeedback, QuotaLimits } from "../store/quota-store.js";
import type { QuotaLimit, XeroResponseHead } from "./call-budget.js";

/** Longest hold a `Retry-After` may ask for, ms: two days (Xero's day limit says tens of thousands of seconds). */
export const LONGEST_HOLD_MS = 2 * 86_400_000;

/** A hold when Xero's 429 has no readable `Retry-After`, ms: a minute (a day's 429 says its own). */
export const DEFAULT_HOLD_MS = 60_000;

/**
 * What the keeper learns from Xero's answer to a call: the remaining-call
 * headers, and for a 429 which limit (`X-Rate-Limit-Problem`) until when
 * (`Retry-After`, seconds or an HTTP date). Headers come from the network:
 * anything unreadable is ignored, never thrown; a 429 whose problem is not
 * known holds the organisation (the cautious reading).
 */
export function feedbackOf(
  response: XeroResponseHead,
  tenantId: string | undefined,
  limits: QuotaLimits,
  now: number,
): QuotaFeedback | undefined {
  const minute = count(response.header("x-minlimit-remaining"));
  const day = count(response.header("x-daylimit-remaining"));
  const appMinute = count(response.header("x-appminlimit-remaining"));
  const remaining = {
    ...(minute === undefined ? {} : { minute }),
    ...(day === undefined ? {} : { day }),
    ...(appMinute === undefined ? {} : { appMinute }),
  };
  const hasRemaining = minute !== undefined || day !== undefined || appMinute !== undefined;
  const hold = response.status === 429 ? holdOf(response, now) : undefined;
  if (!hasRemaining && !hold) return undefined;
  return { tenantId, limits, ...(hasRemaining ? { remaining } : {}), ...(hold ? { hold } : {}) };
}

/** The limit Xero's `X-Rate-Limit-Problem` names (Xero writes `minute`, `day`, `concurrent`, `appminute`). */
export function problemOf(text: string | undefined): QuotaLimit {
  switch (
    text
      ?.trim()
      .toLowerCase()
      .replace(/[\s_-]/g, "")
  ) {
    case "day":
      return "day";
    case "concurrent":
      return "concurrent";
    case "appminute":
      return "app_minute";
    default:
      return "minute";
  }
}

function holdOf(response: XeroResponseHead, now: number): { limit: QuotaLimit; until: number } {
  const ms = retryAfterMs(response.header("retry-after"), now) ?? DEFAULT_HOLD_MS;
  return { limit: problemOf(response.header("x-rate-limit-problem")), until: now + Math.min(Math.max(ms, 0), LONGEST_HOLD_MS) };
}

/** `Retry-After` as ms from `now`: delay-seconds or an HTTP date; undefined when neither. */
export function retryAfterMs(text: string | undefined, now: number): number | undefined {
  if (text === undefined) return undefined;
  const t = text.trim();
  if (/^\d{1,9}$/.test(t)) return Number(t) * 1000;
  if (t.length > 64) return undefined;
  const at = Date.parse(t);
  return Number.isNaN(at) ? undefined : at - now;
}

function count(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const t = text.trim();
  return /^\d{1,9}$/.test(t) ? Number(t) : undefined;
}
