import { setTimeout as delay } from "node:timers/promises";
import { Code } from "@connectrpc/connect";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConnectionState, type WatchTokenResponse } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { protocols, startBroker, type BrokerFixture } from "./helpers/broker-fixture.js";
import { eventually, readStream, type StreamReader } from "./helpers/stream-reader.js";

const byName = (prefix: string) => {
  const p = protocols.find((x) => x.name.startsWith(prefix));
  if (!p) throw new Error(`no protocol ${prefix}`);
  return p;
};
const grpc = byName("gRPC (HTTP/2)");
const grpcWeb = byName("gRPC-Web");
const connectJson = byName("Connect JSON");
const connectBinary = byName("Connect binary");

describe("WatchToken", () => {
  let f: BrokerFixture;
  const readers: Array<StreamReader<WatchTokenResponse>> = [];

  beforeEach(async () => {
    f = await startBroker();
  });
  afterEach(async () => {
    for (const r of readers.splice(0)) r.cancel();
    await f.close();
  });

  /** Opens a watch stream over `protocol` on the given selector. */
  function watch(
    protocol: (typeof protocols)[number],
    selector: { case: "tenantId"; value: string } | { case: "connectionId"; value: string },
  ): StreamReader<WatchTokenResponse> {
    const client = f.client(protocol.transport);
    const reader = readStream((signal) => client.watchToken({ selector }, { signal }));
    readers.push(reader);
    return reader;
  }

  /** Refreshes the token set by reporting its current token; returns the new token. */
  async function refreshByReport() {
    const client = f.client(grpc.transport);
    const { token } = await client.getToken({ selector: { case: "connectionId", value: f.connectionId } });
    const r = await client.reportExpired({
      selector: { case: "connectionId", value: f.connectionId },
      accessToken: token!.accessToken,
    });
    expect(r.refreshed).toBe(true);
    return r.token!;
  }

  it("three watchers over different protocols get a valid token at once, then every new token in order", async () => {
    const tenantB = f.imported.tenants[1]!.tenantId;
    const watchers = [
      watch(grpc, { case: "tenantId", value: f.tenantId }),
      watch(grpcWeb, { case: "tenantId", value: tenantB }),
      watch(connectJson, { case: "connectionId", value: f.connectionId }),
    ];
    const { token: stored } = await f.client().getToken({ selector: { case: "tenantId", value: f.tenantId } });
    const callsBefore = f.fake.tokenEndpointCalls;

    for (const w of watchers) {
      const first = await w.next(2000);
      expect(first.state).toBe(ConnectionState.ACTIVE);
      expect(first.token?.accessToken).toBe(stored!.accessToken);
      expect(first.token?.version).toBe(stored!.version);
      expect(first.token?.connectionId).toBe(f.connectionId);
      expect(first.token?.tenantIds).toEqual(expect.arrayContaining([f.tenantId, tenantB]));
      expect(timestampMs(first.token!.expiresAt!)).toBeGreaterThan(f.clock.now());
    }
    expect(f.server.broker.hub.size).toBe(3);
    expect(f.fake.tokenEndpointCalls).toBe(callsBefore); // a valid stored token needs no refresh

    // Four refreshes back to back: three by ReportExpired, one by expiry + GetToken.
    const issued = [await refreshByReport(), await refreshByReport(), await refreshByReport()];
    await f.expireToken();
    const { token: afterExpiry } = await f.client(connectBinary.transport).getToken({
      selector: { case: "tenantId", value: f.tenantId },
    });
    issued.push(afterExpiry!);
    expect(f.fake.tokenEndpointCalls - callsBefore).toBe(4);
    expect(issued.map((t) => t.version)).toEqual([1n, 2n, 3n, 4n].map((d) => stored!.version + d));

    const last = issued[issued.length - 1]!.version;
    for (const w of watchers) {
      const updates = await w.until((m) => (m.token?.version ?? 0n) >= last, 3000);
      expect(updates.map((m) => m.token?.version)).toEqual(issued.map((t) => t.version));
      expect(updates.map((m) => m.token?.accessToken)).toEqual(issued.map((t) => t.accessToken));
      expect(updates.every((m) => m.state === ConnectionState.ACTIVE)).toBe(true);
      expect(w.ended).toBe(false);
    }
  });

  it("a watcher that opens on an expired token set first gets a fresh token, after one refresh", async () => {
    const { token: old } = await f.client().getToken({ selector: { case: "tenantId", value: f.tenantId } });
    await f.expireToken();
    const before = f.fake.tokenEndpointCalls;
    const w = watch(connectJson, { case: "tenantId", value: f.tenantId });
    const first = await w.next(3000);
    expect(first.state).toBe(ConnectionState.ACTIVE);
    expect(first.token?.version).toBe(old!.version + 1n);
    expect(first.token?.accessToken).not.toBe(old!.accessToken);
    expect(timestampMs(first.token!.expiresAt!)).toBeGreaterThan(f.clock.now());
    expect(f.fake.tokenEndpointCalls - before).toBe(1);
  });

  it("a cancelled stream frees its subscription; the others keep receiving", async () => {
    const a = watch(grpc, { case: "tenantId", value: f.tenantId });
    const b = watch(connectJson, { case: "tenantId", value: f.tenantId });
    const c = watch(grpcWeb, { case: "connectionId", value: f.connectionId });
    await Promise.all([a.next(2000), b.next(2000), c.next(2000)]);
    expect(f.server.broker.hub.size).toBe(3);

    a.cancel();
    await eventually(() => f.server.broker.hub.size === 2, 3000, "the gRPC subscription to be freed");
    b.cancel();
    await eventually(() => f.server.broker.hub.size === 1, 3000, "the Connect JSON subscription to be freed");
    expect(f.server.broker.hub.count(f.connectionId)).toBe(1);

    const fresh = await refreshByReport();
    const update = await c.next(3000);
    expect(update.token?.version).toBe(fresh.version);
    expect(update.token?.accessToken).toBe(fresh.accessToken);

    c.cancel();
    await eventually(() => f.server.broker.hub.size === 0, 3000, "the last subscription to be freed");
  });

  it("a token set refreshed by the proactive scheduler reaches watchers", async () => {
    const watchers = [watch(grpc, { case: "tenantId", value: f.tenantId }), watch(connectJson, { case: "tenantId", value: f.tenantId })];
    const firsts = await Promise.all(watchers.map((w) => w.next(2000)));
    const first = firsts[0]!.token!;
    const expiresAt = timestampMs(first.expiresAt!);
    const before = f.fake.tokenEndpointCalls;

    // Outside the lead time (default 5 minutes before expiry): nothing to do.
    f.clock.set(expiresAt - 6 * 60_000);
    await f.server.scheduler.tick();
    await delay(50);
    expect(f.fake.tokenEndpointCalls - before).toBe(0);

    // Inside the lead time: the scheduler refreshes the watched token set ahead of expiry.
    f.clock.set(expiresAt - 4 * 60_000);
    await f.server.scheduler.tick();
    for (const w of watchers) {
      const update = await w.next(3000);
      expect(update.state).toBe(ConnectionState.ACTIVE);
      expect(update.token?.version).toBe(first.version + 1n);
      expect(update.token?.accessToken).not.toBe(first.accessToken);
      expect(timestampMs(update.token!.expiresAt!)).toBeGreaterThan(expiresAt);
    }
    expect(f.fake.tokenEndpointCalls - before).toBe(1);

    // The new token is not due: another tick sends nothing upstream and nothing to watchers.
    await f.server.scheduler.tick();
    await delay(50);
    expect(f.fake.tokenEndpointCalls - before).toBe(1);
    for (const w of watchers) expect(w.received).toHaveLength(2);
  });

  it("server shutdown ends open streams with UNAVAILABLE", async () => {
    const watchers = [
      watch(grpc, { case: "tenantId", value: f.tenantId }),
      watch(grpcWeb, { case: "tenantId", value: f.tenantId }),
      watch(connectJson, { case: "connectionId", value: f.connectionId }),
      watch(connectBinary, { case: "connectionId", value: f.connectionId }),
    ];
    await Promise.all(watchers.map((w) => w.next(2000)));
    expect(f.server.broker.hub.size).toBe(4);

    const started = Date.now();
    await f.server.close();
    // Open streams must not hold shutdown for the whole grace period (10 s).
    expect(Date.now() - started).toBeLessThan(5000);
    for (const w of watchers) {
      const error = await w.end(3000);
      expect(error?.code).toBe(Code.Unavailable);
    }
    expect(f.server.broker.hub.size).toBe(0);
  });
});
