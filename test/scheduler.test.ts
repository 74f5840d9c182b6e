import { setTimeout as delay } from "node:timers/promises";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { identityServerOptions } from "@tokenbroker/fake-xero";
import { afterEach, describe, expect, it } from "vitest";
import { type GetTokenResponse, TokenService, type WatchTokenResponse } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import type { RefreshEvent } from "../src/broker/refresh-events.js";
import { Scheduler } from "../src/broker/scheduler.js";
import { TokenBroker } from "../src/broker/token-broker.js";
import { importRefreshToken } from "../src/importer.js";
import { startBrokerServer, type BrokerServer } from "../src/server/broker-server.js";
import { openSqliteStore } from "../src/store/sqlite-store.js";
import type { Store } from "../src/store/store.js";
import { createOidcIdentityServer } from "../src/upstream/oidc-identity-server.js";
import { startBroker, type BrokerFixture, type BrokerFixtureOptions } from "./helpers/broker-fixture.js";
import { captureLog, type LogCapture } from "./helpers/log-capture.js";

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

let f: BrokerFixture | undefined;
let log: LogCapture;
const cleanups: Array<() => Promise<void> | void> = [];

async function start(options: BrokerFixtureOptions = {}): Promise<BrokerFixture> {
  log = captureLog();
  f = await startBroker({ ...options, server: { logger: log.logger, ...options.server } });
  return f;
}

afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
  await f?.close();
  f = undefined;
});

/** One scheduler pass, then waits for every refresh it started to be committed. */
async function tick(server: BrokerServer): Promise<void> {
  await server.scheduler.tick();
  await server.broker.refresher.drain();
}

async function stored(fx: BrokerFixture) {
  const record = await fx.store.tokens.getToken(fx.connectionId);
  if (!record) throw new Error("no stored token set");
  return record;
}

/** Opens a WatchToken stream; `next()` resolves with the next message or "timeout". */
function watch(client: Client<typeof TokenService>, tenantId: string) {
  const abort = new AbortController();
  const iterator = client.watchToken({ selector: { case: "tenantId", value: tenantId } }, { signal: abort.signal })[Symbol.asyncIterator]();
  let pending: Promise<IteratorResult<WatchTokenResponse>> | undefined;
  cleanups.push(() => abort.abort());
  return {
    async next(timeoutMs = 5000): Promise<WatchTokenResponse | "timeout"> {
      if (!pending) {
        pending = iterator.next();
        pending.catch(() => {}); // a read still pending when the stream is aborted at cleanup
      }
      const result = await Promise.race([pending, delay(timeoutMs, undefined, { ref: false }).then(() => "timeout" as const)]);
      if (result === "timeout") return result;
      pending = undefined;
      if (result.done) throw new Error("watch stream ended");
      return result.value;
    },
    close: () => abort.abort(),
  };
}

describe("Scheduler: proactive refresh of token sets in use", () => {
  it("refreshes a token set in use once the clock is within the lead time (5 min) of expiry, and not before", async () => {
    const fx = await start();
    const client = fx.client();
    const first = await client.getToken({ selector: { case: "tenantId", value: fx.tenantId } });
    const before = fx.fake.tokenEndpointCalls;
    const initial = await stored(fx);

    fx.clock.set(initial.expiresAt - 5 * MINUTE - SECOND);
    await tick(fx.server);
    await tick(fx.server);
    expect(fx.fake.tokenEndpointCalls).toBe(before);
    expect((await stored(fx)).version).toBe(initial.version);

    fx.clock.set(initial.expiresAt - 5 * MINUTE);
    await tick(fx.server);
    expect(fx.fake.tokenEndpointCalls).toBe(before + 1);
    const refreshed = await stored(fx);
    expect(refreshed.version).toBe(initial.version + 1);
    expect(refreshed.accessToken).not.toBe(initial.accessToken);
    expect(refreshed.expiresAt).toBe(fx.clock.now() + 30 * MINUTE);
    expect(log.refreshEvents()).toEqual([expect.objectContaining({ cause: "proactive", outcome: "ok", attempts: 1 })]);

    // Callers now get the new token with no upstream call of their own.
    const after = await client.getToken({ selector: { case: "tenantId", value: fx.tenantId } });
    expect(after.token?.accessToken).toBe(refreshed.accessToken);
    expect(after.token?.version).toBe(first.token!.version + 1n);
    expect(fx.fake.tokenEndpointCalls).toBe(before + 1);
    expect(fx.fake.invalidGrants).toBe(0);
  });

  it("refreshes a short-lived token (60 s) at half its lifetime, not 5 minutes before expiry, and does not loop", async () => {
    const fx = await start({ fake: { accessTokenLifetimeSeconds: 60 } });
    const client = fx.client();
    await client.getToken({ selector: { case: "tenantId", value: fx.tenantId } });
    const before = fx.fake.tokenEndpointCalls;
    const initial = await stored(fx);
    expect(initial.expiresAt - initial.obtainedAt).toBe(60 * SECOND);

    // With a 5-minute lead time this token would be due at once; it must wait for half its life.
    fx.clock.set(initial.obtainedAt + 29 * SECOND);
    await tick(fx.server);
    expect(fx.fake.tokenEndpointCalls).toBe(before);

    fx.clock.set(initial.obtainedAt + 30 * SECOND);
    await tick(fx.server);
    expect(fx.fake.tokenEndpointCalls).toBe(before + 1);
    const second = await stored(fx);
    expect(second.version).toBe(initial.version + 1);
    expect(second.expiresAt - second.obtainedAt).toBe(60 * SECOND);

    // Several ticks right after the refresh, and a caller, make no new upstream call.
    for (let i = 0; i < 5; i++) {
      await tick(fx.server);
      fx.clock.advance(5 * SECOND);
    }
    await client.getToken({ selector: { case: "tenantId", value: fx.tenantId } });
    await tick(fx.server);
    expect(fx.fake.tokenEndpointCalls).toBe(before + 1);

    // Half way through the new token's life: exactly one more refresh.
    fx.clock.set(second.obtainedAt + 30 * SECOND);
    await Promise.all([tick(fx.server), tick(fx.server), tick(fx.server)]);
    await tick(fx.server);
    expect(fx.fake.tokenEndpointCalls).toBe(before + 2);
    expect((await stored(fx)).version).toBe(initial.version + 2);
    expect(fx.fake.invalidGrants).toBe(0);
  });

  describe.each([
    { order: "the tick first, callers while it is in flight" },
    { order: "callers first, the tick while their refresh is in flight" },
    { order: "callers and the tick at the same moment" },
  ])("a caller refresh and a proactive tick for the same expiry: $order", ({ order }) => {
    it("make one upstream call, and every caller gets the same new token", async () => {
      const fx = await start();
      const client = fx.client();
      const first = await client.getToken({ selector: { case: "tenantId", value: fx.tenantId } });
      await fx.expireToken();
      fx.fake.setLatency(100);
      const before = fx.fake.tokenEndpointCalls;
      const callers = () =>
        Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            client.getToken({
              selector: i % 2 ? { case: "tenantId", value: fx.tenantId } : { case: "connectionId", value: fx.connectionId },
            }),
          ),
        );
      let results: GetTokenResponse[];
      if (order.startsWith("the tick first")) {
        const ticking = tick(fx.server);
        await delay(20);
        [results] = await Promise.all([callers(), ticking]);
      } else if (order.startsWith("callers first")) {
        const calling = callers();
        await delay(40);
        [results] = await Promise.all([calling, tick(fx.server)]);
      } else {
        [results] = await Promise.all([callers(), tick(fx.server)]);
      }
      await tick(fx.server);
      expect(fx.fake.tokenEndpointCalls - before).toBe(1);
      const tokens = new Set(results.map((r) => r.token?.accessToken));
      expect(tokens.size).toBe(1);
      expect(tokens.has(first.token?.accessToken)).toBe(false);
      expect(results.every((r) => r.token?.version === first.token!.version + 1n)).toBe(true);
      expect(log.refreshEvents().filter((e) => e.outcome === "ok")).toHaveLength(1);
      expect(fx.fake.invalidGrants).toBe(0);
    });
  });

  it("a tick that read the token states just before a caller's refresh committed makes no second upstream call", async () => {
    const fx = await start();
    // A broker core of its own, on the fixture's store, whose scheduler pauses right after reading the states.
    const gate = gateListTokenStates(fx.store);
    const events: RefreshEvent[] = [];
    const broker = new TokenBroker({ store: gate.store, identity: fx.identity, clock: fx.clock, onRefresh: (e) => events.push(e) });
    const scheduler = new Scheduler(broker, gate.store.tokens, fx.clock);
    cleanups.push(() => broker.close());
    const first = await broker.getToken({ tenantId: fx.tenantId }); // in use
    await fx.expireToken();
    const before = fx.fake.tokenEndpointCalls;

    const ticking = scheduler.tick();
    await gate.read; // the tick saw version 1 as due...
    const results = await Promise.all(Array.from({ length: 50 }, () => broker.getToken({ tenantId: fx.tenantId })));
    expect(fx.fake.tokenEndpointCalls - before).toBe(1); // ...the callers refreshed to version 2...
    gate.release(); // ...and the tick goes on with what it saw.
    await ticking;
    await broker.refresher.drain();

    expect(fx.fake.tokenEndpointCalls - before).toBe(1);
    expect(new Set(results.map((r) => r.version))).toEqual(new Set([first.version + 1]));
    expect((await stored(fx)).version).toBe(first.version + 1);
    expect(events).toEqual([
      expect.objectContaining({ cause: "caller", outcome: "ok", attempts: 1 }),
      expect.objectContaining({ cause: "proactive", outcome: "already_fresh", attempts: 0 }),
    ]);
  });

  it("a clock that jumps forward by hours makes exactly one refresh, not many", async () => {
    const fx = await start();
    const client = fx.client();
    const watcher = watch(client, fx.tenantId);
    const first = await watcher.next();
    if (first === "timeout") throw new Error("no first WatchToken message");
    const before = fx.fake.tokenEndpointCalls;

    fx.clock.advance(5 * HOUR); // e.g. the host slept
    await Promise.all([fx.server.scheduler.tick(), fx.server.scheduler.tick(), fx.server.scheduler.tick()]);
    for (let i = 0; i < 5; i++) await tick(fx.server);
    const tokens = await Promise.all(
      Array.from({ length: 20 }, () => client.getToken({ selector: { case: "tenantId", value: fx.tenantId } })),
    );
    await tick(fx.server);

    expect(fx.fake.tokenEndpointCalls - before).toBe(1);
    const current = await stored(fx);
    expect(current.version).toBe(Number(first.token!.version) + 1);
    expect(new Set(tokens.map((t) => t.token?.accessToken))).toEqual(new Set([current.accessToken]));
    // The watcher was pushed the one new token, and nothing after it.
    const pushed = await watcher.next();
    expect(pushed).not.toBe("timeout");
    expect((pushed as WatchTokenResponse).token?.accessToken).toBe(current.accessToken);
    expect(await watcher.next(200)).toBe("timeout");
  });
});

describe("Scheduler: keep-alive of idle token sets", () => {
  it("does not refresh an idle token set near expiry, but does once its refresh token is 30 days old", async () => {
    const fx = await start({ noImport: true });
    const grant = fx.fake.addGrant({ tenants: [{ tenantName: "Idle Org" }] });
    const { connectionId } = await importRefreshToken(fx.store, fx.identity, grant.refreshToken);
    const load = async () => (await fx.store.tokens.getToken(connectionId))!;
    const before = fx.fake.tokenEndpointCalls;
    const initial = await load();

    // Never asked for: nobody needs it ahead of expiry.
    fx.clock.set(initial.expiresAt - MINUTE);
    await tick(fx.server);
    fx.clock.set(initial.expiresAt + MINUTE);
    await tick(fx.server);
    fx.clock.set(initial.refreshTokenIssuedAt + 30 * DAY - MINUTE);
    await tick(fx.server);
    expect(fx.fake.tokenEndpointCalls).toBe(before);

    // The refresh token is 30 days old: refresh it long before Xero's 60-day limit.
    fx.clock.set(initial.refreshTokenIssuedAt + 30 * DAY + MINUTE);
    await tick(fx.server);
    expect(fx.fake.tokenEndpointCalls).toBe(before + 1);
    const kept = await load();
    expect(kept.version).toBe(initial.version + 1);
    expect(kept.refreshTokenIssuedAt).toBe(fx.clock.now());
    expect(kept.refreshTokenIssuedAt).toBeGreaterThan(initial.refreshTokenIssuedAt);
    expect(kept.refreshToken).not.toBe(initial.refreshToken);
    // The broker holds the grant's one live refresh token.
    expect(kept.refreshToken).toBe(fx.fake.getGrant(grant.grantId)?.refreshToken);
    expect(log.refreshEvents()).toEqual([expect.objectContaining({ cause: "keepalive", outcome: "ok" })]);

    // The clock moved; the next keep-alive is 30 days away.
    await tick(fx.server);
    fx.clock.advance(DAY);
    await tick(fx.server);
    expect(fx.fake.tokenEndpointCalls).toBe(before + 1);
    expect(fx.fake.invalidGrants).toBe(0);
  });
});

describe("Scheduler: two brokers on one database", () => {
  async function startSecondBroker(
    fx: BrokerFixture,
  ): Promise<{ server: BrokerServer; store: Store; client: Client<typeof TokenService> }> {
    const store = openSqliteStore({ path: fx.dbPath, clock: fx.clock });
    const identity = createOidcIdentityServer({ ...identityServerOptions(fx.fake), clock: fx.clock });
    const server = await startBrokerServer({ port: 0, store, identity, clock: fx.clock });
    await server.scheduler.stop();
    cleanups.push(async () => {
      await server.close();
      await store.close();
    });
    return { server, store, client: createClient(TokenService, createGrpcTransport({ baseUrl: server.url })) };
  }

  it.each([
    { when: "B subscribed before its scheduler's first pass", tickFirst: false },
    { when: "B's scheduler had already seen the old version", tickFirst: true },
  ])("a refresh by broker A reaches a WatchToken subscriber on broker B after B's tick ($when)", async ({ tickFirst }) => {
    const fx = await start();
    const b = await startSecondBroker(fx);
    const watcherOnB = watch(b.client, fx.tenantId);
    const first = await watcherOnB.next();
    if (first === "timeout") throw new Error("no first WatchToken message from B");
    if (tickFirst) await tick(b.server);
    const before = fx.fake.tokenEndpointCalls;

    // Broker A refreshes (a caller on A finds the token expired).
    await fx.expireToken();
    const onA = await fx.client().getToken({ selector: { case: "tenantId", value: fx.tenantId } });
    expect(onA.token?.version).toBe(first.token!.version + 1n);
    expect(fx.fake.tokenEndpointCalls).toBe(before + 1);

    // B learns of it from the database on its next tick, and pushes it to its watcher.
    await tick(b.server);
    const pushed = await watcherOnB.next(2000);
    expect(pushed, "B's watcher was not told of A's refresh").not.toBe("timeout");
    expect((pushed as WatchTokenResponse).token?.accessToken).toBe(onA.token?.accessToken);
    expect((pushed as WatchTokenResponse).token?.version).toBe(onA.token?.version);

    // B serves the new token without an upstream call.
    const onB = await b.client.getToken({ selector: { case: "tenantId", value: fx.tenantId } });
    expect(onB.token?.accessToken).toBe(onA.token?.accessToken);
    expect(fx.fake.tokenEndpointCalls).toBe(before + 1);
    expect(fx.fake.invalidGrants).toBe(0);
  });
});

/** Wraps a store so that the next tokens.listTokenStates() pauses after reading, until released. */
function gateListTokenStates(outer: Store) {
  const inner = outer.tokens;
  let release!: () => void;
  let readDone!: () => void;
  const released = new Promise<void>((r) => (release = r));
  const read = new Promise<void>((r) => (readDone = r));
  let armed = true;
  const tokens = new Proxy(inner, {
    get(target, prop) {
      if (prop === "listTokenStates") {
        return async () => {
          const states = await target.listTokenStates();
          if (armed) {
            armed = false;
            readDone();
            await released;
          }
          return states;
        };
      }
      const value: unknown = Reflect.get(target, prop);
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  const store: Store = { ...outer, tokens };
  return { store, read, release };
}
