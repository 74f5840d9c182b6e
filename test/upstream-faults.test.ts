import { setTimeout as delay } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { identityServerOptions } from "@tokenbroker/fake-xero";
import { afterEach, describe, expect, it } from "vitest";
import type { IdentityServer } from "../src/upstream/identity-server.js";
import { createOidcIdentityServer } from "../src/upstream/oidc-identity-server.js";
import { protocols, startBroker, type BrokerFixture, type BrokerFixtureOptions } from "./helpers/broker-fixture.js";
import { until } from "./helpers/serve-process.js";
import { rejection } from "./helpers/rejection.js";

// test/upstream-outage.test.ts covers 503s, an unreachable identity server, 429 with Retry-After and
// invalid_client. This file covers the rest: timeouts, resets, slow answers, and callers' deadlines.

let f: BrokerFixture | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

/**
 * The fixture with the broker's identity server built once the fake runs, with `timeoutMs`
 * (TOKENBROKER_UPSTREAM_TIMEOUT_MS) as its per-request timeout.
 */
async function start(timeoutMs: number, options: BrokerFixtureOptions = {}): Promise<BrokerFixture> {
  let real: IdentityServer | undefined;
  const late = new Proxy({} as IdentityServer, {
    get:
      (_target, name) =>
      (...args: unknown[]) =>
        (Reflect.get(real!, name) as (...a: unknown[]) => unknown).apply(real, args),
  });
  f = await startBroker({ ...options, server: { identity: late, ...options.server } });
  real = createOidcIdentityServer({ ...identityServerOptions(f.fake), clock: f.clock, timeoutMs });
  return f;
}

/** Lets the refresher's cool-down (10 ms in the fixture, on the broker's clock) pass. */
async function passCooldown(fx: BrokerFixture): Promise<void> {
  fx.clock.advance(61_000);
  await delay(30);
}

/** The fixture's attempts per refresh (the broker's default). */
const ATTEMPTS = 3;

describe.each([{ graceRetry: "same" as const }, { graceRetry: "new" as const }])(
  "a token endpoint slower than the upstream timeout (grace retry returns the $graceRetry pair)",
  ({ graceRetry }) => {
    it("each attempt is abandoned at the timeout, 3 in all, then UNAVAILABLE; the late answers spend the refresh token, and the next refresh inside the grace period still works", async () => {
      const fx = await start(200, { fake: { graceRetry } });
      const client = fx.client();
      const { token: stored } = await client.getToken({ selector: { case: "connectionId", value: fx.connectionId } });
      fx.fake.setLatency(1500);
      await fx.expireToken();
      const before = fx.fake.tokenEndpointCalls;

      const started = performance.now();
      const err = await rejection(client.getToken({ selector: { case: "connectionId", value: fx.connectionId } }));
      const elapsed = performance.now() - started;
      expect(err.code).toBe(Code.Unavailable);
      expect(err.rawMessage).toMatch(/timed out/);
      // 3 × 200 ms and two short back-offs (about 650 ms): the 200 ms timeout was applied, not rounded up to a
      // second (3 s) nor left at 10 s.
      expect(elapsed).toBeLessThan(2000);
      expect(fx.fake.tokenEndpointCalls - before).toBe(ATTEMPTS);

      // The fake answers all three after 1.5 s, into closed connections: the stored refresh token is spent.
      await until(() => fx.fake.refreshes >= 1 + ATTEMPTS, 3000, "the late answers");
      expect((await fx.store.tokens.getToken(fx.connectionId))?.version).toBe(Number(stored!.version));

      // Xero is fast again: one refresh with the stored (spent, but inside its grace period) refresh token works.
      fx.fake.setLatency(0);
      await passCooldown(fx);
      const resumed = fx.fake.tokenEndpointCalls;
      const ok = await client.getToken({ selector: { case: "connectionId", value: fx.connectionId } });
      expect(ok.token?.version).toBe(stored!.version + 1n);
      expect(fx.fake.tokenEndpointCalls - resumed).toBe(1);
      expect((await fx.store.tokens.getToken(fx.connectionId))?.state).toBe("active");
      // The refresh token stored now is the live one: the next refresh works too.
      const next = await client.reportExpired({
        selector: { case: "connectionId", value: fx.connectionId },
        accessToken: ok.token!.accessToken,
      });
      expect(next.refreshed).toBe(true);
      expect(next.token?.version).toBe(stored!.version + 2n);
      expect(fx.fake.invalidGrants).toBe(0);
      expect(fx.fake.graceViolations).toBe(0);
    });
  },
);

describe("connection resets", () => {
  it("the fake's failNext(n, { reset: true }) cuts the connection without an answer and spends nothing", async () => {
    const fx = await start(2000, { noImport: true });
    const grant = fx.fake.addGrant();
    fx.fake.failNext(1, { reset: true });
    const refresh = () =>
      fetch(`${fx.fake.issuer}/connect/token`, {
        method: "POST",
        headers: {
          authorization: `Basic ${Buffer.from(`${fx.fake.clientId}:${fx.fake.clientSecret}`).toString("base64")}`,
          "content-type": "application/x-www-form-urlencoded",
        },
        body: new URLSearchParams({ grant_type: "refresh_token", refresh_token: grant.refreshToken }),
      });
    await expect(refresh()).rejects.toThrow(TypeError); // fetch failed: the socket closed
    const res = await refresh(); // the refresh token was not spent by the reset request
    expect(res.status).toBe(200);
    await res.body?.cancel();
    expect(fx.fake.tokenEndpointCalls).toBe(2);
    expect(fx.fake.refreshes).toBe(1);
  });

  it("two resets, then an answer: retried inside one refresh, every caller gets the one new token", async () => {
    const fx = await start(2000);
    const client = fx.client();
    const { token: stored } = await client.getToken({ selector: { case: "tenantId", value: fx.tenantId } });
    fx.fake.failNext(2, { reset: true });
    await fx.expireToken();
    const before = fx.fake.tokenEndpointCalls;

    const results = await Promise.all(
      Array.from({ length: 50 }, () => client.getToken({ selector: { case: "tenantId", value: fx.tenantId } })),
    );
    expect(new Set(results.map((r) => r.token?.accessToken)).size).toBe(1);
    expect(results[0]?.token?.version).toBe(stored!.version + 1n);
    expect(fx.fake.tokenEndpointCalls - before).toBe(3);
    expect(fx.fake.refreshes).toBe(2); // the import's, and this one
    expect(fx.fake.invalidGrants).toBe(0);
  });

  it("resets on every attempt: UNAVAILABLE, the connection stays active, and the next refresh works", async () => {
    const fx = await start(2000);
    const client = fx.client();
    const { token: stored } = await client.getToken({ selector: { case: "tenantId", value: fx.tenantId } });
    fx.fake.failNext(ATTEMPTS, { reset: true });
    await fx.expireToken();
    const before = fx.fake.tokenEndpointCalls;

    const err = await rejection(client.getToken({ selector: { case: "tenantId", value: fx.tenantId } }));
    expect(err.code).toBe(Code.Unavailable);
    expect(err.rawMessage).not.toContain(stored!.accessToken);
    expect(fx.fake.tokenEndpointCalls - before).toBe(ATTEMPTS);
    expect((await fx.store.tokens.getToken(fx.connectionId))?.state).toBe("active");

    await passCooldown(fx);
    const ok = await client.getToken({ selector: { case: "tenantId", value: fx.tenantId } });
    expect(ok.token?.version).toBe(stored!.version + 1n);
    expect(fx.fake.tokenEndpointCalls - before).toBe(ATTEMPTS + 1);
    expect(fx.fake.invalidGrants).toBe(0);
  });
});

describe("a slow but successful answer", () => {
  it("100 callers over gRPC and Connect JSON wait for it and get the same new token, from exactly one upstream call", async () => {
    const fx = await start(5000);
    const grpc = fx.client();
    const json = fx.client(protocols.find((p) => p.name.startsWith("Connect JSON"))!.transport);
    const { token: stored } = await grpc.getToken({ selector: { case: "tenantId", value: fx.tenantId } });
    fx.fake.setLatency(800);
    await fx.expireToken();
    const before = fx.fake.tokenEndpointCalls;

    const started = performance.now();
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) => (i % 2 ? grpc : json).getToken({ selector: { case: "tenantId", value: fx.tenantId } })),
    );
    expect(performance.now() - started).toBeGreaterThanOrEqual(790);
    expect(new Set(results.map((r) => r.token?.accessToken)).size).toBe(1);
    expect(results.every((r) => r.token?.version === stored!.version + 1n)).toBe(true);
    expect(fx.fake.tokenEndpointCalls - before).toBe(1);
  });
});

describe("callers during upstream trouble", () => {
  it("while a proactive refresh hangs, 200 callers whose stored token is valid are served at once with no upstream call of their own", async () => {
    // One attempt of 3 s: the refresh hangs that long (and the fixture's close waits no longer).
    const fx = await start(3000, { server: { refresher: { retryBaseMs: 10, cooldownMs: 10, attempts: 1 } } });
    const client = fx.client();
    const { token: stored } = await client.getToken({ selector: { case: "tenantId", value: fx.tenantId } });
    fx.fake.setLatency(5000); // longer than the timeout: the attempt hangs until it is abandoned
    fx.clock.set(timestampMs(stored!.expiresAt!) - 4 * 60_000); // inside the 5-minute lead time
    const before = fx.fake.tokenEndpointCalls;
    await fx.server.scheduler.tick();
    expect(fx.server.broker.refresher.isRefreshing(fx.connectionId)).toBe(true);

    const results = await Promise.all(
      Array.from({ length: 200 }, () => client.getToken({ selector: { case: "tenantId", value: fx.tenantId } })),
    );
    for (const r of results) expect(r.token?.accessToken).toBe(stored!.accessToken);
    // All answered while the refresh still hangs: none of them waited for it.
    expect(fx.server.broker.refresher.isRefreshing(fx.connectionId)).toBe(true);
    expect(fx.fake.tokenEndpointCalls - before).toBe(1); // the scheduler's first attempt, nothing from the callers
    await fx.fake.close(); // cuts the hanging request, so that closing the broker need not wait for it
  });

  it("a caller whose token is valid but shorter than min_valid_for gets the stored token after 2 s, inside its 4 s deadline, while the upstream hangs for 4.5 s", async () => {
    // The upstream request hangs 4.5 s (one attempt): longer than the caller's deadline.
    const fx = await start(4500, { server: { refresher: { retryBaseMs: 10, cooldownMs: 10, attempts: 1 } } });
    const client = fx.client();
    const { token: stored } = await client.getToken({ selector: { case: "tenantId", value: fx.tenantId } });
    fx.fake.setLatency(10_000);
    fx.clock.set(timestampMs(stored!.expiresAt!) - 30_000); // 30 s left; callers ask for 60 s by default

    const started = performance.now();
    const results = await Promise.all(
      Array.from({ length: 20 }, () => client.getToken({ selector: { case: "tenantId", value: fx.tenantId } }, { timeoutMs: 4000 })),
    );
    const elapsed = performance.now() - started;
    for (const r of results) expect(r.token?.accessToken).toBe(stored!.accessToken);
    expect(elapsed).toBeGreaterThanOrEqual(1900);
    expect(elapsed).toBeLessThan(3900);
    expect(fx.fake.tokenEndpointCalls).toBe(2); // the import's, and one attempt still hanging
    await fx.fake.close(); // cuts the hanging request, so that closing the broker need not wait for it
  });

  describe.each(protocols.filter((p) => p.name.startsWith("gRPC (") || p.name.startsWith("Connect JSON")))(
    "over $name",
    ({ transport }) => {
      it("callers that need a new token get DEADLINE_EXCEEDED at their deadline, or UNAVAILABLE once the attempts are spent: never a hang", async () => {
        const fx = await start(400);
        const client = fx.client(transport);
        await client.getToken({ selector: { case: "tenantId", value: fx.tenantId } });
        fx.fake.setLatency(10_000);
        await fx.expireToken();
        const before = fx.fake.tokenEndpointCalls;

        const timed = async (call: Promise<unknown>) => {
          const started = performance.now();
          const err = await rejection(call);
          return { code: err.code, ms: performance.now() - started };
        };
        const results = await Promise.all(
          Array.from({ length: 40 }, (_, i) =>
            timed(client.getToken({ selector: { case: "tenantId", value: fx.tenantId } }, i % 2 === 0 ? { timeoutMs: 300 } : {})),
          ),
        );
        for (const [i, r] of results.entries()) {
          if (i % 2 === 0) {
            expect(r.code).toBe(Code.DeadlineExceeded);
            expect(r.ms).toBeLessThan(1000);
          } else {
            // Three attempts of 400 ms and two short back-offs.
            expect(r.code).toBe(Code.Unavailable);
            expect(r.ms).toBeGreaterThanOrEqual(1150);
            expect(r.ms).toBeLessThan(5000);
          }
        }
        // One refresh for all of them: never more than one attempt in flight.
        expect(fx.fake.tokenEndpointCalls - before).toBe(ATTEMPTS);
      });
    },
  );
});
