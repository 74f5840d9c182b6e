/**
 * Reading Xero's answer for the quota keeper: the remaining-call headers, and a 429's problem and
 * Retry-After (seconds or a date), with anything unreadable from the network ignored, never thrown.
 */
import { describe, expect, it } from "vitest";
import { feedbackOf, LONGEST_HOLD_MS, problemOf, retryAfterMs } from "../../src/quota/xero-feedback.js";

const limits = { inFlight: 5, perMinute: 60, perDay: 5000, appPerMinute: 10_000 };
const NOW = Date.UTC(2026, 11, 5, 12, 0, 0);
const head = (status: number, headers: Record<string, string>) => ({ status, header: (n: string) => headers[n] });

describe("feedbackOf", () => {
  it("reads the three remaining headers, and nothing from an answer without them", () => {
    expect(
      feedbackOf(
        head(200, { "x-minlimit-remaining": "12", "x-daylimit-remaining": "4000", "x-appminlimit-remaining": "9990" }),
        "t",
        limits,
        NOW,
      ),
    ).toEqual({ tenantId: "t", limits, remaining: { minute: 12, day: 4000, appMinute: 9990 } });
    expect(feedbackOf(head(200, {}), "t", limits, NOW)).toBeUndefined();
    expect(feedbackOf(head(200, { "x-minlimit-remaining": "-1", "x-daylimit-remaining": "1e3 " }), "t", limits, NOW)).toBeUndefined();
  });

  it("holds for Retry-After on a 429: seconds or a date, a minute when unreadable, two days at most", () => {
    expect(feedbackOf(head(429, { "retry-after": "7", "x-rate-limit-problem": "day" }), "t", limits, NOW)?.hold).toEqual({
      limit: "day",
      until: NOW + 7000,
    });
    const date = new Date(NOW + 30_000).toUTCString();
    expect(feedbackOf(head(429, { "retry-after": date }), "t", limits, NOW)?.hold).toEqual({ limit: "minute", until: NOW + 30_000 });
    expect(feedbackOf(head(429, { "retry-after": "soon" }), "t", limits, NOW)?.hold?.until).toBe(NOW + 60_000);
    expect(feedbackOf(head(429, { "retry-after": "999999999" }), "t", limits, NOW)?.hold?.until).toBe(NOW + LONGEST_HOLD_MS);
    expect(feedbackOf(head(503, { "retry-after": "7" }), "t", limits, NOW)).toBeUndefined();
  });
});

it("names Xero's problems, and reads an unknown one as the organisation's minute", () => {
  expect(["minute", "day", "concurrent", "appminute", "AppMinute", "app_minute", "???", undefined].map(problemOf)).toEqual([
    "minute",
    "day",
    "concurrent",
    "app_minute",
    "app_minute",
    "app_minute",
    "minute",
    "minute",
  ]);
  expect(retryAfterMs("x".repeat(100), NOW)).toBeUndefined();
});
