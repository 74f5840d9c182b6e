import { setTimeout as delay } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import type { Selector, TokenBroker, TokenSubscription } from "../src/broker/token-broker.js";
import { BrokerError } from "../src/errors.js";
import { importRefreshToken } from "../src/importer.js";
import type { TokenRecord } from "../src/token-set.js";
import { startBroker, type BrokerFixture } from "./helpers/broker-fixture.js";

let f: BrokerFixture | undefined;
const stops: Array<() => void> = [];

afterEach(async () => {
  for (const stop of stops.splice(0)) stop();
  await f?.close();
  f = undefined;
});

/** Waits (real time) until `condition` holds; fails the test after `timeoutMs`. */
async function until(condition: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!condition()) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(5);
  }
}

/** What a client of WatchToken sees of a record. */
const seen = (r: TokenRecord) => ({ version: r.version, state: r.state, accessToken: r.accessToken });

interface Subscriber {
  records: TokenRecord[];
  sub: TokenSubscription;
  /** Whether `ended` has settled (resolved or rejected). */
  settled(): boolean;
}

/** `broker.subscribe`, recording what it delivers. */
function subscribe(broker: TokenBroker, selector: Selector): Subscriber {
  const records: TokenRecord[] = [];
  const sub = broker.subscribe(selector, (r) => records.push(r));
  let settled = false;
  sub.ended.then(
    () => (settled = true),
    () => (settled = true),
  );
  stops.push(() => sub.close());
  return { records, sub, settled: () => settled };
}

/** `broker.watch`, recording what it yields, for comparison. */
function watch(broker: TokenBroker, selector: Selector): { records: TokenRecord[] } {
  const records: TokenRecord[] = [];
  const abort = new AbortController();
  stops.push(() => abort.abort());
  void (async () => {
    for await (const r of broker.watch(selector, abort.signal)) records.push(r);
  })().catch(() => {});
  return { records };
}

const all = (subs: Array<{ records: TokenRecord[] }>, n: number) => () => subs.every((s) => s.records.length >= n);

describe("TokenBroker.subscribe", () => {
  it("delivers what watch yields, in the same order, as one shared object per update, with one upstream refresh per round", async () => {
    f = await startBroker();
    const broker = f.server.broker;
    const selector = { tenantId: f.tenantId };
    const watcher = watch(broker, selector);
    const subs = Array.from({ length: 100 }, () => subscribe(broker, selector));
    await until(all([watcher, ...subs], 1), "every first token");

    for (let round = 1; round <= 3; round++) {
      const current = subs[0]!.records.at(-1)!;
      const before = f.fake.tokenEndpointCalls;
      const { token, refreshed } = await broker.reportExpired(selector, current.accessToken);
      expect(refreshed).toBe(true);
      await until(all([watcher, ...subs], round + 1), `round ${round} to reach everyone`);
      expect(f.fake.tokenEndpointCalls - before).toBe(1);
      expect(seen(subs[0]!.records[round]!)).toEqual(seen(token));
    }

    const expected = watcher.records.map(seen);
    expect(expected).toHaveLength(4);
    expect(new Set(expected.map((r) => r.accessToken)).size).toBe(4);
    expect(expected.map((r) => r.version)).toEqual([0, 1, 2, 3].map((i) => expected[0]!.version + i));
    for (const s of subs) {
      expect(s.records.map(seen)).toEqual(expected);
      // Each update is one object handed to every subscriber (and to watch).
      for (let i = 1; i < 4; i++) expect(s.records[i]).toBe(watcher.records[i]);
      expect(s.settled()).toBe(false);
    }
    expect(broker.hub.size).toBe(101);
  });

  it("first hands out a refreshed token when the stored one has expired: one upstream call for 50 subscribers", async () => {
    f = await startBroker();
    const broker = f.server.broker;
    const stored = (await f.store.tokens.getToken(f.connectionId))!;
    await f.expireToken();
    const before = f.fake.tokenEndpointCalls;
    const subs = Array.from({ length: 50 }, () => subscribe(broker, { tenantId: f!.tenantId }));
    await until(all(subs, 1), "every first token");

    expect(f.fake.tokenEndpointCalls - before).toBe(1);
    for (const s of subs) {
      expect(s.records).toHaveLength(1);
      const [first] = s.records;
      expect(first!.state).toBe("active");
      expect(first!.version).toBe(stored.version + 1);
      expect(first!.accessToken).not.toBe(stored.accessToken);
      expect(first!.expiresAt).toBeGreaterThan(f.clock.now());
    }
  });

  it("close() while the first token is being fetched: nothing is delivered and the subscription is gone at once", async () => {
    f = await startBroker();
    const broker = f.server.broker;
    const stored = (await f.store.tokens.getToken(f.connectionId))!;
    await f.expireToken();
    f.fake.setLatency(1500);
    const before = f.fake.tokenEndpointCalls;
    const s = subscribe(broker, { connectionId: f.connectionId });
    await until(() => f!.fake.tokenEndpointCalls > before, "the refresh to reach the fake");
    expect(broker.hub.size).toBe(1);

    const closedAt = performance.now();
    s.sub.close();
    await s.sub.ended;
    // A client that hangs up is let go without waiting for a slow upstream.
    expect(performance.now() - closedAt).toBeLessThan(1000);
    expect(broker.hub.size).toBe(0);

    await broker.refresher.drain(); // the refresh goes on, and is published, but not to this subscriber
    expect((await f.store.tokens.getToken(f.connectionId))!.version).toBe(stored.version + 1);
    expect(s.records).toEqual([]);
    expect(broker.hub.size).toBe(0);
  });

  it("close() after some records: no more records, and the subscription leaves the hub", async () => {
    f = await startBroker();
    const broker = f.server.broker;
    const selector = { tenantId: f.tenantId };
    const closing = subscribe(broker, selector);
    const staying = subscribe(broker, selector);
    await until(all([closing, staying], 1), "first tokens");
    await broker.reportExpired(selector, closing.records[0]!.accessToken);
    await until(all([closing, staying], 2), "the refreshed token");

    closing.sub.close();
    await closing.sub.ended;
    expect(broker.hub.size).toBe(1);

    await broker.reportExpired(selector, staying.records[1]!.accessToken);
    await until(all([staying], 3), "the next token to reach the open subscriber");
    expect(closing.records.map((r) => r.version)).toEqual(staying.records.slice(0, 2).map((r) => r.version));
    expect(closing.records).toHaveLength(2);

    staying.sub.close();
    await staying.sub.ended;
    expect(broker.hub.size).toBe(0);
  });

  it.each([
    ["tenant", { tenantId: "00000000-0000-0000-0000-000000000000" }],
    ["connection", { connectionId: "no-such-connection" }],
  ] as const)("an unknown %s: ended rejects with not_found, as watch throws, and nothing is left behind", async (_, selector) => {
    f = await startBroker();
    const broker = f.server.broker;
    const s = subscribe(broker, selector);
    const error = await s.sub.ended.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(BrokerError);
    expect((error as BrokerError).kind).toBe("not_found");
    await expect(broker.watch(selector).next()).rejects.toMatchObject({ kind: "not_found", message: (error as Error).message });
    expect(s.records).toEqual([]);
    expect(broker.hub.size).toBe(0);
  });

  it("a grant revoked at Xero: subscribers get the needs_reauthorization state and stay open; a new one gets it first", async () => {
    f = await startBroker({ noImport: true });
    const broker = f.server.broker;
    const grant = f.fake.addGrant({ tenants: [{ tenantName: "Org A" }] });
    const { connectionId, tenants } = await importRefreshToken(f.store, f.identity, grant.refreshToken);
    const selector = { tenantId: tenants[0]!.tenantId };
    const watcher = watch(broker, selector);
    const subs = Array.from({ length: 5 }, () => subscribe(broker, selector));
    await until(all([watcher, ...subs], 1), "first tokens");

    f.fake.revokeGrant(grant.grantId);
    const stored = (await f.store.tokens.getToken(connectionId))!;
    f.clock.set(stored.expiresAt + 1000);
    await expect(broker.getToken(selector)).rejects.toMatchObject({ kind: "needs_reauthorization" });
    expect(f.fake.invalidGrants).toBe(1);

    await until(all([watcher, ...subs], 2), "the state change");
    for (const s of subs) {
      expect(s.records.map((r) => r.state)).toEqual(["active", "needs_reauthorization"]);
      expect(s.records.map(seen)).toEqual(watcher.records.map(seen));
      expect(s.settled()).toBe(false);
    }

    const calls = f.fake.tokenEndpointCalls;
    const late = subscribe(broker, selector);
    await until(all([late], 1), "the late subscriber's first record");
    expect(late.records[0]!.state).toBe("needs_reauthorization");
    expect(late.records[0]!.connectionId).toBe(connectionId);
    expect(late.settled()).toBe(false);
    expect(f.fake.tokenEndpointCalls).toBe(calls);
    expect(broker.hub.size).toBe(7);
  });

  it("the broker closing ends every subscription", async () => {
    f = await startBroker();
    const broker = f.server.broker;
    const subs = [
      ...Array.from({ length: 10 }, () => subscribe(broker, { tenantId: f!.tenantId })),
      ...Array.from({ length: 10 }, () => subscribe(broker, { connectionId: f!.connectionId })),
    ];
    await until(all(subs, 1), "first tokens");
    expect(broker.hub.size).toBe(20);

    await broker.close();
    await Promise.all(subs.map((s) => s.sub.ended));
    expect(broker.hub.size).toBe(0);
    for (const s of subs) expect(s.records).toHaveLength(1);
  });
});
