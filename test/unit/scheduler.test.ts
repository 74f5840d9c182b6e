/**
 * The Scheduler on an in-memory store and identity server, on fake time: proactive renewal before expiry, the
 * 30-day keep-alive, recovery of a refresh interrupted by a crash, and stopping.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { Scheduler } from "../../src/broker/scheduler.js";
import type { TokenRecord } from "../../src/token-set.js";
import { startCore, TENANT, type CoreFixture } from "../helpers/core-fixture.js";

let f: CoreFixture;
let scheduler: Scheduler;
beforeEach(async () => {
  vi.useFakeTimers();
  f = await startCore();
  scheduler = f.scheduler();
});
afterEach(async () => {
  await scheduler.stop();
  await f.broker.close(AbortSignal.abort());
  vi.useRealTimers();
});

const byTenant = { tenantId: TENANT };
const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

async function expiresAt(f: CoreFixture): Promise<number> {
  return (await f.store.getToken(f.connectionId))!.expiresAt;
}

describe("proactive renewal", () => {
  it("refreshes a token set in use 5 minutes before it expires, not before, and its callers never wait", async () => {
    await f.broker.getToken(byTenant); // in use
    f.clock.set((await expiresAt(f)) - 5 * MINUTE - 1);
    await scheduler.tick();
    expect(f.identity.refreshCalls).toBe(0);
    f.clock.advance(1);
    await scheduler.tick();
    await f.settle();
    expect(f.identity.refreshCalls).toBe(1);
    expect(f.events).toMatchObject([{ cause: "proactive", outcome: "ok", version: 2 }]);
    expect((await f.broker.getToken(byTenant)).version).toBe(2);
    expect(f.waits).toEqual([]);
    await scheduler.tick(); // the new token is not due: no second refresh
    expect(f.identity.refreshCalls).toBe(1);
  });

  it("refreshes a short-lived token (60 s) at half its lifetime", async () => {
    const g = await startCore({ identity: { accessTokenLifetimeMs: 60_000 } });
    const s = g.scheduler();
    await g.broker.getToken(byTenant);
    g.clock.advance(29_999);
    await s.tick();
    expect(g.identity.refreshCalls).toBe(0);
    g.clock.advance(1);
    await s.tick();
    await g.settle();
    expect(g.identity.refreshCalls).toBe(1);
    for (let i = 0; i < 20; i++) await s.tick();
    expect(g.identity.refreshCalls).toBe(1);
    await g.broker.close();
  });

  it("start() renews on its own timer before expiry; after stop() nothing is refreshed", async () => {
    scheduler.start();
    await f.broker.getToken(byTenant);
    const due = (await expiresAt(f)) - 5 * MINUTE;
    await f.advance(due - f.clock.now() + 1000); // one interval past the due time
    expect(f.identity.refreshCalls).toBe(1);
    expect(f.events[0]?.cause).toBe("proactive");

    await f.advance(20 * MINUTE); // the new token (30 minutes from the refresh) is due in 25
    expect(f.identity.refreshCalls).toBe(1);
    await f.advance(5 * MINUTE + 1000);
    expect(f.identity.refreshCalls).toBe(2);

    await scheduler.stop();
    await f.broker.getToken(byTenant);
    f.clock.set((await expiresAt(f)) - MINUTE); // due, and in use
    await vi.advanceTimersByTimeAsync(10_000);
    expect(f.identity.refreshCalls).toBe(2);
  });

  it("a pass while a caller's refresh is in flight starts no second one", async () => {
    await f.expire();
    f.identity.hold();
    const waiting = f.broker.getToken(byTenant);
    await f.settle();
    await scheduler.tick();
    await scheduler.tick();
    expect(f.identity.refreshCalls).toBe(1);
    f.identity.release();
    expect((await waiting).version).toBe(2);
    await scheduler.tick();
    expect(f.identity.refreshCalls).toBe(1);
  });

  it("a clock that jumps hours ahead makes one refresh, not one per missed interval", async () => {
    scheduler.start();
    await f.broker.getToken(byTenant);
    f.clock.advance(5 * 60 * MINUTE);
    await f.advance(10_000);
    await f.broker.getToken(byTenant);
    expect(f.identity.refreshCalls).toBe(1);
  });
});

describe("keep-alive", () => {
  it("leaves an idle token set to expire, but refreshes it once its refresh token is 30 days old", async () => {
    f.clock.set((await expiresAt(f)) + MINUTE);
    await scheduler.tick();
    expect(f.identity.refreshCalls).toBe(0);
    f.clock.set(f.clock.now() + 30 * DAY - 32 * MINUTE);
    await scheduler.tick();
    expect(f.identity.refreshCalls).toBe(0);
    f.clock.advance(2 * MINUTE);
    await scheduler.tick();
    await f.settle();
    expect(f.events).toMatchObject([{ cause: "keepalive", outcome: "ok", version: 2 }]);
    await scheduler.tick();
    expect(f.identity.refreshCalls).toBe(1);
  });
});

describe("recovery after a crash", () => {
  /** A process took the lease and spent the refresh token, then died before it committed. */
  async function crashAfterAnswer(): Promise<string> {
    await f.store.tryAcquireLease(f.connectionId, "crashed-process", 30_000);
    const stored = await f.store.getToken(f.connectionId);
    const lost = await f.identity.refresh(stored!.refreshToken);
    return lost.accessToken;
  }

  it("a lapsed lease is found and the refresh finished with the same refresh token, inside the grace period", async () => {
    const lostAccessToken = await crashAfterAnswer();
    await scheduler.tick(); // the lease has not lapsed: the holder may still commit
    expect(f.identity.refreshCalls).toBe(1);
    f.clock.advance(30_000);
    await scheduler.tick();
    await f.settle();
    expect(f.identity.refreshCalls).toBe(2);
    expect(f.identity.graceViolations).toBe(0);
    expect(f.events).toMatchObject([{ cause: "recovery", outcome: "ok", version: 2 }]);
    const recovered = await f.broker.getToken(byTenant);
    expect(recovered.version).toBe(2);
    expect(recovered.accessToken).toBe(lostAccessToken); // the identity server answered the retry as before
    expect(f.store.lease(f.connectionId)).toBeUndefined();
  });

  it("a refresh found after the grace period ends in re-authorisation, once", async () => {
    await crashAfterAnswer();
    f.clock.advance(31 * MINUTE);
    await scheduler.tick();
    await f.settle();
    expect(f.identity.graceViolations).toBe(1);
    expect((await f.store.getToken(f.connectionId))?.state).toBe("needs_reauthorization");
    for (let i = 0; i < 10; i++) await scheduler.tick();
    expect(f.identity.refreshCalls).toBe(2);
  });

  it("a stopped refresher starts no recovery", async () => {
    await crashAfterAnswer();
    f.clock.advance(30_000);
    f.broker.refresher.stop();
    await scheduler.tick();
    await f.settle();
    expect(f.identity.refreshCalls).toBe(1);
  });
});

describe("watchers", () => {
  it("a refresh committed by another process reaches this process's watchers within the watch poll (250 ms), once", async () => {
    const seen: number[] = [];
    const sub = f.broker.subscribe(byTenant, (r) => seen.push(r.version));
    scheduler.start();
    await f.advance(1000);
    const b = f.process("process-b");
    const current = await f.store.getToken(f.connectionId);
    await b.broker.reportExpired(byTenant, current!.accessToken);
    expect(seen).toEqual([1]);
    await f.advance(250);
    expect(seen).toEqual([1, 2]);
    await f.advance(5000);
    expect(seen).toEqual([1, 2]);
    sub.close();
    await b.broker.close();
  });

  it("a poll that lists the new version before this process's read cache has it still delivers it, at the next poll", async () => {
    // A read cache not yet told of another process's commit (PostgreSQL: its notification still on the way)
    // answers the old record right after the listing showed the new version.
    let stale: TokenRecord | undefined;
    const tokens: ConstructorParameters<typeof Scheduler>[1] = {
      listTokenStates: () => f.store.listTokenStates(),
      listLapsedLeases: (now) => f.store.listLapsedLeases(now),
      getToken: async (id) => stale ?? f.store.getToken(id),
    };
    const s = new Scheduler(f.broker, tokens, f.clock);
    const seen: number[] = [];
    const sub = f.broker.subscribe(byTenant, (r) => seen.push(r.version));
    s.start();
    await f.advance(1000);
    stale = await f.store.getToken(f.connectionId);
    const b = f.process("process-b");
    await b.broker.reportExpired(byTenant, stale!.accessToken);
    await f.advance(250);
    expect(seen).toEqual([1]);
    stale = undefined; // the cache hears of the commit
    await f.advance(250);
    expect(seen).toEqual([1, 2]);
    sub.close();
    await s.stop();
    await b.broker.close();
  });
});
