/**
 * The quota part of the store (Store.quota), on SQLite and PostgreSQL alike: call-in-flight slots, counts per
 * minute, day and app minute, Xero's 429 holds, the counts Xero's remaining headers raise, a dead holder's slot
 * lapsing, and two stores on one database sharing it all. A ManualClock moves time; windows are checked at
 * their edges.
 */
import { randomUUID } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { openStore } from "../src/store/open-store.js";
import type { QuotaLimits } from "../src/store/quota-store.js";
import type { Store } from "../src/store/store.js";
import { useStoreBackends } from "./helpers/store-backends.js";

const backends = useStoreBackends();

const OPEN: QuotaLimits = { inFlight: 1000, perMinute: 1000, perDay: 100_000, appPerMinute: 100_000 };
// 10:00:00.000 UTC: second, minute and hour buckets all start here.
const START = Date.UTC(2026, 11, 5, 10, 0, 0);

describe.each(backends)("quota store on $name", (backend) => {
  const opened: Store[] = [];
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
  });
  const setup = async () => {
    const clock = new ManualClock(START);
    const location = await backend.location();
    const open = async () => {
      const s = await openStore(location, { clock });
      opened.push(s);
      return s;
    };
    return { clock, open, store: await open() };
  };
  const claim = (store: Store, tenantId: string | undefined, limits: Partial<QuotaLimits>, expiresAt: number, slotId = randomUUID()) =>
    store.quota.claim({ tenantId, slotId, slotExpiresAt: expiresAt, limits: { ...OPEN, ...limits } });

  describe.skipIf(backend.skip)("", () => {
    it("grants as many slots as calls may be in flight, refuses the next until one is released, and keeps organisations apart", async () => {
      const { clock, store } = await setup();
      const slots = [randomUUID(), randomUUID(), randomUUID()];
      for (const [i, slot] of slots.entries()) {
        expect(await claim(store, "org-a", { inFlight: 3 }, START + 60_000 + i, slot)).toEqual({ granted: true });
      }
      expect(await claim(store, "org-a", { inFlight: 3 }, START + 60_000)).toEqual({
        granted: false,
        limit: "concurrent",
        retryAt: START + 60_000,
        heldByXero: false,
      });
      expect(await claim(store, "org-b", { inFlight: 3 }, START + 60_000)).toEqual({ granted: true });
      await store.quota.release(slots[1]!);
      await store.quota.release(slots[1]!); // again: nothing
      clock.advance(10);
      expect(await claim(store, "org-a", { inFlight: 3 }, START + 60_000)).toEqual({ granted: true });
      expect((await claim(store, "org-a", { inFlight: 3 }, START + 60_000)).granted).toBe(false);
    });

    it("lets a dead holder's slot lapse at its expiry", async () => {
      const { clock, store } = await setup();
      expect(await claim(store, "org-a", { inFlight: 1 }, START + 5000)).toEqual({ granted: true });
      clock.set(START + 4999);
      expect(await claim(store, "org-a", { inFlight: 1 }, START + 10_000)).toMatchObject({ granted: false, limit: "concurrent" });
      clock.set(START + 5000);
      expect(await claim(store, "org-a", { inFlight: 1 }, START + 10_000)).toEqual({ granted: true });
    });

    it("counts calls in any 61 seconds: the minute's calls free 62 s after their second began", async () => {
      const { clock, store } = await setup();
      clock.set(START + 500);
      for (let i = 0; i < 2; i++) expect((await claim(store, "org-a", { perMinute: 3 }, START + 9e6)).granted).toBe(true);
      clock.set(START + 30_000);
      expect((await claim(store, "org-a", { perMinute: 3 }, START + 9e6)).granted).toBe(true);
      expect(await claim(store, "org-a", { perMinute: 3 }, START + 9e6)).toEqual({
        granted: false,
        limit: "minute",
        retryAt: START + 62_000,
        heldByXero: false,
      });
      // Slots were never released: the minute refuses, not the calls in flight.
      clock.set(START + 61_999);
      expect((await claim(store, "org-a", { perMinute: 3 }, START + 9e6)).granted).toBe(false);
      clock.set(START + 62_000);
      // Both calls of the first second left the window: two fit again.
      for (let i = 0; i < 2; i++) expect((await claim(store, "org-a", { perMinute: 3 }, START + 9e6)).granted).toBe(true);
      expect(await claim(store, "org-a", { perMinute: 3 }, START + 9e6)).toMatchObject({ limit: "minute", retryAt: START + 92_000 });
      expect((await claim(store, "org-b", { perMinute: 3 }, START + 9e6)).granted).toBe(true);
    });

    it("counts an organisation's day in hours, and the app's minute across organisations", async () => {
      const { clock, store } = await setup();
      clock.set(START + 10 * 60_000);
      expect((await claim(store, "org-a", { perDay: 2 }, START + 9e6)).granted).toBe(true);
      clock.set(START + 3 * 3_600_000);
      expect((await claim(store, "org-a", { perDay: 2 }, START + 9e6)).granted).toBe(true);
      expect(await claim(store, "org-a", { perDay: 2 }, START + 9e6)).toEqual({
        granted: false,
        limit: "day",
        retryAt: START + 25 * 3_600_000,
        heldByXero: false,
      });
      expect((await claim(store, "org-b", { appPerMinute: 3 }, START + 9e6)).granted).toBe(true);
      expect((await claim(store, undefined, { appPerMinute: 3 }, START + 9e6)).granted).toBe(true);
      expect(await claim(store, "org-c", { appPerMinute: 3 }, START + 9e6)).toMatchObject({ granted: false, limit: "app_minute" });
      expect(await claim(store, undefined, { appPerMinute: 3 }, START + 9e6)).toMatchObject({ granted: false, limit: "app_minute" });
    });

    it("holds an organisation, or the whole app, until Xero's Retry-After has passed", async () => {
      const { clock, store } = await setup();
      const slot = randomUUID();
      expect(await claim(store, "org-a", {}, START + 60_000, slot)).toEqual({ granted: true });
      await store.quota.release(slot, { tenantId: "org-a", limits: OPEN, hold: { limit: "minute", until: START + 30_000 } });
      expect(await claim(store, "org-a", {}, START + 60_000)).toEqual({
        granted: false,
        limit: "minute",
        retryAt: START + 30_000,
        heldByXero: true,
      });
      expect((await claim(store, "org-b", {}, START + 60_000)).granted).toBe(true);
      await store.quota.release(randomUUID(), { tenantId: "org-b", limits: OPEN, hold: { limit: "app_minute", until: START + 20_000 } });
      expect(await claim(store, "org-c", {}, START + 60_000)).toMatchObject({
        limit: "app_minute",
        retryAt: START + 20_000,
        heldByXero: true,
      });
      expect(await claim(store, undefined, {}, START + 60_000)).toMatchObject({ limit: "app_minute", heldByXero: true });
      clock.set(START + 20_000);
      expect((await claim(store, "org-c", {}, START + 60_000)).granted).toBe(true);
      expect((await claim(store, "org-a", {}, START + 60_000)).granted).toBe(false);
      clock.set(START + 30_000);
      expect((await claim(store, "org-a", {}, START + 60_000)).granted).toBe(true);
    });

    it("raises its counts to what Xero's remaining headers say, never lowers them", async () => {
      const { store } = await setup();
      const limits = { ...OPEN, perMinute: 60, perDay: 5000, appPerMinute: 10_000 };
      const slot = randomUUID();
      expect(await claim(store, "org-a", limits, START + 60_000, slot)).toEqual({ granted: true });
      await store.quota.release(slot, { tenantId: "org-a", limits, remaining: { minute: 10, day: 4000, appMinute: 9000 } });
      let usage = await store.quota.usage();
      expect(usage.tenants).toMatchObject([{ tenantId: "org-a", minute: 50, day: 1000 }]);
      expect(usage.tenants[0]!.lastHour.at(-1)).toBe(1); // calls made, not counted
      expect(usage.appMinute).toBe(1000);
      // More left than counted: nothing changes.
      await store.quota.release(randomUUID(), { tenantId: "org-a", limits, remaining: { minute: 59, day: 4999, appMinute: 9999 } });
      usage = await store.quota.usage();
      expect(usage.tenants[0]).toMatchObject({ minute: 50, day: 1000 });
      let granted = 0;
      while ((await claim(store, "org-a", limits, START + 60_000)).granted) granted++;
      expect(granted).toBe(10);
    });

    it("keeps an hour of calls a minute for the status page, and prunes what no window looks at", async () => {
      const { clock, store } = await setup();
      for (let minute = 0; minute < 90; minute++) {
        clock.set(START + minute * 60_000);
        for (let i = 0; i < minute % 4; i++) await claim(store, "org-a", {}, clock.now() + 1000);
      }
      const usage = await store.quota.usage();
      const lastHour = usage.tenants[0]!.lastHour;
      expect(lastHour).toHaveLength(61);
      expect(lastHour).toEqual(Array.from({ length: 61 }, (_, i) => (29 + i) % 4));
      expect(usage.tenants[0]!.day).toBe(Array.from({ length: 90 }, (_, m) => m % 4).reduce((a, b) => a + b, 0));
      await store.quota.prune();
      expect(await store.quota.usage()).toEqual(usage);
      clock.advance(25 * 3_600_000);
      await store.quota.prune();
      expect(await store.quota.usage()).toEqual({ tenants: [], appMinute: 0 });
    });

    it("shares slots, counts and holds between two stores on one database", async () => {
      const { open, store } = await setup();
      const other = await open();
      const limits = { inFlight: 2, perMinute: 3 };
      const first = randomUUID();
      expect((await claim(store, "org-a", limits, START + 60_000, first)).granted).toBe(true);
      expect((await claim(other, "org-a", limits, START + 60_000)).granted).toBe(true);
      expect(await claim(store, "org-a", limits, START + 60_000)).toMatchObject({ limit: "concurrent" });
      await other.quota.release(first);
      expect((await claim(store, "org-a", limits, START + 60_000)).granted).toBe(true);
      expect(await claim(other, "org-a", { perMinute: 3 }, START + 60_000)).toMatchObject({ limit: "minute" });
      await other.quota.release(randomUUID(), { tenantId: "org-b", limits: OPEN, hold: { limit: "day", until: START + 9e6 } });
      expect(await claim(store, "org-b", {}, START + 60_000)).toMatchObject({ limit: "day", heldByXero: true, retryAt: START + 9e6 });
      expect((await store.quota.usage()).tenants.map((t) => [t.tenantId, t.heldUntil])).toEqual([
        ["org-a", undefined],
        ["org-b", START + 9e6],
      ]);
    });
  });
});
