/**
 * The token logic's part of a bounded shutdown ({@link TokenBroker.close}): no upstream attempt starts once it
 * began, a refresh in flight may commit until the deadline, and one the identity server never answers is
 * abandoned at the deadline, whatever the identity server does, with its lease released.
 */
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import type { RefreshEvent } from "../src/broker/refresh-events.js";
import { TokenBroker } from "../src/broker/token-broker.js";
import { ManualClock } from "../src/clock.js";
import { isBrokerError } from "../src/errors.js";
import { openSqliteStore } from "../src/store/sqlite-store.js";
import type { Store } from "../src/store/store.js";
import { UpstreamError, type IdentityServer, type ObtainedTokenSet } from "../src/upstream/identity-server.js";
import { tempDir } from "./helpers/broker-fixture.js";
import { until } from "./helpers/serve-process.js";
import { taggedTokenSet } from "./helpers/token-sets.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** How the stub identity server answers each `refresh` call, in order. */
type Answer = "hang" | "hang-ignoring-abort" | "transient" | { afterMs: number };

/** A broker core on a real SQLite file with one connection whose access token has expired. */
async function setUp(answers: Answer[]) {
  const dir = tempDir();
  const clock = new ManualClock();
  const store: Store = openSqliteStore({ path: join(dir.path, "t.db"), clock });
  const calls: Array<{ signal: AbortSignal | undefined }> = [];
  const obtained = (tag: string): ObtainedTokenSet => ({
    ...tokenSet(clock, tag),
    xeroUserId: "user-1",
    authEventId: undefined,
    userName: undefined,
  });
  const identity: IdentityServer = {
    refresh(_refreshToken, options = {}) {
      const answer = answers[calls.length] ?? "hang";
      calls.push({ signal: options.signal });
      if (answer === "hang-ignoring-abort") return new Promise(() => {});
      if (answer === "transient") return Promise.reject(new UpstreamError("transient", "refresh: HTTP 503"));
      return new Promise((resolve, reject) => {
        const timer = answer === "hang" ? undefined : setTimeout(() => resolve(obtained(`new-${calls.length}`)), answer.afterMs);
        options.signal?.addEventListener("abort", () => {
          clearTimeout(timer);
          reject(new UpstreamError("transient", "refresh: abandoned"));
        });
      });
    },
    clientCredentials: () => Promise.reject(new Error("not used")),
    listConnections: () => Promise.resolve([]),
    authorizationUrl: () => Promise.reject(new Error("not used")),
    exchangeCode: () => Promise.reject(new Error("not used")),
    revoke: () => Promise.resolve(),
    deleteConnection: () => Promise.resolve(true),
  };
  const events: RefreshEvent[] = [];
  const broker = new TokenBroker({
    store,
    identity,
    clock,
    onRefresh: (e) => events.push(e),
    // A long back-off between attempts: a shutdown during it must not wait for it.
    refresher: { retryBaseMs: 4000, leaseTtlMs: 30_000 },
  });
  const { connectionId } = await store.connections.saveConnection({ xeroUserId: "user-1", tokenSet: tokenSet(clock, "old"), tenants: [] });
  clock.advance(31 * 60_000); // the stored access token (30 minutes) has expired
  cleanups.push(async () => {
    await broker.close(AbortSignal.timeout(0));
    await store.close();
    dir.cleanup();
  });
  /** True if another holder could take the lease now (it was released). */
  const leaseFree = async () => {
    const taken = await store.tokens.tryAcquireLease(connectionId, "someone-else", 30_000);
    if (taken.acquired) await store.tokens.releaseLease(connectionId, "someone-else");
    return taken.acquired;
  };
  return { store, broker, calls, events, connectionId, leaseFree, clock };
}

const tokenSet = (clock: ManualClock, tag: string) => taggedTokenSet(clock.now(), tag);

/** The error a promise rejected with (fails if it resolved), and how long it took from `since`. */
async function rejection(p: Promise<unknown>, since = performance.now()): Promise<{ error: unknown; ms: number }> {
  try {
    await p;
  } catch (error) {
    return { error, ms: performance.now() - since };
  }
  throw new Error("expected a rejection");
}

const shuttingDown = (e: unknown) => isBrokerError(e, "unavailable") && /shutting down/.test((e as Error).message);

describe("TokenBroker.close with a deadline", () => {
  it.for(["hang", "hang-ignoring-abort"] as const)(
    "an identity server that never answers (%s): close resolves at the deadline, the request's signal is aborted, the waiting caller gets unavailable (shutting down), nothing is committed and the lease is released",
    async (answer) => {
      const t = await setUp([answer]);
      const waiting = rejection(t.broker.getToken({ connectionId: t.connectionId }));
      await until(() => t.calls.length === 1, 5000, "the request");
      const deadline = new AbortController();
      const closed = t.broker.close(deadline.signal);
      await delay(300);
      expect(t.calls[0]!.signal?.aborted, "aborted before the deadline").toBe(false);
      const abortedAt = performance.now();
      deadline.abort();
      await closed;
      expect(performance.now() - abortedAt).toBeLessThan(500);
      expect(t.calls[0]!.signal?.aborted).toBe(true);
      const { error } = await waiting;
      expect(shuttingDown(error), String(error)).toBe(true);
      expect((await t.store.tokens.getToken(t.connectionId))?.version).toBe(1);
      expect(await t.leaseFree()).toBe(true);
      expect(t.calls).toHaveLength(1);
      expect(t.events).toEqual([
        expect.objectContaining({ outcome: "transient_error", attempts: 1, error: "abandoned at the shutdown deadline" }),
      ]);
    },
  );

  it("a refresh answered before the deadline is committed and served", async () => {
    const t = await setUp([{ afterMs: 300 }]);
    const caller = t.broker.getToken({ connectionId: t.connectionId });
    await until(() => t.calls.length === 1, 5000, "the request");
    const deadline = AbortSignal.timeout(5000);
    const started = performance.now();
    await t.broker.close(deadline);
    expect(performance.now() - started).toBeLessThan(2000); // it waited for the answer, not for the deadline
    expect((await caller).version).toBe(2);
    expect((await t.store.tokens.getToken(t.connectionId))?.version).toBe(2);
    expect(t.events).toEqual([expect.objectContaining({ outcome: "ok", attempts: 1 })]);
  });

  it("a shutdown during the back-off after a transient failure starts no second attempt and does not wait for the back-off", async () => {
    const t = await setUp(["transient", { afterMs: 0 }]);
    const waiting = rejection(t.broker.getToken({ connectionId: t.connectionId }));
    await until(() => t.calls.length === 1, 5000, "the request");
    await delay(50); // in the back-off (2-4 s)
    const started = performance.now();
    await t.broker.close(AbortSignal.timeout(10_000));
    expect(performance.now() - started).toBeLessThan(1000);
    const { error } = await waiting;
    expect(shuttingDown(error), String(error)).toBe(true);
    await delay(100);
    expect(t.calls).toHaveLength(1);
    expect(await t.leaseFree()).toBe(true);
  });

  it("after close, a caller that needs a refresh gets unavailable (shutting down) at once and nothing is sent upstream", async () => {
    const t = await setUp([{ afterMs: 0 }]);
    await t.broker.close(AbortSignal.timeout(1000));
    const { error, ms } = await rejection(t.broker.getToken({ connectionId: t.connectionId }));
    expect(shuttingDown(error), String(error)).toBe(true);
    expect(ms).toBeLessThan(500);
    expect(t.calls).toHaveLength(0);
  });

  it("a refresh waiting for another process's lease ends at the shutdown, without a request", async () => {
    const t = await setUp([{ afterMs: 0 }]);
    expect((await t.store.tokens.tryAcquireLease(t.connectionId, "other-process", 30_000)).acquired).toBe(true);
    const waiting = rejection(t.broker.getToken({ connectionId: t.connectionId }));
    await delay(150); // polling the other holder's lease
    const started = performance.now();
    await t.broker.close(AbortSignal.timeout(10_000));
    expect(performance.now() - started).toBeLessThan(500);
    const { error } = await waiting;
    expect(shuttingDown(error), String(error)).toBe(true);
    expect(t.calls).toHaveLength(0);
  });
});
