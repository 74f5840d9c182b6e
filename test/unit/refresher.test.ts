/**
 * The Refresher on an in-memory store and identity server, on fake time: retries and back-off, Retry-After, the
 * cool-down, leases between processes, and shutdown (stop, drain with a deadline).
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { isBrokerError } from "../../src/errors.js";
import { UpstreamError } from "../../src/upstream/identity-server.js";
import { startCore, TENANT, type CoreFixture } from "../helpers/core-fixture.js";

let f: CoreFixture;
beforeEach(async () => {
  vi.useFakeTimers();
  f = await startCore();
});
afterEach(async () => {
  await f.broker.close(AbortSignal.abort());
  vi.useRealTimers();
});

const byTenant = { tenantId: TENANT };
const http503 = () => new UpstreamError("transient", "refresh: HTTP 503");

/** Starts a caller's GetToken whose outcome (token or error) can be read once settled. */
function caller(fixture: CoreFixture) {
  const outcome: { value?: unknown; settled: boolean } = { settled: false };
  void fixture.broker.getToken(byTenant).then(
    (t) => Object.assign(outcome, { value: t, settled: true }),
    (e: unknown) => Object.assign(outcome, { value: e, settled: true }),
  );
  return outcome;
}

describe("transient upstream errors", () => {
  it("are retried within one refresh with a growing back-off (125–250 ms, then 250–500 ms); every caller gets the one new token", async () => {
    const at: number[] = []; // when each attempt reached the identity server (fake time)
    const refresh = f.identity.refresh.bind(f.identity);
    vi.spyOn(f.identity, "refresh").mockImplementation((token, options) => {
      at.push(Date.now());
      return refresh(token, options);
    });
    await f.expire();
    f.identity.failNext(http503(), http503());
    const callers = Array.from({ length: 50 }, () => caller(f));
    await f.advance(1000);
    expect(at).toHaveLength(3);
    const [first, second, third] = at as [number, number, number];
    expect(second - first).toBeGreaterThanOrEqual(125);
    expect(second - first).toBeLessThanOrEqual(250);
    expect(third - second).toBeGreaterThanOrEqual(250);
    expect(third - second).toBeLessThanOrEqual(500);
    expect(callers.every((c) => c.settled && (c.value as { version: number }).version === 2)).toBe(true);
    expect(f.events).toMatchObject([{ outcome: "ok", attempts: 3, upstreamRefreshes: 1 }]);
    expect(f.store.counts.commits).toBe(1);
  });

  it("a Retry-After longer than the back-off is waited for before the next attempt", async () => {
    await f.expire();
    f.identity.failNext(new UpstreamError("transient", "refresh: HTTP 429", 1500));
    const c = caller(f);
    await f.advance(1499);
    expect(f.identity.refreshCalls).toBe(1);
    expect(c.settled).toBe(false);
    await f.advance(1);
    expect(f.identity.refreshCalls).toBe(2);
    expect(c).toMatchObject({ settled: true, value: { version: 2 } });
  });

  it("a Retry-After longer than half the lease ends the refresh at once and keeps later refreshes away that long", async () => {
    await f.expire();
    f.identity.failNext(new UpstreamError("transient", "refresh: HTTP 429", 120_000));
    const first = caller(f);
    await f.settle();
    expect(isBrokerError(first.value, "unavailable")).toBe(true);
    expect(f.identity.refreshCalls).toBe(1);
    for (let t = 0; t < 119; t++) {
      await f.advance(1000);
      const during = await f.broker.getToken(byTenant).catch((e: unknown) => e);
      expect(isBrokerError(during, "unavailable")).toBe(true);
    }
    expect(f.identity.refreshCalls).toBe(1);
    await f.advance(1000);
    expect((await f.broker.getToken(byTenant)).version).toBe(2);
    expect(f.identity.refreshCalls).toBe(2);
  });

  it("after 3 failed attempts: UNAVAILABLE, lease released, still active, a cool-down without upstream calls, then a refresh works", async () => {
    await f.expire();
    f.identity.failNext(http503(), http503(), http503(), http503());
    const first = caller(f);
    await f.advance(1000);
    expect(isBrokerError(first.value, "unavailable")).toBe(true);
    expect(f.identity.refreshCalls).toBe(3);
    expect(f.store.lease(f.connectionId)).toBeUndefined();
    expect((await f.store.getToken(f.connectionId))?.state).toBe("active");
    expect(f.store.lastError(f.connectionId)).toBe("refresh: HTTP 503");

    // The cool-down (500–1000 ms after the first failure): callers learn the last error, nothing is sent.
    const cooled = await f.broker.getToken(byTenant).catch((e: unknown) => e);
    expect(isBrokerError(cooled, "unavailable")).toBe(true);
    expect((cooled as Error).message).toMatch(/next attempt in/);
    expect(f.identity.refreshCalls).toBe(3);

    // After the cool-down the next caller's refresh tries again: one more 503, then, after the back-off, an answer.
    await f.advance(1000);
    const second = caller(f);
    await f.settle();
    expect(f.identity.refreshCalls).toBe(4);
    await f.advance(250);
    expect(second.settled).toBe(true);
    expect(f.identity.refreshCalls).toBe(5);
    expect((second.value as { version: number }).version).toBe(2);
  });

  it("invalid_client is MISCONFIGURED, not retried within the refresh, and the connection stays active", async () => {
    await f.expire();
    f.identity.failNext(new UpstreamError("invalid_client", "refresh: invalid_client"));
    const c = caller(f);
    await f.advance(1000);
    expect(isBrokerError(c.value, "misconfigured")).toBe(true);
    expect((c.value as Error).message).toMatch(/TOKENBROKER_CLIENT_SECRET/);
    expect(f.identity.refreshCalls).toBe(1);
    expect(f.broker.refresher.misconfiguration).toBe("refresh: invalid_client");
    expect((await f.store.getToken(f.connectionId))?.state).toBe("active");
  });
});

describe("leases between processes", () => {
  it("a process that stalled past its lease does not commit; the one that took over does, with the refresh token still in its grace period", async () => {
    const b = f.process("process-b");
    await f.expire();
    f.identity.hold();
    const stalled = caller(f);
    await f.settle();
    expect(f.store.lease(f.connectionId)?.holder).toBe("process-a");
    f.clock.advance(30_001); // the lease (30 s) lapses while process A waits for the identity server
    const taker = b.broker.getToken(byTenant);
    await f.settle();
    expect(f.store.lease(f.connectionId)?.holder).toBe("process-b");
    expect(f.identity.waiting).toBe(2);
    f.identity.release(); // A's answer first, then B's: both spent the same refresh token
    expect((await taker).version).toBe(2);
    await f.settle();
    expect(isBrokerError(stalled.value, "unavailable")).toBe(true);
    expect(f.identity.refreshes).toBe(2);
    expect(f.identity.graceViolations).toBe(0);
    expect(f.store.counts.commits).toBe(1);
    expect(f.events).toMatchObject([{ outcome: "transient_error", spentElsewhere: true, upstreamRefreshes: 1 }]);
    expect(b.events).toMatchObject([{ outcome: "ok", version: 2 }]);
    // The token B committed is the one A's process serves from now on, with no upstream call.
    expect((await f.broker.getToken(byTenant)).accessToken).toBe((await taker).accessToken);
    expect(f.identity.refreshCalls).toBe(2);
    await b.broker.close();
  });
});

describe("shutdown", () => {
  it("drain(deadline) abandons the request in flight when the deadline passes: its signal aborts, nothing is committed, the lease is released", async () => {
    await f.expire();
    f.identity.hold();
    const c = caller(f);
    await f.settle();
    const deadline = new AbortController();
    let drained = false;
    const closing = f.broker.close(deadline.signal).then(() => (drained = true));
    await f.advance(10_000);
    expect(drained).toBe(false); // a request in flight may still be answered until the deadline
    deadline.abort();
    await closing;
    expect(isBrokerError(c.value, "unavailable")).toBe(true);
    expect((c.value as Error).message).toMatch(/shutting down/);
    expect(f.identity.abandoned).toBe(1);
    expect(f.store.counts.commits).toBe(0);
    expect(f.store.lease(f.connectionId)).toBeUndefined();
    expect((await f.store.getToken(f.connectionId))?.version).toBe(1);
  });

  it("drain() without a deadline waits for the request in flight and commits its answer", async () => {
    await f.expire();
    f.identity.hold();
    const c = caller(f);
    await f.settle();
    let drained = false;
    const closing = f.broker.close().then(() => (drained = true));
    await f.settle();
    expect(drained).toBe(false);
    f.identity.release();
    await closing;
    expect(c.value).toMatchObject({ version: 2 });
    expect(f.store.counts.commits).toBe(1);
  });

  it("stop() during the back-off ends the refresh at once, with no further attempt, its lease released", async () => {
    await f.expire();
    f.identity.failNext(http503());
    const c = caller(f);
    await f.settle();
    expect(f.identity.refreshCalls).toBe(1);
    f.broker.refresher.stop();
    await f.settle(); // no time passes: the back-off is cut short
    expect(isBrokerError(c.value, "unavailable")).toBe(true);
    expect(f.store.lease(f.connectionId)).toBeUndefined();
    await f.advance(10_000);
    expect(f.identity.refreshCalls).toBe(1);
  });

  it("once stopped, no upstream attempt starts", async () => {
    await f.expire();
    f.broker.refresher.stop();
    const error = await f.broker.getToken(byTenant).catch((e: unknown) => e);
    expect(isBrokerError(error, "unavailable")).toBe(true);
    expect(f.identity.refreshCalls).toBe(0);
    expect(f.store.counts.leasesTaken).toBe(0);
  });
});
