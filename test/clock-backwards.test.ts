import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, describe, expect, it } from "vitest";
import { startBroker, type BrokerFixture, type BrokerFixtureOptions } from "./helpers/broker-fixture.js";

// test/scheduler.test.ts covers the keep-alive and a clock that jumps forward; this file, a clock that jumps back
// (an NTP step, a VM restored from a snapshot): no refresh loop, no wait stretched by the size of the jump.

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

let f: BrokerFixture | undefined;
afterEach(async () => {
  await f?.close();
  f = undefined;
});

async function start(options: BrokerFixtureOptions = {}): Promise<BrokerFixture> {
  f = await startBroker(options);
  return f;
}

/** One scheduler pass, then waits for the refreshes it started. */
async function tick(fx: BrokerFixture): Promise<void> {
  await fx.server.scheduler.tick();
  await fx.server.broker.refresher.drain();
}

async function stored(fx: BrokerFixture) {
  const record = await fx.store.tokens.getToken(fx.connectionId);
  if (!record) throw new Error("no stored token set");
  return record;
}

describe("a clock that jumps backwards", () => {
  it("by two hours: no refresh while the token is valid, and exactly one when it is due again", async () => {
    const fx = await start();
    const client = fx.client();
    await client.getToken({ selector: { case: "tenantId", value: fx.tenantId } }); // in use: refreshed ahead of expiry
    const initial = await stored(fx);
    const before = fx.fake.tokenEndpointCalls;

    fx.clock.advance(-2 * HOUR);
    for (let i = 0; i < 5; i++) await tick(fx);
    const served = await Promise.all(
      Array.from({ length: 20 }, () => client.getToken({ selector: { case: "tenantId", value: fx.tenantId } })),
    );
    for (let i = 0; i < 5; i++) await tick(fx);
    expect(served.every((r) => r.token?.accessToken === initial.accessToken)).toBe(true);
    expect(fx.fake.tokenEndpointCalls).toBe(before);

    // Time catches up to the lead time before expiry, the channel still asking: one refresh, then quiet again.
    fx.clock.set(initial.expiresAt - 5 * MINUTE);
    await client.getToken({ selector: { case: "tenantId", value: fx.tenantId } });
    await Promise.all([tick(fx), tick(fx), tick(fx)]);
    for (let i = 0; i < 5; i++) await tick(fx);
    expect(fx.fake.tokenEndpointCalls).toBe(before + 1);
    expect((await stored(fx)).version).toBe(initial.version + 1);
    expect(fx.fake.invalidGrants).toBe(0);
  });

  it("a cool-down after a failed refresh does not last for the size of the jump", async () => {
    // A 10 s cool-down after a failure (one attempt per refresh).
    const fx = await start({ server: { refresher: { retryBaseMs: 10, cooldownMs: 10_000, attempts: 1 } } });
    const client = fx.client();
    const report = async () =>
      client.reportExpired({
        selector: { case: "connectionId", value: fx.connectionId },
        accessToken: (await stored(fx)).accessToken,
      });
    fx.fake.failNext(1, { status: 503 });
    const before = fx.fake.tokenEndpointCalls;
    await expect(report()).rejects.toSatisfy((e) => ConnectError.from(e).code === Code.Unavailable);
    // The cool-down holds: no new attempt.
    await expect(report()).rejects.toSatisfy((e) => ConnectError.from(e).code === Code.Unavailable);
    expect(fx.fake.tokenEndpointCalls).toBe(before + 1);

    fx.clock.advance(-HOUR); // measured on this clock, the cool-down would now end in an hour
    const ok = await report();
    expect(ok.refreshed).toBe(true);
    expect(fx.fake.tokenEndpointCalls).toBe(before + 2);
  });

  it("a refresh lease taken by a process that died before the clock went back is recovered at the next tick", async () => {
    const fx = await start();
    const initial = await stored(fx);
    // A process (now dead) took the lease just before the clock was stepped back an hour.
    expect((await fx.store.tokens.tryAcquireLease(fx.connectionId, "other-host:4242:dead", 30_000)).acquired).toBe(true);
    fx.clock.advance(-HOUR);
    const before = fx.fake.tokenEndpointCalls;

    await tick(fx);
    expect(fx.fake.tokenEndpointCalls).toBe(before + 1);
    const after = await stored(fx);
    expect(after.version).toBe(initial.version + 1);
    expect(after.state).toBe("active");
    expect(await fx.store.tokens.listLapsedLeases(fx.clock.now())).toEqual([]);
    expect(fx.fake.invalidGrants).toBe(0);
  });
});
