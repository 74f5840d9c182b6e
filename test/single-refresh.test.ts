import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { protocols, startBroker, type BrokerFixture } from "./helpers/broker-fixture.js";

describe.each(protocols)("one refresh per expiry over $name", ({ transport }) => {
  let f: BrokerFixture;
  beforeEach(async () => {
    f = await startBroker();
  });
  afterEach(async () => {
    await f.close();
  });

  it("serves a stored valid token with no upstream call", async () => {
    const before = f.fake.tokenEndpointCalls;
    const client = f.client(transport);
    const { token } = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
    expect(token?.connectionId).toBe(f.connectionId);
    expect(token?.tenantIds).toContain(f.tenantId);
    expect(token?.tokenType).toBe("Bearer");
    expect(token?.accessToken.length).toBeGreaterThan(20);
    expect(f.fake.tokenEndpointCalls).toBe(before);
  });

  it("500 concurrent GetToken on an expired token set make exactly one token-endpoint call", async () => {
    const client = f.client(transport);
    const first = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
    await f.expireToken();
    const before = f.fake.tokenEndpointCalls;
    f.fake.setLatency(100); // keep the refresh in flight while callers pile up
    const results = await Promise.all(
      Array.from({ length: 500 }, (_, i) =>
        client.getToken({
          selector: i % 2 === 0 ? { case: "tenantId", value: f.tenantId } : { case: "connectionId", value: f.connectionId },
        }),
      ),
    );
    expect(f.fake.tokenEndpointCalls - before).toBe(1);
    const tokens = new Set(results.map((r) => r.token?.accessToken));
    expect(tokens.size).toBe(1);
    expect(tokens.has(first.token?.accessToken)).toBe(false);
    expect(results.every((r) => r.token?.version === first.token!.version + 1n)).toBe(true);
    expect(f.fake.invalidGrants).toBe(0);
  });
});
