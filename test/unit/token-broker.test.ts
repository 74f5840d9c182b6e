/**
 * TokenBroker on an in-memory store and identity server, on fake time: what a channel relies on when it asks for
 * a token, reports one rejected, or watches a token set.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { isBrokerError } from "../../src/errors.js";
import type { TokenRecord } from "../../src/token-set.js";
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

describe("GetToken", () => {
  it("serves the stored token while it is valid for the minimum (60 s): no upstream call", async () => {
    const stored = await f.store.getToken(f.connectionId);
    const tokens = await Promise.all(Array.from({ length: 100 }, () => f.broker.getToken(byTenant)));
    expect(new Set(tokens.map((t) => t.accessToken))).toEqual(new Set([stored!.accessToken]));
    f.clock.set(stored!.expiresAt - 60_000);
    expect((await f.broker.getToken({ connectionId: f.connectionId })).version).toBe(1);
    expect(f.identity.refreshCalls).toBe(0);

    f.clock.advance(1); // now valid for less than 60 s: refreshed
    const fresh = await f.broker.getToken(byTenant);
    expect(fresh.version).toBe(2);
    expect(fresh.accessToken).not.toBe(stored!.accessToken);
    expect(f.identity.refreshCalls).toBe(1);
  });

  it("500 concurrent callers of an expired token make exactly one upstream call and all get the one new token", async () => {
    await f.expire();
    f.identity.hold();
    const callers = Array.from({ length: 500 }, (_, i) => f.broker.getToken(i % 2 === 0 ? byTenant : { connectionId: f.connectionId }));
    await f.settle();
    expect(f.identity.waiting).toBe(1);
    f.identity.release();
    const tokens = await Promise.all(callers);
    expect(f.identity.refreshCalls).toBe(1);
    expect(new Set(tokens.map((t) => `${t.version}:${t.accessToken}`))).toEqual(new Set(["2:at-2"]));
    expect(f.store.counts.commits).toBe(1);
    expect(f.events.map((e) => `${e.cause}:${e.outcome}`)).toEqual(["caller:ok"]);
    expect(f.waits.filter((w) => w.outcome === "ok")).toHaveLength(500);

    // Once committed, the new token is served from the store.
    await Promise.all(Array.from({ length: 100 }, () => f.broker.getToken(byTenant)));
    expect(f.identity.refreshCalls).toBe(1);
  });

  it("two broker processes sharing the store, 300 callers each: one upstream call (the lease), everyone gets version 2", async () => {
    const b = f.process("process-b");
    await f.expire();
    f.identity.hold();
    const callers = [
      ...Array.from({ length: 300 }, () => f.broker.getToken(byTenant)),
      ...Array.from({ length: 300 }, () => b.broker.getToken(byTenant)),
    ];
    await f.settle();
    expect(f.identity.waiting).toBe(1);
    f.identity.release();
    await f.advance(100); // the process without the lease looks at it again every 50 ms
    const tokens = await Promise.all(callers);
    expect(f.identity.refreshCalls).toBe(1);
    expect(new Set(tokens.map((t) => t.version))).toEqual(new Set([2]));
    const outcomes = [...f.events, ...b.events].map((e) => e.outcome).sort();
    expect(outcomes).toEqual(["already_fresh", "ok"]);
    await b.broker.close();
  });

  it("a minimum validity beyond half the token's lifetime is capped there, so a fresh token qualifies", async () => {
    const token = await f.broker.getToken(byTenant, { minValidForMs: 24 * 60 * 60_000 });
    expect(token.version).toBe(1);
    expect(f.identity.refreshCalls).toBe(0);
    f.clock.advance(15 * 60_000 + 1); // past half of its 30 minutes
    expect((await f.broker.getToken(byTenant, { minValidForMs: 24 * 60 * 60_000 })).version).toBe(2);
  });

  it("a caller whose token is still valid, but for less than it asked, gets the stored token after 2 s while the upstream hangs", async () => {
    const stored = await f.store.getToken(f.connectionId);
    f.clock.set(stored!.expiresAt - 30_000);
    f.identity.hold();
    let served: TokenRecord | undefined;
    void f.broker.getToken(byTenant).then((t) => (served = t));
    await f.advance(1999);
    expect(served).toBeUndefined();
    await f.advance(1);
    expect(served?.version).toBe(1);
    expect(f.identity.refreshCalls).toBe(1);
    f.identity.release(); // the refresh went on and commits
    await f.settle();
    expect((await f.store.getToken(f.connectionId))?.version).toBe(2);
  });

  it("a still-valid token is served when every attempt fails; an expired one is UNAVAILABLE", async () => {
    const stored = await f.store.getToken(f.connectionId);
    f.clock.set(stored!.expiresAt - 30_000);
    f.identity.failNext(...transient(3));
    const served = f.broker.getToken(byTenant);
    await f.advance(1000);
    expect((await served).accessToken).toBe(stored!.accessToken);
    expect(f.identity.refreshCalls).toBe(3);

    await f.expire();
    f.identity.failNext(...transient(3));
    await f.advance(60_000); // past the cool-down
    const failed = f.broker.getToken(byTenant).catch((e: unknown) => e);
    await f.advance(1000);
    expect(isBrokerError(await failed, "unavailable")).toBe(true);
    expect(f.identity.refreshCalls).toBe(6);
  });
});

describe("ReportExpired", () => {
  it("200 reports of the current token make one refresh, and every reporter gets the one new token", async () => {
    const current = await f.broker.getToken(byTenant); // valid for 30 minutes: only the reports make it refresh
    f.identity.hold();
    const reports = Array.from({ length: 200 }, () => f.broker.reportExpired(byTenant, current.accessToken));
    await f.settle();
    f.identity.release();
    const answers = await Promise.all(reports);
    expect(f.identity.refreshCalls).toBe(1);
    expect(answers.every((a) => a.refreshed && a.token.version === 2 && a.token.accessToken === "at-2")).toBe(true);
    expect(f.events.map((e) => `${e.cause}:${e.outcome}`)).toEqual(["report:ok"]);
  });

  it("a report of a token already replaced refreshes nothing and returns the current token", async () => {
    const old = await f.broker.getToken(byTenant);
    await f.broker.reportExpired(byTenant, old.accessToken);
    expect(f.identity.refreshCalls).toBe(1);
    const late = await Promise.all(Array.from({ length: 50 }, () => f.broker.reportExpired(byTenant, old.accessToken)));
    expect(late.every((a) => !a.refreshed && a.token.version === 2)).toBe(true);
    expect(f.identity.refreshCalls).toBe(1);
  });

  it("a report of a token the broker never issued refreshes nothing", async () => {
    const answer = await f.broker.reportExpired(byTenant, "at-never-issued");
    expect(answer).toMatchObject({ refreshed: false, token: { version: 1 } });
    expect(f.identity.refreshCalls).toBe(0);
  });

  it("a report of an unknown tenant is NOT_FOUND and refreshes nothing", async () => {
    const error = await f.broker.reportExpired({ tenantId: "nobody" }, "at-1").catch((e: unknown) => e);
    expect(isBrokerError(error, "not_found")).toBe(true);
    expect(f.identity.refreshCalls).toBe(0);
  });
});

describe("invalid_grant", () => {
  it("marks the connection for re-authorisation once; no caller, report or scheduler pass calls upstream again", async () => {
    const seen: string[] = [];
    const sub = f.broker.subscribe(byTenant, (r) => seen.push(`${r.version}:${r.state}`));
    await f.settle();
    const current = await f.store.getToken(f.connectionId);
    f.identity.revokeToken(current!.refreshToken);
    await f.expire();

    const errors = await Promise.all(Array.from({ length: 100 }, () => f.broker.getToken(byTenant).catch((e: unknown) => e)));
    expect(errors.every((e) => isBrokerError(e, "needs_reauthorization"))).toBe(true);
    expect((errors[0] as Error).message).toMatch(/re-authorise/i);
    expect(f.identity.refreshCalls).toBe(1);
    expect((await f.store.getToken(f.connectionId))?.state).toBe("needs_reauthorization");
    expect(f.store.lease(f.connectionId)).toBeUndefined();

    const report = await f.broker.reportExpired(byTenant, current!.accessToken).catch((e: unknown) => e);
    expect(isBrokerError(report, "needs_reauthorization")).toBe(true);
    const scheduler = f.scheduler();
    for (let hour = 0; hour < 24 * 40; hour += 6) {
      await f.advance(6 * 60 * 60_000);
      await scheduler.tick(); // not even the 30-day keep-alive tries it again
      await f.broker.getToken(byTenant).catch(() => {});
    }
    expect(f.identity.refreshCalls).toBe(1);
    expect(f.events.map((e) => e.outcome)).toEqual(["invalid_grant"]);
    expect(seen).toEqual(["1:active", "1:needs_reauthorization"]);

    // A new consent of the same user makes it active again.
    await f.store.saveConnection({ xeroUserId: "user-1", tokenSet: f.identity.grant(), tenants: [] });
    expect((await f.broker.getToken(byTenant)).state).toBe("active");
    sub.close();
  });
});

describe.each([
  {
    name: "watch",
    open(broker: CoreFixture["broker"], onRecord: (r: TokenRecord) => void) {
      const stop = new AbortController();
      const done = (async () => {
        for await (const r of broker.watch(byTenant, stop.signal)) onRecord(r);
      })();
      return { close: () => stop.abort(), done };
    },
  },
  {
    name: "subscribe",
    open(broker: CoreFixture["broker"], onRecord: (r: TokenRecord) => void) {
      const sub = broker.subscribe(byTenant, onRecord);
      return { close: () => sub.close(), done: sub.ended };
    },
  },
])("$name", ({ open }) => {
  it("each of 200 watchers gets the current token, then every new version once, in order", async () => {
    const seen = Array.from({ length: 200 }, () => [] as number[]);
    const watchers = seen.map((mine) => open(f.broker, (r) => mine.push(r.version)));
    await f.settle();
    for (let i = 0; i < 3; i++) {
      const current = await f.store.getToken(f.connectionId);
      await f.broker.reportExpired(byTenant, current!.accessToken); // versions 2, 3, 4
    }
    // Published again (a scheduler pass that saw them, a slow store read): not delivered twice.
    f.broker.hub.publish((await f.store.getToken(f.connectionId))!);
    f.broker.hub.publish({ ...(await f.store.getToken(f.connectionId))!, version: 2 });
    // A refresh by another process reaches this one's watchers through its scheduler.
    const b = f.process("process-b");
    await f.expire();
    await b.broker.getToken(byTenant); // version 5
    const scheduler = f.scheduler();
    await scheduler.tick();
    await scheduler.tick();
    await f.settle();
    for (const w of watchers) w.close();
    await Promise.all(watchers.map((w) => w.done));
    expect(f.identity.refreshCalls).toBe(4);
    for (const mine of seen) expect(mine).toEqual([1, 2, 3, 4, 5]);
    await b.broker.close();
  });

  it("ends when the broker closes", async () => {
    const seen: number[] = [];
    const w = open(f.broker, (r) => seen.push(r.version));
    await f.settle();
    await f.broker.close();
    await w.done;
    expect(seen).toEqual([1]);
  });
});

/** `n` transient upstream errors (503). */
function transient(n: number): UpstreamError[] {
  return Array.from({ length: n }, () => new UpstreamError("transient", "refresh: HTTP 503"));
}
