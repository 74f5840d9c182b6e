/**
 * The gRPC fast path (`src/server/grpc-fast-path.ts` serving the methods of
 * `src/server/token-service-fast-methods.ts`), spoken to with a bare
 * `node:http2` client: raw gRPC frames in, raw frames and trailers out, so
 * nothing of connect-es stands between the test and the wire. A call with a
 * `grpc-timeout` header is served here too, and times out as Connect's calls
 * do; gRPC-Web (`VIA_CONNECT`) goes to the Connect handler, and the same bytes
 * over both paths must get the same answer.
 * API keys, audit and debug logging: `grpc-fast-path-parity.test.ts`.
 */
import * as http2 from "node:http2";
import { Writable } from "node:stream";
import { setTimeout as delay } from "node:timers/promises";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import * as grpc from "@grpc/grpc-js";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  ConnectionState,
  GetTokenRequestSchema,
  GetTokenResponseSchema,
  ReportExpiredResponseSchema,
  WatchTokenResponseSchema,
  type GetTokenResponse,
  type ReportExpiredResponse,
  type WatchTokenResponse,
} from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { createLogger } from "../src/logger.js";
import { startBroker, type BrokerFixture } from "./helpers/broker-fixture.js";
import { scrapeMetrics } from "./helpers/prometheus-text.js";
import {
  VIA_CONNECT,
  frame,
  getTokenRequest,
  grpcHeaders,
  rawCall,
  reportExpiredRequest,
  statusOf,
  unary,
  watchRequest,
  type RawSelector,
  type TokenMethod,
} from "./helpers/raw-grpc.js";
import { eventually } from "./helpers/stream-reader.js";

const decodeWatch = (b: Buffer): WatchTokenResponse => fromBinary(WatchTokenResponseSchema, b);
const decodeGet = (b: Buffer): GetTokenResponse => fromBinary(GetTokenResponseSchema, b);
const decodeReport = (b: Buffer): ReportExpiredResponse => fromBinary(ReportExpiredResponseSchema, b);

/** A broker with an 8 KiB message limit and one HTTP/2 session to it, fresh for each test. */
function useBroker(): { f: BrokerFixture; session: http2.ClientHttp2Session } {
  const ctx = {} as { f: BrokerFixture; session: http2.ClientHttp2Session };
  beforeEach(async () => {
    ctx.f = await startBroker({ server: { readMaxBytes: 8192 } });
    ctx.session = http2.connect(ctx.f.server.url);
  });
  afterEach(async () => {
    ctx.session.destroy();
    await ctx.f.close();
  });
  return ctx;
}

/** GetToken over the fast path; fails the test unless it answered OK with one message. */
async function getToken(session: http2.ClientHttp2Session, selector: RawSelector, minValidForSeconds?: number) {
  const res = await unary(session, "GetToken", getTokenRequest(selector, minValidForSeconds));
  expect(res.status).toEqual({ code: 0, message: "" });
  expect(res.frames).toHaveLength(1);
  return { ...res, frame: res.frames[0]!, token: decodeGet(res.frames[0]!).token! };
}

/** `tokenbroker_tokens_served_total` of gRPC GetToken calls, from `/metrics`. */
async function servedGetTokens(f: BrokerFixture): Promise<number> {
  return (await scrapeMetrics(f.server.url)).value("tokenbroker_tokens_served_total", { rpc: "GetToken", protocol: "grpc" }) ?? 0;
}

describe("gRPC fast path: WatchToken", () => {
  const ctx = useBroker();

  it("streams the token, then the refreshed one as the same bytes to every subscriber, over the fast path", async () => {
    const { f, session } = ctx;
    const a = rawCall(session, "WatchToken", watchRequest({ case: "tenantId", value: f.tenantId }));
    const b = rawCall(session, "WatchToken", watchRequest({ case: "connectionId", value: f.connectionId }));
    await eventually(() => a.frames.length === 1 && b.frames.length === 1, 3000, "first tokens");
    // The fast path answered: it takes no compressed requests (identity only) and says `application/grpc`.
    expect(a.headers?.["grpc-accept-encoding"]).toBe("identity");
    expect(a.headers?.["content-type"]).toBe("application/grpc");
    expect(decodeWatch(a.frames[0]!).state).toBe(ConnectionState.ACTIVE);

    const { token } = await f.client().getToken({ selector: { case: "connectionId", value: f.connectionId } });
    await f.client().reportExpired({ selector: { case: "connectionId", value: f.connectionId }, accessToken: token!.accessToken });
    await eventually(() => a.frames.length === 2 && b.frames.length === 2, 3000, "refreshed tokens");
    const [m1, m2] = [decodeWatch(a.frames[0]!), decodeWatch(a.frames[1]!)];
    expect(m2.token!.version).toBe(m1.token!.version + 1n);
    expect(m2.token!.accessToken).not.toBe(m1.token!.accessToken);
    expect(a.frames[1]!.equals(b.frames[1]!)).toBe(true);
    a.cancel();
    b.cancel();
  });

  it("answers errors like the Connect path: NOT_FOUND, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, FAILED_PRECONDITION", async () => {
    const { f, session } = ctx;
    const ended = async (body: Buffer) => statusOf(await rawCall(session, "WatchToken", body).ended);
    expect((await ended(watchRequest({ case: "tenantId", value: "no-such-tenant" }))).code).toBe(Code.NotFound);
    const none = await ended(watchRequest(undefined));
    expect(none.code).toBe(Code.InvalidArgument);
    expect(none.message).toContain("tenant_id or connection_id");
    expect((await ended(frame(Buffer.alloc(16_384)))).code).toBe(Code.ResourceExhausted);

    // Revoked at Xero while the token expired: the first token cannot be had.
    f.fake.failNext(1, { status: 400, error: "invalid_grant" });
    await f.expireToken();
    expect((await ended(watchRequest({ case: "tenantId", value: f.tenantId }))).code).toBe(Code.FailedPrecondition);
    const revoked = rawCall(session, "WatchToken", watchRequest({ case: "tenantId", value: f.tenantId }));
    // The state is delivered, then the stream stays open; a token is never sent.
    await eventually(() => revoked.frames.length === 1, 3000, "the state");
    expect(decodeWatch(revoked.frames[0]!).state).toBe(ConnectionState.NEEDS_REAUTHORIZATION);
    expect(decodeWatch(revoked.frames[0]!).token).toBeUndefined();
    revoked.cancel();
  });

  it("a cancelled stream frees its subscription; shutdown ends the others with UNAVAILABLE", async () => {
    const { f, session } = ctx;
    const kept = rawCall(session, "WatchToken", watchRequest({ case: "tenantId", value: f.tenantId }));
    const dropped = rawCall(session, "WatchToken", watchRequest({ case: "tenantId", value: f.tenantId }));
    await eventually(() => kept.frames.length === 1 && dropped.frames.length === 1, 3000, "first tokens");
    expect(f.server.broker.hub.size).toBe(2);
    dropped.cancel();
    await eventually(() => f.server.broker.hub.size === 1, 3000, "the subscription freed");

    await f.server.close();
    expect(statusOf(await kept.ended).code).toBe(Code.Unavailable);
    expect(f.server.broker.hub.size).toBe(0);
  });
});

describe("gRPC fast path: GetToken and ReportExpired", () => {
  const ctx = useBroker();

  it("GetToken answers the stored token in one frame, then the same bytes again, with no upstream call", async () => {
    const { f, session } = ctx;
    const stored = await f.store.tokens.getToken(f.connectionId);
    const before = f.fake.tokenEndpointCalls;
    const first = await getToken(session, { case: "tenantId", value: f.tenantId });
    // The fast path answered (Connect says `application/grpc+proto` and no grpc-accept-encoding).
    expect(first.headers?.[":status"]).toBe(200);
    expect(first.headers?.["content-type"]).toBe("application/grpc");
    expect(first.headers?.["grpc-accept-encoding"]).toBe("identity");
    expect(first.token.accessToken).toBe(stored!.accessToken);
    expect(first.token.connectionId).toBe(f.connectionId);
    expect(first.token.tenantIds).toContain(f.tenantId);
    expect(first.token.version).toBe(BigInt(stored!.version));

    const second = await getToken(session, { case: "tenantId", value: f.tenantId });
    expect(second.frame.equals(first.frame)).toBe(true);
    expect(f.fake.tokenEndpointCalls).toBe(before);
  });

  it("GetToken with min_valid_for beyond the remaining validity refreshes once", async () => {
    const { f, session } = ctx;
    const stored = (await f.store.tokens.getToken(f.connectionId))!;
    f.clock.set(stored.expiresAt - 600_000); // 10 minutes left of 30
    const before = f.fake.tokenEndpointCalls;
    const selector = { case: "connectionId", value: f.connectionId } as const;

    expect((await getToken(session, selector)).token.version).toBe(BigInt(stored.version)); // default: 60 s
    expect((await getToken(session, selector, 540)).token.version).toBe(BigInt(stored.version));
    expect(f.fake.tokenEndpointCalls).toBe(before);

    const fresh = await getToken(session, selector, 700);
    expect(fresh.token.version).toBe(BigInt(stored.version) + 1n);
    expect(fresh.token.accessToken).not.toBe(stored.accessToken);
    const again = await getToken(session, selector, 700);
    expect(again.frame.equals(fresh.frame)).toBe(true);
    expect(f.fake.tokenEndpointCalls - before).toBe(1);
  });

  it("ReportExpired of the current token refreshes it once; of an older token returns the current one", async () => {
    const { f, session } = ctx;
    const selector = { case: "tenantId", value: f.tenantId } as const;
    const old = (await getToken(session, selector)).token;
    const before = f.fake.tokenEndpointCalls;

    const reported = await unary(session, "ReportExpired", reportExpiredRequest(selector, old.accessToken));
    expect(reported.status).toEqual({ code: 0, message: "" });
    expect(reported.headers?.["grpc-accept-encoding"]).toBe("identity");
    expect(reported.frames).toHaveLength(1);
    const r1 = decodeReport(reported.frames[0]!);
    expect(r1.refreshed).toBe(true);
    expect(r1.token!.version).toBe(old.version + 1n);
    expect(r1.token!.accessToken).not.toBe(old.accessToken);
    expect(f.fake.tokenEndpointCalls - before).toBe(1);

    const late = await unary(session, "ReportExpired", reportExpiredRequest(selector, old.accessToken));
    expect(late.status.code).toBe(0);
    const r2 = decodeReport(late.frames[0]!);
    expect(r2.refreshed).toBe(false);
    expect(r2.token!.version).toBe(r1.token!.version);
    expect(r2.token!.accessToken).toBe(r1.token!.accessToken);
    expect(f.fake.tokenEndpointCalls - before).toBe(1);
    expect((await getToken(session, selector)).token.accessToken).toBe(r1.token!.accessToken);
  });

  it("/metrics counts the tokens served over the fast path as gRPC GetToken", async () => {
    const { f, session } = ctx;
    const before = await servedGetTokens(f);
    for (let i = 0; i < 5; i++) {
      const res = await getToken(session, { case: "tenantId", value: f.tenantId });
      expect(res.headers?.["grpc-accept-encoding"]).toBe("identity");
    }
    // Refused calls hand out no token.
    const refused = await unary(session, "GetToken", getTokenRequest({ case: "tenantId", value: "no-such-tenant" }));
    expect(refused.status.code).toBe(Code.NotFound);
    expect(await servedGetTokens(f)).toBe(before + 5);
  });
});

/** A GetTokenRequest's bytes, unframed. */
const getTokenBytes = (selector: RawSelector): Uint8Array =>
  toBinary(GetTokenRequestSchema, create(GetTokenRequestSchema, selector ? { selector } : {}));

/** A request body that fails, with the code and message both paths answer it with. */
interface BadRequest {
  method: TokenMethod;
  name: string;
  body: (f: BrokerFixture) => Buffer;
  code: Code;
  message: string | RegExp;
}

const bad = (method: TokenMethod, name: string, body: BadRequest["body"], code: Code, message: string | RegExp): BadRequest => ({
  method,
  name,
  body,
  code,
  message,
});
const tenantOf = (f: BrokerFixture) => ({ case: "tenantId", value: f.tenantId }) as const;
const noSuchTenant = { case: "tenantId", value: "no-such-tenant" } as const;
const noSuchConnection = { case: "connectionId", value: "no-such-connection" } as const;
const oneGetToken = (f: BrokerFixture) => getTokenRequest(tenantOf(f));
const EXTRA = "protocol error: received extra input message for unary method";
const MISSING = "protocol error: missing input message for unary method";
const INCOMPLETE = "protocol error: incomplete envelope";
const tooLarge = (size: number) => `message size ${size} is larger than configured readMaxBytes 8192`;
const { NotFound, InvalidArgument, ResourceExhausted, Unimplemented, Internal } = Code;

/** Refused by the service (the message is well formed). */
const refusedRequests: BadRequest[] = [
  bad("GetToken", "an unknown tenant", () => getTokenRequest(noSuchTenant), NotFound, "tenant no-such-tenant is not connected"),
  bad("ReportExpired", "an unknown connection", () => reportExpiredRequest(noSuchConnection, "x"), NotFound, /no-such-connection/),
  bad(
    "GetToken",
    "no selector",
    () => getTokenRequest(undefined),
    InvalidArgument,
    /^name the token set: set exactly one of tenant_id or connection_id$/,
  ),
  bad("ReportExpired", "no selector", () => reportExpiredRequest(undefined, "x"), InvalidArgument, /tenant_id or connection_id/),
  bad(
    "GetToken",
    "a negative min_valid_for",
    (f) => getTokenRequest(tenantOf(f), -1),
    InvalidArgument,
    "min_valid_for must not be negative",
  ),
  bad("ReportExpired", "an empty access_token", (f) => reportExpiredRequest(tenantOf(f), ""), InvalidArgument, "access_token is empty"),
];

/** Bodies that are not one well-formed gRPC message (the broker's readMaxBytes is 8192). */
const malformedBodies: BadRequest[] = [
  bad("GetToken", "a message over readMaxBytes", () => frame(Buffer.alloc(16_384)), ResourceExhausted, tooLarge(16_384)),
  bad(
    "GetToken",
    "a length prefix over readMaxBytes",
    () => frame(Buffer.alloc(10)).fill(0xff, 1, 5),
    ResourceExhausted,
    tooLarge(2 ** 32 - 1),
  ),
  bad("GetToken", "a compressed message over readMaxBytes", () => frame(Buffer.alloc(9000), 1), ResourceExhausted, tooLarge(9000)),
  bad("GetToken", "a 3-byte body", () => Buffer.from([0, 0, 0]), InvalidArgument, INCOMPLETE),
  bad("GetToken", "a message shorter than its prefix", () => frame(Buffer.alloc(100)).subarray(0, 50), InvalidArgument, INCOMPLETE),
  bad("GetToken", "an empty body", () => Buffer.alloc(0), Unimplemented, MISSING),
  bad("ReportExpired", "an empty body", () => Buffer.alloc(0), Unimplemented, MISSING),
  bad("GetToken", "two messages", (f) => Buffer.concat([oneGetToken(f), oneGetToken(f)]), Unimplemented, EXTRA),
  bad(
    "GetToken",
    "four messages, each under readMaxBytes, over it together",
    () => Buffer.concat(Array.from({ length: 4 }, () => getTokenRequest({ case: "tenantId", value: "t".repeat(5000) }))),
    Unimplemented,
    EXTRA,
  ),
  bad("GetToken", "a message, then 3 bytes", (f) => Buffer.concat([oneGetToken(f), Buffer.from([0, 0, 0])]), InvalidArgument, INCOMPLETE),
  bad(
    "GetToken",
    "a message, then garbage",
    (f) => Buffer.concat([oneGetToken(f), frame(Buffer.from([0xff, 0xff]))]),
    Internal,
    /^parse binary: /,
  ),
  bad(
    "GetToken",
    "a message, then a length prefix over readMaxBytes",
    (f) => Buffer.concat([oneGetToken(f), frame(Buffer.alloc(0)).fill(0x7f, 1, 5)]),
    ResourceExhausted,
    tooLarge(0x7f7f7f7f),
  ),
  bad("GetToken", "garbage protobuf", () => frame(Buffer.from([0xff, 0xff, 0xff, 0xff])), Internal, /^parse binary: /),
  bad(
    "GetToken",
    "the compressed flag without grpc-encoding",
    (f) => frame(getTokenBytes(tenantOf(f)), 1),
    Internal,
    "received compressed envelope, but do not know how to decompress",
  ),
];

/**
 * Which handler answered a call: the fast path says `application/grpc`; connect-node says
 * `application/grpc+proto` to gRPC (a body the fast path handed it) and `application/grpc-web+proto` to
 * gRPC-Web (`VIA_CONNECT`).
 */
function servedBy(headers: http2.IncomingHttpHeaders | undefined): "fast path" | "Connect" | "Connect (gRPC-Web)" | undefined {
  const type = headers?.["content-type"];
  if (type === "application/grpc") return "fast path";
  if (type === "application/grpc+proto") return "Connect";
  return type === "application/grpc-web+proto" ? "Connect (gRPC-Web)" : undefined;
}

describe("gRPC fast path: refused requests get the Connect path's answer", () => {
  const ctx = useBroker();

  it.each([...refusedRequests, ...malformedBodies])("$method with $name", async (request) => {
    const { method, body, code, message } = request;
    const { f, session } = ctx;
    const fast = await unary(session, method, body(f));
    const viaConnect = await unary(session, method, body(f), VIA_CONNECT);
    // A well-formed request is answered by the fast path; a malformed body by Connect's own handler of the method.
    const answeredBy = refusedRequests.includes(request) ? "fast path" : "Connect";
    expect([servedBy(fast.headers), servedBy(viaConnect.headers)]).toEqual([answeredBy, "Connect (gRPC-Web)"]);
    expect(fast.frames).toEqual([]);
    expect(viaConnect.frames).toEqual([]);
    expect(fast.status.code).toBe(code);
    if (typeof message === "string") expect(fast.status.message).toBe(message);
    else expect(fast.status.message).toMatch(message);
    expect(fast.status).toEqual(viaConnect.status);
    // The session survives every refusal.
    expect((await getToken(session, tenantOf(f))).token.connectionId).toBe(f.connectionId);
  });

  it("serves a message whose flags byte has bits other than compression set, as Connect does", async () => {
    const { f, session } = ctx;
    const body = frame(getTokenBytes(tenantOf(f)), 0x02);
    const fast = await unary(session, "GetToken", body);
    const viaConnect = await unary(session, "GetToken", body, VIA_CONNECT);
    expect([servedBy(fast.headers), servedBy(viaConnect.headers)]).toEqual(["fast path", "Connect (gRPC-Web)"]);
    expect(fast.status).toEqual({ code: 0, message: "" });
    expect(viaConnect.status).toEqual({ code: 0, message: "" });
    expect(decodeGet(fast.frames[0]!).token).toEqual(decodeGet(viaConnect.frames[0]!).token);
  });

  it("WatchToken refuses malformed bodies with the Connect path's answer", async () => {
    const { f, session } = ctx;
    const one = watchRequest(tenantOf(f));
    const bodies = [Buffer.alloc(0), Buffer.from([0, 0]), frame(Buffer.from([0xff])), Buffer.concat([one, one]), frame(Buffer.alloc(9000))];
    for (const body of bodies) {
      const fast = rawCall(session, "WatchToken", body);
      const viaConnect = rawCall(session, "WatchToken", body, VIA_CONNECT);
      const [a, b] = [statusOf(await fast.ended), statusOf(await viaConnect.ended)];
      expect([servedBy(fast.headers), servedBy(viaConnect.headers)]).toEqual(["Connect", "Connect (gRPC-Web)"]);
      expect(a.code).not.toBe(0);
      expect(a).toEqual(b);
    }
  });
});

/** A sample of `/metrics` (0 when absent). */
async function metric(f: BrokerFixture, name: string, labels: Record<string, string>): Promise<number> {
  return (await scrapeMetrics(f.server.url)).value(name, labels) ?? 0;
}

describe("gRPC fast path under load and with clients that give up", () => {
  const ctx = useBroker();

  it("300 concurrent GetToken at the moment of expiry, on one HTTP/2 session: one upstream refresh, one new token for all", async () => {
    const { f, session } = ctx;
    const old = (await getToken(session, tenantOf(f))).token;
    await f.expireToken();
    f.fake.setLatency(100); // keep the refresh in flight while callers pile up
    const before = f.fake.tokenEndpointCalls;
    const byConnection = getTokenRequest({ case: "connectionId", value: f.connectionId });
    const byTenant = getTokenRequest(tenantOf(f));
    const results = await Promise.all(Array.from({ length: 300 }, (_, i) => unary(session, "GetToken", i % 2 ? byTenant : byConnection)));

    expect(f.fake.tokenEndpointCalls - before).toBe(1);
    expect(new Set(results.map((r) => servedBy(r.headers)))).toEqual(new Set(["fast path"]));
    expect(results.every((r) => r.status.code === 0 && r.frames.length === 1)).toBe(true);
    // One new token, sent as the same bytes to every caller.
    expect(new Set(results.map((r) => r.frames[0]!.toString("base64"))).size).toBe(1);
    const token = decodeGet(results[0]!.frames[0]!).token!;
    expect(token.version).toBe(old.version + 1n);
    expect(token.accessToken).not.toBe(old.accessToken);
  });

  it("200 streams reset mid-request with unusual RST_STREAM codes leave the server serving", async () => {
    const { f, session } = ctx;
    const served = await servedGetTokens(f);
    const { NGHTTP2_PROTOCOL_ERROR, NGHTTP2_INTERNAL_ERROR, NGHTTP2_FLOW_CONTROL_ERROR, NGHTTP2_ENHANCE_YOUR_CALM } = http2.constants;
    const codes = [NGHTTP2_PROTOCOL_ERROR, NGHTTP2_INTERNAL_ERROR, NGHTTP2_FLOW_CONTROL_ERROR, NGHTTP2_ENHANCE_YOUR_CALM];
    const half = (body: Buffer) => body.subarray(0, Math.ceil(body.length / 2));
    // Node's `close(code)` ends the request (END_STREAM) just before its RST_STREAM; `destroy(error)`
    // resets it with INTERNAL_ERROR in the middle of the body, with no end.
    const variants: Array<{ method: TokenMethod; body: Buffer; end?: true; reset: (req: http2.ClientHttp2Stream, code: number) => void }> =
      [
        { method: "GetToken", body: half(getTokenRequest(tenantOf(f))), reset: (req, code) => req.close(code) },
        // A watch under way (its request ended): only the RST_STREAM goes out.
        { method: "WatchToken", body: watchRequest(tenantOf(f)), end: true, reset: (req, code) => req.close(code) },
        {
          method: "ReportExpired",
          body: half(reportExpiredRequest(tenantOf(f), "some-token")),
          reset: (req) => req.destroy(new Error("gone")),
        },
        // A whole request without its end: the server waits for the rest.
        { method: "WatchToken", body: watchRequest(tenantOf(f)), reset: (req) => req.destroy(new Error("gone")) },
        { method: "GetToken", body: half(getTokenRequest(tenantOf(f))), reset: (req) => req.destroy(new Error("gone")) },
        { method: "WatchToken", body: half(watchRequest(tenantOf(f))), reset: (req, code) => req.close(code) },
      ];
    for (let batch = 0; batch < 10; batch++) {
      const streams = Array.from({ length: 20 }, (_, i) => {
        const variant = variants[i % variants.length]!;
        const req = session.request(grpcHeaders(variant.method));
        req.on("error", () => {}); // a reset with an error code fails the client's own stream too
        if (variant.end) req.end(variant.body);
        else req.write(variant.body);
        return { req, variant };
      });
      await delay(20); // the data reaches the server
      const watching = streams.filter(({ variant }) => variant.end).length;
      await eventually(() => f.server.broker.hub.size === watching, 3000, "the watches under way");
      await Promise.all(
        streams.map(({ req, variant }, i) => {
          const closed = new Promise((resolve) => req.once("close", resolve));
          variant.reset(req, codes[(batch + i) % codes.length]!);
          return closed;
        }),
      );
    }
    // The session's frames are handled in order: this call is answered after every reset was.
    const after = await getToken(session, tenantOf(f));
    expect(servedBy(after.headers)).toBe("fast path");
    const other = http2.connect(f.server.url);
    try {
      expect((await getToken(other, tenantOf(f))).frame.equals(after.frame)).toBe(true);
    } finally {
      other.destroy();
    }
    expect(await servedGetTokens(f)).toBe(served + 2); // no reset call got a token
    await eventually(() => f.server.broker.hub.size === 0, 3000, "every watch freed");
  });

  it("a GetToken cancelled while it waits for a slow refresh is let go at once; the refresh still serves the next caller", async () => {
    const { f, session } = ctx;
    const old = (await getToken(session, tenantOf(f))).token;
    await f.expireToken();
    f.fake.setLatency(1500);
    const waits = { cause: "caller", outcome: "error" };
    const refreshes = { cause: "caller", outcome: "ok" };
    const before = {
      calls: f.fake.tokenEndpointCalls,
      served: await servedGetTokens(f),
      failedWaits: await metric(f, "tokenbroker_refresh_wait_seconds_count", waits),
      refreshes: await metric(f, "tokenbroker_refreshes_total", refreshes),
    };

    const waiting = rawCall(session, "GetToken", getTokenRequest(tenantOf(f)));
    await eventually(() => f.fake.tokenEndpointCalls === before.calls + 1, 3000, "the refresh under way");
    waiting.cancel();
    await expect(waiting.ended).rejects.toThrow(/closed without status/);
    // The caller's wait ended (as failed) while the refresh goes on: nothing holds on to the cancelled call.
    const deadline = Date.now() + 1000;
    while ((await metric(f, "tokenbroker_refresh_wait_seconds_count", waits)) === before.failedWaits && Date.now() < deadline) {
      await delay(10);
    }
    expect(await metric(f, "tokenbroker_refresh_wait_seconds_count", waits)).toBe(before.failedWaits + 1);
    expect(await metric(f, "tokenbroker_refreshes_total", refreshes)).toBe(before.refreshes);

    // The next caller joins the refresh in flight.
    const next = await getToken(session, tenantOf(f));
    expect(next.token.version).toBe(old.version + 1n);
    expect(f.fake.tokenEndpointCalls - before.calls).toBe(1);
    expect(await metric(f, "tokenbroker_refreshes_total", refreshes)).toBe(before.refreshes + 1);
    expect(await servedGetTokens(f)).toBe(before.served + 1); // not the cancelled call
  });
});

/** GetToken through `@grpc/grpc-js` with a deadline (`grpc-timeout`), as the Python example's `timeout=10` sends it. */
function grpcJsGetToken(
  url: string,
  selector: RawSelector,
  deadlineMs: number,
): Promise<{ headers: grpc.Metadata | undefined; response?: GetTokenResponse; error?: grpc.ServiceError }> {
  const client = new grpc.Client(new URL(url).host, grpc.credentials.createInsecure());
  return new Promise((resolve) => {
    let headers: grpc.Metadata | undefined;
    const call = client.makeUnaryRequest(
      "/tokenbroker.v1.TokenService/GetToken",
      (b: Buffer) => b,
      decodeGet,
      getTokenRequest(selector).subarray(5),
      new grpc.Metadata(),
      { deadline: Date.now() + deadlineMs },
      (error, response) => {
        client.close();
        resolve({ headers, ...(error ? { error } : {}), ...(response ? { response } : {}) });
      },
    );
    call.on("metadata", (m) => (headers = m));
  });
}

describe("gRPC fast path: deadlines (grpc-timeout)", () => {
  const ctx = useBroker();

  it("a grpc-js call with a 10 s deadline is served by the fast path", async () => {
    const { f } = ctx;
    const res = await grpcJsGetToken(f.server.url, tenantOf(f), 10_000);
    expect(res.error).toBeUndefined();
    expect(res.response?.token?.connectionId).toBe(f.connectionId);
    expect(res.headers?.get("content-type")).toEqual(["application/grpc"]); // Connect would say application/grpc+proto
    const raw = await unary(ctx.session, "GetToken", getTokenRequest(tenantOf(f)), { "grpc-timeout": "10S" });
    expect([raw.status, servedBy(raw.headers)]).toEqual([{ code: 0, message: "" }, "fast path"]);
  });

  it("a call that waits on a refresh longer than its deadline ends DEADLINE_EXCEEDED, as on Connect; the refresh serves the next caller", async () => {
    const { f, session } = ctx;
    const old = (await getToken(session, tenantOf(f))).token;
    await f.expireToken();
    f.fake.setLatency(1500);
    const calls = f.fake.tokenEndpointCalls;
    const served = await servedGetTokens(f);
    const started = performance.now();
    const fast = await unary(session, "GetToken", getTokenRequest(tenantOf(f)), { "grpc-timeout": "300m" });
    const tookMs = performance.now() - started;
    const viaConnect = await unary(session, "GetToken", getTokenRequest(tenantOf(f)), { ...VIA_CONNECT, "grpc-timeout": "300m" });
    expect(servedBy(fast.headers)).toBe("fast path");
    expect(fast.status).toEqual({ code: Code.DeadlineExceeded, message: "the operation timed out" });
    expect(viaConnect.status).toEqual(fast.status);
    expect(tookMs).toBeGreaterThanOrEqual(290);
    expect(tookMs).toBeLessThan(1400); // not held until the refresh ended
    // A grpc-js caller with a deadline gets the same.
    const js = await grpcJsGetToken(f.server.url, tenantOf(f), 300);
    expect(js.error?.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    // The refresh went on, once, and serves the next caller; no timed-out call was counted as served.
    const next = await getToken(session, tenantOf(f));
    expect(next.token.version).toBe(old.version + 1n);
    expect(f.fake.tokenEndpointCalls - calls).toBe(1);
    expect(await servedGetTokens(f)).toBe(served + 1);
  });

  it("a malformed grpc-timeout is left to Connect, which refuses it", async () => {
    const { f, session } = ctx;
    const res = await unary(session, "GetToken", getTokenRequest(tenantOf(f)), { "grpc-timeout": "soon" });
    expect(servedBy(res.headers)).toBe("Connect");
    expect(res.status).toEqual({ code: Code.InvalidArgument, message: "protocol error: invalid grpc timeout value: soon" });
  });

  it("a deadline past what a timer holds is cut to the longest one, not fired at once", async () => {
    const { f, session } = ctx;
    const res = await unary(session, "GetToken", getTokenRequest(tenantOf(f)), { "grpc-timeout": "99999999H" });
    expect([res.status.code, servedBy(res.headers)]).toEqual([0, "fast path"]);
  });
});

describe("gRPC fast path: a storm of waiting calls, some of which give up", () => {
  let f: BrokerFixture;
  let session: http2.ClientHttp2Session;
  let log = "";
  beforeEach(async () => {
    log = "";
    const destination = new Writable({
      write(chunk: Buffer, _encoding, done) {
        log += chunk.toString("utf8");
        done();
      },
    });
    f = await startBroker({ server: { logger: createLogger({ level: "info", destination }) } });
    session = http2.connect(f.server.url);
  });
  afterEach(async () => {
    session.destroy();
    await f.close();
  });

  it("answers 300 waiting calls when the refresh ends (a hundred per turn of the event loop); the 100 cancelled are let go, not logged as errors", async () => {
    const old = (await getToken(session, tenantOf(f))).token;
    await f.expireToken();
    f.fake.setLatency(300);
    const before = {
      calls: f.fake.tokenEndpointCalls,
      served: await servedGetTokens(f),
      failedWaits: await metric(f, "tokenbroker_refresh_wait_seconds_count", { cause: "caller", outcome: "error" }),
    };
    const calls = Array.from({ length: 300 }, () => rawCall(session, "GetToken", getTokenRequest(tenantOf(f))));
    await eventually(() => f.fake.tokenEndpointCalls === before.calls + 1, 3000, "the refresh under way");
    const cancelled = calls.filter((_, i) => i % 3 === 0);
    for (const call of cancelled) call.cancel();
    const kept = calls.filter((_, i) => i % 3 !== 0);

    const statuses = await Promise.all(kept.map(async (c) => statusOf(await c.ended)));
    expect(statuses.every((s) => s.code === 0)).toBe(true);
    expect(kept.every((c) => c.frames.length === 1 && c.frames[0]!.equals(kept[0]!.frames[0]!))).toBe(true);
    const token = decodeGet(kept[0]!.frames[0]!).token!;
    expect(token.version).toBe(old.version + 1n);
    for (const call of cancelled) await expect(call.ended).rejects.toThrow(/closed without status/);

    expect(f.fake.tokenEndpointCalls - before.calls).toBe(1);
    expect(await servedGetTokens(f)).toBe(before.served + 200);
    expect(await metric(f, "tokenbroker_refresh_wait_seconds_count", { cause: "caller", outcome: "error" })).toBe(before.failedWaits + 100);
    // A caller that went away is not the broker's fault: nothing at error level, no "internal error".
    const lines = log
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { level: number; msg?: string });
    expect(lines.filter((l) => l.level >= 50 || l.msg === "internal error")).toEqual([]);
    expect(lines.some((l) => l.msg?.includes("refresh"))).toBe(true); // the log was captured
  });
});
