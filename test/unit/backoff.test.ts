/** The server's retry delays (refresh retries, the cool-down, webhook deliveries): doubling, capped, equal jitter. */
import { describe, expect, it } from "vitest";
import { backoffDelay } from "../../src/broker/backoff.js";

describe("backoffDelay", () => {
  it("doubles from the initial delay, each delay between half and all of its base", () => {
    const lowest = Array.from({ length: 5 }, (_, i) => backoffDelay(i, 100, undefined, () => 0));
    const highest = Array.from({ length: 5 }, (_, i) => backoffDelay(i, 100, undefined, () => 1));
    expect(lowest).toEqual([50, 100, 200, 400, 800]);
    expect(highest).toEqual([100, 200, 400, 800, 1600]);
  });

  it("stops growing at the cap, also after very many attempts", () => {
    expect(backoffDelay(3, 5_000, 60_000, () => 1)).toBe(40_000);
    expect(backoffDelay(4, 5_000, 60_000, () => 1)).toBe(60_000);
    expect(backoffDelay(4, 5_000, 60_000, () => 0)).toBe(30_000);
    expect(backoffDelay(10_000, 5_000, 60_000, () => 1)).toBe(60_000);
    expect(Number.isFinite(backoffDelay(10_000, 250))).toBe(true);
  });
});
