import { setTimeout as delay } from "node:timers/promises";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { backoffDelay } from "../packages/client/src/backoff.js";
import { createTokenClient, type TokenClient, type TokenClientOptions } from "@tokenbroker/client";
import type { FakeGrant } from "@tokenbroker/fake-xero";
import { importRefreshToken } from "../src/importer.js";
import { startBrokerServer, type BrokerServer } from "../src/server/broker-server.js";
import { startBroker, type BrokerFixture } from "./helpers/broker-fixture.js";
import { startFakeXeroApi, type FakeXeroApi } from "./helpers/fake-xero-api.js";
import { createRpcProbe, type RpcProbe } from "./helpers/rpc-probe.js";
import { eventually } from "./helpers/stream-reader.js";
import { rejection } from "./helpers/rejection.js";

/** Polls an async check every 10 ms until it holds. */
async function eventuallyAsync(check: () => Promise<boolean>, timeoutMs = 3000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(10);
  }
}

let f: BrokerFixture;
let probe: RpcProbe;
const cleanups: Array<() => Promise<void> | void> = [];

/** A token client on the fixture's broker whose RPCs `probe` counts; closed after the test. */
function tokenClient(options: Partial<TokenClientOptions> = {}): TokenClient {
  const tb = createTokenClient({ baseUrl: f.server.url, interceptors: [probe.interceptor], ...options });
  cleanups.push(() => tb.close());
  return tb;
}

/** A fake Xero API that rejects the given tokens; closed after the test. */
async function fakeApi(rejected: Set<string>): Promise<FakeXeroApi> {
  const api = await startFakeXeroApi((token) => token !== undefined && rejected.has(token));
  cleanups.push(() => api.close());
  return api;
}

/** The broker's current token, read with a separate plain client. */
async function currentToken(tenantId = f.tenantId) {
  const { token } = await f.client().getToken({ selector: { case: "tenantId", value: tenantId } });
  return token!;
}

/** Refreshes the token set from another client (ReportExpired of the current token); returns the new token. */
async function refreshElsewhere() {
  const current = await currentToken();
  const r = await f.client().reportExpired({
    selector: { case: "tenantId", value: f.tenantId },
    accessToken: current.accessToken,
  });
  expect(r.refreshed).toBe(true);
  return r.token!;
}

/** Closes what the test opened, then the fixture. */
async function teardown(): Promise<void> {
  for (const c of cleanups.splice(0).reverse()) await c();
  await f.close();
}

describe.each(["grpc", "connect"] as const)("the token client over %s", (protocol) => {
  beforeEach(async () => {
    f = await startBroker();
    probe = createRpcProbe();
  });
  afterEach(teardown);

  it("50 concurrent first calls share one WatchToken stream; 50 API calls after that make no RPC", async () => {
    const tb = tokenClient({ protocol });
    const expected = await currentToken();
    const refreshesBefore = f.fake.tokenEndpointCalls;

    const tokens = await Promise.all(Array.from({ length: 50 }, () => tb.getToken(f.tenantId)));
    expect(new Set(tokens)).toEqual(new Set([expected.accessToken]));
    expect(probe.count("WatchToken")).toBe(1);
    expect(probe.count("GetToken")).toBe(0);
    expect(f.server.broker.hub.count(f.connectionId)).toBe(1);

    const api = await fakeApi(new Set());
    const responses = await Promise.all(
      Array.from({ length: 50 }, (_, i) => tb.fetch(`${api.url}/api.xro/2.0/Invoices?page=${i}`, { tenantId: f.tenantId })),
    );
    expect(responses.map((r) => r.status)).toEqual(Array(50).fill(200));
    expect(api.requests).toHaveLength(50);
    for (const r of api.requests) {
      expect(r.token).toBe(expected.accessToken);
      expect(r.tenantId).toBe(f.tenantId);
    }
    const info = await tb.getTokenInfo(f.tenantId);
    expect(info.version).toBe(expected.version);
    expect(info.connectionId).toBe(f.connectionId);
    expect(info.expiresAt.getTime()).toBe(timestampMs(expected.expiresAt!));

    expect(probe.count("WatchToken")).toBe(1);
    expect(probe.count("GetToken")).toBe(0);
    expect(probe.count("ReportExpired")).toBe(0);
    expect(f.server.broker.hub.size).toBe(1);
    expect(f.fake.tokenEndpointCalls).toBe(refreshesBefore);
  });

  it("a refresh made elsewhere reaches the cache through the stream, with no RPC", async () => {
    const tb = tokenClient({ protocol });
    const first = await tb.getTokenInfo(f.tenantId);

    // Another channel reports the token: the broker refreshes and pushes the new one.
    const reported = await refreshElsewhere();
    await eventuallyAsync(async () => (await tb.getTokenInfo(f.tenantId)).version === reported.version, 3000, "the pushed token");
    expect(await tb.getToken(f.tenantId)).toBe(reported.accessToken);

    // The token expires at the broker and another channel's GetToken refreshes it.
    await f.expireToken();
    const afterExpiry = await currentToken();
    expect(afterExpiry.version).toBe(reported.version + 1n);
    await eventuallyAsync(async () => (await tb.getToken(f.tenantId)) === afterExpiry.accessToken, 3000, "the second pushed token");
    expect((await tb.getTokenInfo(f.tenantId)).version).toBe(first.version + 2n);

    expect(probe.count("GetToken")).toBe(0);
    expect(probe.count("ReportExpired")).toBe(0);
    expect(probe.count("WatchToken")).toBe(1);
  });
});

describe("the token client", () => {
  beforeEach(async () => {
    f = await startBroker();
    probe = createRpcProbe();
  });
  afterEach(teardown);

  it("while its stream is down, GetToken answers once; the stream comes back with growing delays", async () => {
    const reconnect = { initialDelayMs: 20, maxDelayMs: 160 };
    const tb = tokenClient({ reconnect });
    const first = await tb.getToken(f.tenantId);
    expect(f.server.broker.hub.size).toBe(1);

    probe.blockStreams = true;
    const droppedAt = performance.now();
    probe.dropStreams();
    await eventually(() => f.server.broker.hub.size === 0, 3000, "the server to see the stream end");

    // Without the stream the cache is not trusted: one GetToken (shared by concurrent callers) confirms it.
    const during = await Promise.all(Array.from({ length: 20 }, () => tb.getToken(f.tenantId)));
    expect(new Set(during)).toEqual(new Set([first]));
    expect(probe.count("GetToken")).toBe(1);
    expect(await tb.getToken(f.tenantId)).toBe(first);
    expect(probe.count("GetToken")).toBe(1);

    // Reconnect attempts keep coming, each delay at least half its base (equal jitter); the base doubles up to the cap.
    await delay(800);
    const starts = [droppedAt, ...probe.streamStarts.slice(1)];
    const attempts = starts.length - 1;
    expect(attempts).toBeGreaterThanOrEqual(4);
    for (let i = 1; i < starts.length; i++) {
      const base = Math.min(reconnect.maxDelayMs, reconnect.initialDelayMs * 2 ** (i - 1));
      expect(starts[i]! - starts[i - 1]!).toBeGreaterThanOrEqual(base / 2 - 2);
    }

    probe.blockStreams = false;
    await eventually(() => f.server.broker.hub.size === 1, 3000, "the stream to reopen");
    const refreshed = await refreshElsewhere();
    await eventuallyAsync(async () => (await tb.getToken(f.tenantId)) === refreshed.accessToken, 3000, "the pushed token");
    expect(probe.count("GetToken")).toBe(1);
  });

  it("follows the broker through a restart on the same port", async () => {
    const tb = tokenClient({ reconnect: { initialDelayMs: 20, maxDelayMs: 200 } });
    const first = await tb.getToken(f.tenantId);
    const { port } = f.server;
    await f.server.close(); // ends the stream with UNAVAILABLE
    const restarted: BrokerServer = await startBrokerServer({ port, store: f.store, identity: f.identity, clock: f.clock });
    cleanups.push(() => restarted.close());
    await restarted.scheduler.stop();

    await eventually(() => restarted.broker.hub.size === 1, 5000, "the client to reconnect");
    expect(await tb.getToken(f.tenantId)).toBe(first);
    // The new server pushes its refreshes over the new stream (f.client() reaches it: same port).
    const refreshed = await refreshElsewhere();
    await eventuallyAsync(async () => (await tb.getToken(f.tenantId)) === refreshed.accessToken, 3000, "the pushed token");
  });

  it("fetch: a 401 is reported once, refreshed once, and each request is retried with the new token", async () => {
    const tb = tokenClient();
    const old = await tb.getToken(f.tenantId);
    const api = await fakeApi(new Set([old]));
    const refreshesBefore = f.fake.refreshes;

    const responses = await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        tb.fetch(`${api.url}/api.xro/2.0/Invoices`, {
          tenantId: f.tenantId,
          method: "POST",
          headers: { "content-type": "application/json" },
          body: i % 2 === 0 ? JSON.stringify({ invoice: i }) : new TextEncoder().encode(JSON.stringify({ invoice: i })),
        }),
      ),
    );
    expect(responses.map((r) => r.status)).toEqual(Array(10).fill(200));
    expect(await responses[0]!.json()).toEqual({ ok: true });

    expect(probe.count("ReportExpired")).toBe(1);
    expect(f.fake.refreshes - refreshesBefore).toBe(1);
    const fresh = await currentToken();
    expect(fresh.accessToken).not.toBe(old);
    expect(api.requests).toHaveLength(20);
    for (let i = 0; i < 10; i++) {
      const sent = api.requests.filter((r) => r.body === JSON.stringify({ invoice: i }));
      expect(sent.map((r) => r.token)).toEqual([old, fresh.accessToken]);
      for (const r of sent) {
        expect(r.tenantId).toBe(f.tenantId);
        expect(r.contentType).toBe("application/json");
        expect(r.method).toBe("POST");
      }
    }
    // The cache has the new token: no more RPCs.
    expect(await tb.getToken(f.tenantId)).toBe(fresh.accessToken);
    expect(probe.count("GetToken")).toBe(0);
    expect(probe.count("ReportExpired")).toBe(1);
  });

  it("fetch: a stream body is not sent twice; the 401 comes back, and the next call has the new token", async () => {
    const tb = tokenClient();
    const old = await tb.getToken(f.tenantId);
    const api = await fakeApi(new Set([old]));
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode("streamed"));
        controller.close();
      },
    });
    const init = { tenantId: f.tenantId, method: "PUT", body, duplex: "half" } as Parameters<TokenClient["fetch"]>[1];
    const response = await tb.fetch(`${api.url}/api.xro/2.0/Files`, init);
    expect(response.status).toBe(401);
    expect(api.requests).toHaveLength(1);
    expect(probe.count("ReportExpired")).toBe(1);

    const again = await tb.fetch(`${api.url}/api.xro/2.0/Files`, { tenantId: f.tenantId, method: "PUT", body: "streamed" });
    expect(again.status).toBe(200);
    expect(api.requests[1]!.token).toBe((await currentToken()).accessToken);
    expect(api.requests[1]!.token).not.toBe(old);
  });

  it("close() ends every stream on the server and refuses later calls", async () => {
    const tb = tokenClient();
    const tenantB = f.imported.tenants[1]!.tenantId;
    await Promise.all([tb.getToken(f.tenantId), tb.getToken(tenantB)]);
    expect(f.server.broker.hub.size).toBe(2); // one stream per tenant asked for

    await tb.close();
    await eventually(() => f.server.broker.hub.size === 0, 3000, "the server to see both streams end");
    const err = await rejection(tb.getToken(f.tenantId));
    expect(err.code).toBe(Code.Canceled);
    expect(probe.count("WatchToken")).toBe(2);
  });

  it("sends its headers with every call, also over a transport of the caller's", async () => {
    const transport = createGrpcTransport({ baseUrl: f.server.url, interceptors: [probe.interceptor] });
    const tb = createTokenClient({ transport, headers: { "x-api-key": "test-key" } });
    cleanups.push(() => tb.close());
    const old = await tb.getToken(f.tenantId);
    const api = await fakeApi(new Set([old]));
    expect((await tb.fetch(api.url, { tenantId: f.tenantId })).status).toBe(200);
    expect(probe.headers("WatchToken")?.get("x-api-key")).toBe("test-key");
    expect(probe.headers("ReportExpired")?.get("x-api-key")).toBe("test-key");
    expect(api.requests.map((r) => r.path)).toEqual(["/", "/"]);
  });

  it("an unknown tenant is NOT_FOUND, and its stream is not retried", async () => {
    const tb = tokenClient({ reconnect: { initialDelayMs: 10, maxDelayMs: 20 } });
    const err = await rejection(tb.getToken("no-such-tenant"));
    expect(err.code).toBe(Code.NotFound);
    await delay(200);
    expect(probe.count("WatchToken")).toBe(1);
    expect(f.server.broker.hub.size).toBe(0);
  });
});

describe("the token client on a revoked grant", () => {
  let grant: FakeGrant;
  let tenantId: string;
  let connectionId: string;

  beforeEach(async () => {
    // Import our own grant so that the test knows its grant id at the fake.
    f = await startBroker({ noImport: true });
    probe = createRpcProbe();
    grant = f.fake.addGrant({ tenants: [{ tenantName: "Org A" }] });
    const imported = await importRefreshToken(f.store, f.identity, grant.refreshToken);
    tenantId = imported.tenants[0]!.tenantId;
    connectionId = imported.connectionId;
  });
  afterEach(teardown);

  it("rejects with FAILED_PRECONDITION without calling the broker, and recovers after a re-import", async () => {
    const tb = tokenClient();
    await tb.getToken(tenantId);
    const api = await fakeApi(new Set());

    f.fake.revokeGrant(grant.grantId);
    const stored = await f.store.tokens.getToken(connectionId);
    f.clock.set(stored!.expiresAt + 1000);
    // Another channel's GetToken makes the refresh that Xero refuses.
    const other = await rejection(f.client().getToken({ selector: { case: "tenantId", value: tenantId } }));
    expect(other.code).toBe(Code.FailedPrecondition);

    await eventuallyAsync(async () => (await rejection(tb.getToken(tenantId))).code === Code.FailedPrecondition, 3000, "the state");
    const calls = f.fake.tokenEndpointCalls;
    const results = await Promise.allSettled([
      ...Array.from({ length: 20 }, () => tb.getToken(tenantId)),
      ...Array.from({ length: 5 }, () => tb.fetch(`${api.url}/api.xro/2.0/Invoices`, { tenantId })),
    ]);
    for (const r of results) {
      expect(r.status).toBe("rejected");
      if (r.status !== "rejected") continue;
      const e = ConnectError.from(r.reason);
      expect(e.code).toBe(Code.FailedPrecondition);
      expect(e.rawMessage).toMatch(/re-?authori[sz]/i);
      expect(e.rawMessage).toContain("tokenbroker import");
      expect(e.rawMessage).toContain(connectionId);
    }
    expect(api.requests).toHaveLength(0);
    expect(probe.count("GetToken")).toBe(0);
    expect(probe.count("ReportExpired")).toBe(0);
    expect(probe.count("WatchToken")).toBe(1);
    expect(f.fake.tokenEndpointCalls).toBe(calls);

    // The user consents again; the import (and the scheduler's tick) bring the connection back on the same stream.
    const regrant = f.fake.addGrant({ userId: grant.userId, tenants: [{ tenantId }] });
    await importRefreshToken(f.store, f.identity, regrant.refreshToken);
    await f.server.scheduler.tick();
    const back = await currentToken(tenantId);
    await eventuallyAsync(
      async () => (await tb.getToken(tenantId).catch(() => "")) === back.accessToken,
      3000,
      "the connection to come back",
    );
    expect(probe.count("WatchToken")).toBe(1);
    expect(probe.count("GetToken")).toBe(0);
  });
});

describe("reconnect backoff", () => {
  it("doubles from the initial delay up to the cap, with jitter in the upper half", () => {
    const options = { initialDelayMs: 100, maxDelayMs: 30_000 };
    const lowest = Array.from({ length: 12 }, (_, i) => backoffDelay(i, options, () => 0));
    const highest = Array.from({ length: 12 }, (_, i) => backoffDelay(i, options, () => 1));
    expect(highest).toEqual([100, 200, 400, 800, 1600, 3200, 6400, 12_800, 25_600, 30_000, 30_000, 30_000]);
    expect(lowest).toEqual(highest.map((d) => d / 2));
    expect(backoffDelay(1000, options, () => 1)).toBe(30_000);
  });
});
