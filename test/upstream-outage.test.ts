import { setTimeout as delay } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { durationFromMs, timestampMs } from "@bufbuild/protobuf/wkt";
import { afterEach, describe, expect, it } from "vitest";
import { identityServerOptions, type FakeXero } from "@tokenbroker/fake-xero";
import type { IdentityServer } from "../src/upstream/identity-server.js";
import { createOidcIdentityServer } from "../src/upstream/oidc-identity-server.js";
import { protocols, startBroker, type BrokerFixture, type BrokerFixtureOptions } from "./helpers/broker-fixture.js";
import { rejection } from "./helpers/rejection.js";

/** The fixture's refresher attempts per refresh (the broker's default). */
const ATTEMPTS = 3;

/**
 * An outage of the token endpoint: every call answers 503 until `end()`.
 * The fake only scripts a fixed number of failures, so `end()` uses up the
 * ones the broker did not, with requests of its own that the test discounts.
 */
function startOutage(fake: FakeXero, failure: { status: number; error?: string } = { status: 503 }) {
  const scripted = 300;
  fake.failNext(scripted, failure);
  return {
    async end(): Promise<void> {
      fake.setLatency(0);
      for (let i = 0; i < scripted; i++) {
        const res = await fetch(`${fake.issuer}/connect/token`, { method: "POST" });
        await res.body?.cancel();
        if (res.status !== failure.status) return;
      }
      throw new Error("the outage did not end");
    },
  };
}

/** Lets the refresher's cooldown (10 ms in the fixture, on the broker's clock) pass. */
async function passCooldown(f: BrokerFixture): Promise<void> {
  f.clock.advance(61_000);
  await delay(30);
}

describe("token endpoint outage", () => {
  let f: BrokerFixture | undefined;
  async function start(options?: BrokerFixtureOptions): Promise<BrokerFixture> {
    f = await startBroker(options);
    return f;
  }
  afterEach(async () => {
    await f?.close();
    f = undefined;
  });

  it("a token still valid but inside min_valid_for is served while the endpoint fails (200 callers, at most 3 attempts)", async () => {
    const f = await start();
    const client = f.client();
    const { token: stored } = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
    const expiresAt = timestampMs(stored!.expiresAt!);
    const outage = startOutage(f.fake);
    f.fake.setLatency(20); // keep the failing refresh in flight while callers pile up
    const before = f.fake.tokenEndpointCalls;

    // 30 s left: inside the default 60 s min_valid_for, so the broker tries to refresh.
    f.clock.set(expiresAt - 30_000);
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        client.getToken({
          selector: i % 2 === 0 ? { case: "tenantId", value: f.tenantId } : { case: "connectionId", value: f.connectionId },
        }),
      ),
    );
    for (const r of results) {
      expect(r.token?.accessToken).toBe(stored!.accessToken);
      expect(r.token?.version).toBe(stored!.version);
    }
    const attempts = f.fake.tokenEndpointCalls - before;
    expect(attempts).toBeGreaterThanOrEqual(1);
    expect(attempts).toBeLessThanOrEqual(ATTEMPTS);

    // An explicit min_valid_for of 5 minutes, with 4 left: still served.
    await passCooldown(f);
    f.clock.set(expiresAt - 4 * 60_000);
    const explicit = await client.getToken({
      selector: { case: "tenantId", value: f.tenantId },
      minValidFor: durationFromMs(5 * 60_000),
    });
    expect(explicit.token?.accessToken).toBe(stored!.accessToken);
    await outage.end();
  });

  it("a token still valid is served when the identity server cannot be reached at all", async () => {
    const f = await start();
    const client = f.client();
    const { token: stored } = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
    await f.fake.close();
    f.clock.set(timestampMs(stored!.expiresAt!) - 30_000);
    const r = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
    expect(r.token?.accessToken).toBe(stored!.accessToken);

    // Once it has expired, there is nothing to serve: UNAVAILABLE.
    await passCooldown(f); // also moves past expiry
    const err = await rejection(client.getToken({ selector: { case: "tenantId", value: f.tenantId } }));
    expect(err.code).toBe(Code.Unavailable);
  });

  describe.each(protocols.filter((p) => p.name.startsWith("gRPC (") || p.name.startsWith("Connect JSON")))(
    "over $name",
    ({ transport }) => {
      it("an expired token is UNAVAILABLE; 200 callers make at most 3 attempts; after the outage one refresh recovers", async () => {
        const f = await start();
        const client = f.client(transport);
        const { token: stored } = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
        const outage = startOutage(f.fake);
        f.fake.setLatency(20);
        await f.expireToken();
        const before = f.fake.tokenEndpointCalls;

        const wave = () =>
          Promise.allSettled(
            Array.from({ length: 200 }, (_, i) =>
              i % 4 === 3
                ? client.reportExpired({
                    selector: { case: "connectionId", value: f.connectionId },
                    accessToken: stored!.accessToken,
                  })
                : client.getToken({
                    selector: i % 2 === 0 ? { case: "tenantId", value: f.tenantId } : { case: "connectionId", value: f.connectionId },
                  }),
            ),
          );
        const first = await wave();
        // Callers that arrive while the outage lasts: still no attempt per caller.
        const second = await wave();
        for (const r of [...first, ...second]) {
          expect(r.status).toBe("rejected");
          if (r.status === "rejected") {
            const e = ConnectError.from(r.reason);
            expect(e.code).toBe(Code.Unavailable);
            expect(e.rawMessage).not.toContain(stored!.accessToken);
          }
        }
        const attempts = f.fake.tokenEndpointCalls - before;
        expect(attempts).toBeGreaterThanOrEqual(1);
        expect(attempts).toBeLessThanOrEqual(ATTEMPTS);

        // The outage ends; after the cooldown one caller gets a new token with exactly one refresh.
        await outage.end();
        f.fake.setLatency(0);
        await passCooldown(f);
        const resumed = f.fake.tokenEndpointCalls;
        const refreshesBefore = f.fake.refreshes;
        const ok = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
        expect(ok.token?.version).toBe(stored!.version + 1n);
        expect(ok.token?.accessToken).not.toBe(stored!.accessToken);
        expect(timestampMs(ok.token!.expiresAt!)).toBeGreaterThan(f.clock.now());
        expect(f.fake.tokenEndpointCalls - resumed).toBe(1);
        expect(f.fake.refreshes - refreshesBefore).toBe(1);
        expect(f.fake.invalidGrants).toBe(0);
        expect(f.fake.graceViolations).toBe(0);
        // And the connection was never given up on.
        const summary = (await f.store.connections.listConnections()).find((c) => c.connectionId === f.connectionId);
        expect(summary?.state).toBe("active");
      });
    },
  );

  it("a 429 with Retry-After: 1 delays the retry inside a refresh by at least that", async () => {
    const f = await start();
    const client = f.client();
    const { token: stored } = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
    f.fake.failNext(1, { status: 429, retryAfterSeconds: 1 });
    await f.expireToken();
    const before = f.fake.tokenEndpointCalls;

    // Note the real time of every token-endpoint call.
    const callTimes: number[] = [];
    let seen = before;
    const poller = setInterval(() => {
      while (seen < f.fake.tokenEndpointCalls) {
        seen++;
        callTimes.push(performance.now());
      }
    }, 2);
    try {
      const r = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
      expect(r.token?.version).toBe(stored!.version + 1n);
    } finally {
      clearInterval(poller);
    }
    expect(f.fake.tokenEndpointCalls - before).toBe(2);
    expect(callTimes).toHaveLength(2);
    expect(callTimes[1]! - callTimes[0]!).toBeGreaterThanOrEqual(980);
    expect(f.fake.invalidGrants).toBe(0);
  });

  it("a 429 with Retry-After: 120 keeps later refreshes away for 120 s", async () => {
    // One attempt per refresh, so the Retry-After outlives the refresh that got it.
    const f = await start({ server: { refresher: { retryBaseMs: 10, cooldownMs: 10, attempts: 1 } } });
    const client = f.client();
    const { token: stored } = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
    f.fake.failNext(1, { status: 429, retryAfterSeconds: 120 });
    await f.expireToken();
    const before = f.fake.tokenEndpointCalls;

    const err = await rejection(client.getToken({ selector: { case: "tenantId", value: f.tenantId } }));
    expect(err.code).toBe(Code.Unavailable);
    expect(f.fake.tokenEndpointCalls - before).toBe(1);

    f.clock.advance(60_000);
    const stillWaiting = await rejection(client.getToken({ selector: { case: "tenantId", value: f.tenantId } }));
    expect(stillWaiting.code).toBe(Code.Unavailable);
    expect(f.fake.tokenEndpointCalls - before).toBe(1);

    f.clock.advance(61_000);
    const ok = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
    expect(ok.token?.version).toBe(stored!.version + 1n);
    expect(f.fake.tokenEndpointCalls - before).toBe(2);
  });

  it("invalid_client is UNAVAILABLE naming TOKENBROKER_CLIENT_SECRET, and the connection stays active", async () => {
    const f = await start();
    const client = f.client();
    const { token: stored } = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
    f.fake.failNext(1, { status: 401, error: "invalid_client" });
    await f.expireToken();
    const before = f.fake.tokenEndpointCalls;

    const err = await rejection(client.getToken({ selector: { case: "tenantId", value: f.tenantId } }));
    expect(err.code).toBe(Code.Unavailable);
    expect(err.rawMessage).toContain("TOKENBROKER_CLIENT_SECRET");
    expect(f.fake.tokenEndpointCalls - before).toBe(1); // a wrong secret is not retried
    const summary = (await f.store.connections.listConnections()).find((c) => c.connectionId === f.connectionId);
    expect(summary?.state).toBe("active");
    expect(f.fake.invalidGrants).toBe(0);

    // The secret works again (here: the scripted failure is used up): the same refresh token still refreshes.
    await passCooldown(f);
    const ok = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
    expect(ok.token?.version).toBe(stored!.version + 1n);
    expect(f.fake.tokenEndpointCalls - before).toBe(2);
    expect(f.fake.invalidGrants).toBe(0);
  });

  it("a broker configured with a wrong client secret answers UNAVAILABLE naming TOKENBROKER_CLIENT_SECRET and never marks the connection for re-authorisation", async () => {
    // The import uses the right secret; the serving broker a wrong one (built once the fake is up).
    let wrong: IdentityServer | undefined;
    const lazy: IdentityServer = {
      refresh: (refreshToken) => wrong!.refresh(refreshToken),
      clientCredentials: (credentials) => wrong!.clientCredentials(credentials),
      listConnections: (accessToken) => wrong!.listConnections(accessToken),
      authorizationUrl: (request) => wrong!.authorizationUrl(request),
      exchangeCode: (exchange) => wrong!.exchangeCode(exchange),
      revoke: (refreshToken) => wrong!.revoke(refreshToken),
      deleteConnection: (accessToken, id) => wrong!.deleteConnection(accessToken, id),
    };
    const f = await start({ server: { identity: lazy } });
    wrong = createOidcIdentityServer({ ...identityServerOptions(f.fake), clientSecret: "not-the-secret", clock: f.clock });
    const client = f.client(protocols.find((p) => p.name.startsWith("Connect JSON"))!.transport);
    const { token: stored } = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
    await f.expireToken();
    const before = f.fake.tokenEndpointCalls;

    const expectSecretNamed = (e: ConnectError) => {
      expect(e.code).toBe(Code.Unavailable);
      expect(e.rawMessage).toContain("TOKENBROKER_CLIENT_SECRET");
      expect(e.rawMessage).not.toContain("not-the-secret");
    };
    expectSecretNamed(await rejection(client.getToken({ selector: { case: "tenantId", value: f.tenantId } })));
    expect(f.fake.tokenEndpointCalls - before).toBe(1); // a wrong secret is not retried

    // Callers that come while the broker waits before trying again must learn the same cause.
    const results = await Promise.allSettled(
      Array.from({ length: 50 }, () => client.getToken({ selector: { case: "tenantId", value: f.tenantId } })),
    );
    for (const r of results) {
      expect(r.status).toBe("rejected");
      if (r.status === "rejected") expectSecretNamed(ConnectError.from(r.reason));
    }
    expect(f.fake.tokenEndpointCalls - before).toBe(1);

    // Still wrong later: a report of the current token is UNAVAILABLE too, not FAILED_PRECONDITION.
    await passCooldown(f);
    const report = await rejection(
      client.reportExpired({ selector: { case: "tenantId", value: f.tenantId }, accessToken: stored!.accessToken }),
    );
    expectSecretNamed(report);
    expect(f.fake.tokenEndpointCalls - before).toBe(2);

    const summary = (await f.store.connections.listConnections()).find((c) => c.connectionId === f.connectionId);
    expect(summary?.state).toBe("active");
    expect((await f.store.tokens.getToken(f.connectionId))?.state).toBe("active");
    expect(f.fake.invalidGrants).toBe(0);
  });
});
