import { Code } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { protocols, startBroker, type BrokerFixture } from "./helpers/broker-fixture.js";
import { rejection } from "./helpers/rejection.js";

describe.each(protocols)("ReportExpired over $name", ({ transport }) => {
  let f: BrokerFixture;
  beforeEach(async () => {
    f = await startBroker();
  });
  afterEach(async () => {
    await f.close();
  });

  it("100 concurrent reports of the current token make exactly one refresh, and everyone gets the new token", async () => {
    const client = f.client(transport);
    const { token: current } = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
    expect(current).toBeDefined();
    const before = f.fake.tokenEndpointCalls;
    // Keep the refresh in flight until every report has arrived: over HTTP/1.1 that is 100 connections, which took
    // more than 300 ms on a loaded 2-core machine (a report that arrives after the commit is rightly not refreshed).
    f.fake.setLatency(1000);

    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        client.reportExpired({
          selector: i % 2 === 0 ? { case: "tenantId", value: f.tenantId } : { case: "connectionId", value: f.connectionId },
          accessToken: current!.accessToken,
        }),
      ),
    );

    expect(f.fake.tokenEndpointCalls - before).toBe(1);
    expect(f.fake.refreshes).toBeGreaterThan(0);
    expect(f.fake.invalidGrants).toBe(0);
    const accessTokens = new Set(results.map((r) => r.token?.accessToken));
    expect(accessTokens.size).toBe(1);
    expect(accessTokens.has(current!.accessToken)).toBe(false);
    // A report that reaches the broker only after the refresh was committed (gRPC-Web over HTTP/1.1 queues
    // calls behind a few sockets; a loaded machine delays them further) reports a token already replaced:
    // it is answered with the new token and `refreshed: false`, which is the rule, not a second refresh.
    expect(results.filter((r) => r.refreshed).length).toBeGreaterThan(0);
    for (const r of results) {
      expect(r.token?.version).toBe(current!.version + 1n);
      expect(r.token?.connectionId).toBe(f.connectionId);
    }
    // What the broker hands out from now on is that same new token.
    const after = await client.getToken({ selector: { case: "connectionId", value: f.connectionId } });
    expect(after.token?.accessToken).toBe(results[0]!.token!.accessToken);
    expect(after.token?.version).toBe(current!.version + 1n);
    expect(f.fake.tokenEndpointCalls - before).toBe(1);
  });

  it("a report of a token that was already replaced makes no upstream call and returns the current token", async () => {
    const client = f.client(transport);
    const { token: old } = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
    const first = await client.reportExpired({
      selector: { case: "tenantId", value: f.tenantId },
      accessToken: old!.accessToken,
    });
    expect(first.refreshed).toBe(true);
    const before = f.fake.tokenEndpointCalls;

    // Late reports of the superseded token, one and then many at once.
    const late = await client.reportExpired({
      selector: { case: "tenantId", value: f.tenantId },
      accessToken: old!.accessToken,
    });
    const many = await Promise.all(
      Array.from({ length: 50 }, () =>
        client.reportExpired({ selector: { case: "connectionId", value: f.connectionId }, accessToken: old!.accessToken }),
      ),
    );

    expect(f.fake.tokenEndpointCalls - before).toBe(0);
    for (const r of [late, ...many]) {
      expect(r.refreshed).toBe(false);
      expect(r.token?.accessToken).toBe(first.token?.accessToken);
      expect(r.token?.version).toBe(old!.version + 1n);
    }
  });

  it("a report of a token the broker never issued makes no upstream call", async () => {
    const client = f.client(transport);
    const { token: current } = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
    const before = f.fake.tokenEndpointCalls;
    const r = await client.reportExpired({
      selector: { case: "tenantId", value: f.tenantId },
      accessToken: `${current!.accessToken}x`,
    });
    expect(r.refreshed).toBe(false);
    expect(r.token?.accessToken).toBe(current!.accessToken);
    expect(r.token?.version).toBe(current!.version);
    expect(f.fake.tokenEndpointCalls - before).toBe(0);
  });

  it("an empty access_token is INVALID_ARGUMENT and makes no upstream call", async () => {
    const client = f.client(transport);
    const before = f.fake.tokenEndpointCalls;
    const err = await rejection(client.reportExpired({ selector: { case: "tenantId", value: f.tenantId }, accessToken: "" }));
    expect(err.code).toBe(Code.InvalidArgument);
    expect(err.rawMessage).toMatch(/access_token/);
    expect(f.fake.tokenEndpointCalls - before).toBe(0);
  });

  it("a request naming no token set is INVALID_ARGUMENT", async () => {
    const client = f.client(transport);
    const err = await rejection(client.reportExpired({ accessToken: "some-token" }));
    expect(err.code).toBe(Code.InvalidArgument);
  });

  it("an unknown tenant or connection is NOT_FOUND and makes no upstream call", async () => {
    const client = f.client(transport);
    const { token: current } = await client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
    const before = f.fake.tokenEndpointCalls;
    const unknownTenant = await rejection(
      client.reportExpired({
        selector: { case: "tenantId", value: "00000000-0000-4000-8000-000000000000" },
        accessToken: current!.accessToken,
      }),
    );
    expect(unknownTenant.code).toBe(Code.NotFound);
    expect(unknownTenant.rawMessage).toContain("00000000-0000-4000-8000-000000000000");
    const unknownConnection = await rejection(
      client.reportExpired({
        selector: { case: "connectionId", value: "no-such-connection" },
        accessToken: current!.accessToken,
      }),
    );
    expect(unknownConnection.code).toBe(Code.NotFound);
    expect(f.fake.tokenEndpointCalls - before).toBe(0);
    // The error message never echoes the token.
    expect(unknownTenant.rawMessage).not.toContain(current!.accessToken);
  });
});
