/**
 * The quota keeper (createCallBudget) on a real store: first in first out per organisation, a caller who goes
 * away leaves the queue, an answer at once (the broker's 429) when the budget frees only after the longest
 * wait, Xero's remaining headers and 429 holds, and hundreds of real concurrent calls, on one store and on two
 * stores sharing a database (SQLite file and PostgreSQL), counted at a stand-in for Xero: never more in
 * flight nor more a minute than the limits.
 */
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { ManualClock, systemClock, type Clock } from "../src/clock.js";
import { type CallPermit, QuotaExceededError, type XeroResponseHead } from "../src/quota/call-budget.js";
import type { QuotaEvent } from "../src/quota/quota-events.js";
import { createCallBudget, type QuotaKeeper } from "../src/quota/quota-keeper.js";
import { openStore } from "../src/store/open-store.js";
import type { QuotaLimits } from "../src/store/quota-store.js";
import type { Store } from "../src/store/store.js";
import { useStoreBackends } from "./helpers/store-backends.js";

const backends = useStoreBackends();
const sqlite = backends[0]!;

const XERO: QuotaLimits = { inFlight: 5, perMinute: 60, perDay: 5000, appPerMinute: 10_000 };
const START = Date.UTC(2026, 11, 5, 10, 0, 0);

const opened: Array<Store | QuotaKeeper> = [];
afterEach(async () => {
  for (const o of opened.splice(0).reverse()) {
    if ("acquire" in o) {
      await o.idle();
      o.close();
    } else await o.close();
  }
});

async function keeperOn(
  location: string,
  options: { limits?: Partial<QuotaLimits>; maxWaitMs?: number; clock?: Clock } = {},
): Promise<{ keeper: QuotaKeeper; store: Store; events: QuotaEvent[] }> {
  const clock = options.clock ?? systemClock;
  const store = await openStore(location, { clock });
  opened.push(store);
  const keeper = createCallBudget({
    store: store.quota,
    limits: { ...XERO, ...options.limits },
    maxWaitMs: options.maxWaitMs ?? 10_000,
    clock,
    recheckMs: 5,
  });
  opened.push(keeper);
  const events: QuotaEvent[] = [];
  keeper.subscribe((e) => events.push(e));
  return { keeper, store, events };
}

/** A response of Xero's with these headers. */
function xero(status: number, headers: Record<string, string> = {}): XeroResponseHead {
  return { status, header: (name) => headers[name] };
}

/** Whether `promise` has settled, after letting pending work run for `ms`. */
async function settledWithin<T>(promise: Promise<T>, ms: number): Promise<boolean> {
  let settled = false;
  promise.then(
    () => (settled = true),
    () => (settled = true),
  );
  await delay(ms);
  return settled;
}

async function refusal(promise: Promise<unknown>): Promise<QuotaExceededError> {
  try {
    await promise;
  } catch (e) {
    if (e instanceof QuotaExceededError) return e;
    throw e;
  }
  throw new Error("expected a QuotaExceededError, but the call was allowed");
}

describe("quota keeper, one broker, a fake clock", () => {
  it("serves the callers of one organisation first in first out", async () => {
    const clock = new ManualClock(START);
    const { keeper } = await keeperOn(await sqlite.location(), { limits: { inFlight: 1 }, clock });
    const first = await keeper.acquire("org-a");
    const order: number[] = [];
    const waiting = Array.from({ length: 20 }, (_, i) =>
      keeper.acquire("org-a").then(async (permit) => {
        order.push(i);
        await delay(1);
        permit.release(xero(200));
      }),
    );
    expect(keeper.queued()).toBe(20);
    first.release(xero(200));
    await Promise.all(waiting);
    expect(order).toEqual(Array.from({ length: 20 }, (_, i) => i));
    expect(keeper.queued()).toBe(0);
  });

  it("lets a caller who goes away leave the queue: the next is served, its call is never counted", async () => {
    const clock = new ManualClock(START);
    const { keeper, events } = await keeperOn(await sqlite.location(), { limits: { inFlight: 1 }, clock });
    const first = await keeper.acquire("org-a");
    const gone = new AbortController();
    const leaving = keeper.acquire("org-a", gone.signal);
    const staying = keeper.acquire("org-a");
    expect(keeper.queued()).toBe(2);
    gone.abort(new Error("the channel hung up"));
    await expect(leaving).rejects.toThrow("the channel hung up");
    expect(keeper.queued()).toBe(1);
    first.release();
    (await staying).release();
    await keeper.idle();
    expect((await keeper.usage()).tenants[0]).toMatchObject({ tenantId: "org-a", minute: 2 });
    expect(events.map((e) => e.type)).toEqual(["granted", "abandoned", "granted"]);
  });

  it("answers at once, with when the minute frees, when that is after the longest wait; waits when it is sooner", async () => {
    const clock = new ManualClock(START);
    const { keeper, events } = await keeperOn(await sqlite.location(), { limits: { perMinute: 2 }, maxWaitMs: 10_000, clock });
    for (let i = 0; i < 2; i++) (await keeper.acquire("org-a")).release(xero(200));
    clock.set(START + 1000);
    const refused = await refusal(keeper.acquire("org-a"));
    expect(refused).toMatchObject({ limit: "minute", retryAfterMs: 61_000, heldByXero: false });
    expect(events.at(-1)).toMatchObject({ type: "refused", limit: "minute", waitedMs: 0 });
    clock.set(START + 55_000);
    const waiting = keeper.acquire("org-a");
    expect(await settledWithin(waiting, 30)).toBe(false);
    clock.set(START + 62_000);
    (await waiting).release();
    // Another organisation never waited for this one.
    (await keeper.acquire("org-b")).release();
  });

  it("waits for a call in flight to end until its longest wait, then answers 429 (concurrent)", async () => {
    const clock = new ManualClock(START);
    const { keeper } = await keeperOn(await sqlite.location(), { limits: { inFlight: 1 }, maxWaitMs: 1000, clock });
    const held = await keeper.acquire("org-a");
    const waiting = keeper.acquire("org-a");
    const behind = keeper.acquire("org-a");
    expect(await settledWithin(waiting, 30)).toBe(false);
    clock.advance(1000);
    expect(await refusal(waiting)).toMatchObject({ limit: "concurrent", retryAfterMs: 1000, heldByXero: false });
    expect(await refusal(behind)).toMatchObject({ limit: "concurrent" });
    held.release();
  });

  it("lowers the budget to what Xero's remaining headers say", async () => {
    const clock = new ManualClock(START);
    const { keeper } = await keeperOn(await sqlite.location(), { clock });
    (await keeper.acquire("org-a")).release(xero(200, { "x-minlimit-remaining": "2", "x-daylimit-remaining": "4990" }));
    await keeper.idle();
    for (let i = 0; i < 2; i++) (await keeper.acquire("org-a")).release(xero(200));
    expect(await refusal(keeper.acquire("org-a"))).toMatchObject({ limit: "minute", heldByXero: false });
    await keeper.idle();
    expect((await keeper.usage()).tenants[0]).toMatchObject({ minute: 60, day: 12, lastHour: expect.arrayContaining([3]) });
  });

  it("holds every channel's calls to an organisation on Xero's 429 until Retry-After, then lets them all go", async () => {
    const clock = new ManualClock(START);
    const { keeper, events } = await keeperOn(await sqlite.location(), { clock, maxWaitMs: 10_000, limits: { inFlight: 10 } });
    (await keeper.acquire("org-a")).release(xero(429, { "retry-after": "5", "x-rate-limit-problem": "minute" }));
    await keeper.idle();
    expect(events.at(-1)).toEqual({ type: "xero_429", tenantId: "org-a", limit: "minute" });
    const held = Array.from({ length: 10 }, () => keeper.acquire("org-a"));
    expect(await settledWithin(Promise.race(held), 30)).toBe(false);
    (await keeper.acquire("org-b")).release();
    clock.advance(5000);
    for (const permit of await Promise.all(held)) permit.release();

    // A hold longer than the wait: answered at once, as Xero's.
    (await keeper.acquire("org-a")).release(xero(429, { "retry-after": "30", "x-rate-limit-problem": "minute" }));
    await keeper.idle();
    expect(await refusal(keeper.acquire("org-a"))).toMatchObject({ limit: "minute", retryAfterMs: 30_000, heldByXero: true });
    // The app's minute holds every organisation.
    (await keeper.acquire("org-c")).release(xero(429, { "retry-after": "20", "x-rate-limit-problem": "AppMinute" }));
    await keeper.idle();
    expect(await refusal(keeper.acquire("org-d"))).toMatchObject({ limit: "app_minute", retryAfterMs: 20_000, heldByXero: true });
    expect(await refusal(keeper.acquire(undefined))).toMatchObject({ limit: "app_minute", heldByXero: true });
  });
});

describe.each(backends)("quota keeper on $name, real concurrency", (backend) => {
  describe.skipIf(backend.skip).each([1, 2])("%i broker(s) sharing the database", (brokers) => {
    it("lets 50 channels hammering one organisation through: never more than 5 in flight nor 20 a minute at Xero", async () => {
      const location = await backend.location();
      const keepers: QuotaKeeper[] = [];
      for (let b = 0; b < brokers; b++) {
        keepers.push((await keeperOn(location, { limits: { inFlight: 5, perMinute: 20 }, maxWaitMs: 2000 })).keeper);
      }
      // The stand-in for Xero counts what reaches it.
      let inFlight = 0;
      let most = 0;
      let reached = 0;
      const answers: Array<"200" | QuotaExceededError> = [];
      await Promise.all(
        Array.from({ length: 50 }, async (_, channel) => {
          const keeper = keepers[channel % brokers]!;
          for (let call = 0; call < 3; call++) {
            let permit: CallPermit;
            try {
              permit = await keeper.acquire("org-a");
            } catch (e) {
              if (!(e instanceof QuotaExceededError)) throw e;
              answers.push(e);
              continue;
            }
            inFlight++;
            reached++;
            most = Math.max(most, inFlight);
            await delay(5 + (channel % 7) * 3);
            inFlight--;
            answers.push("200");
            permit.release(xero(200));
          }
        }),
      );
      expect(answers).toHaveLength(150);
      expect(reached).toBe(20);
      expect(most).toBeLessThanOrEqual(5);
      expect(most).toBeGreaterThan(1);
      const refused = answers.filter((a) => a !== "200");
      expect(refused).toHaveLength(130);
      for (const r of refused) {
        expect(r.limit).toBe("minute");
        expect(r.retryAfterMs).toBeGreaterThanOrEqual(58_000);
      }
    });
  });
});
