/**
 * The gRPC WatchToken fast path (`src/server/grpc-watch-fast-path.ts`), spoken
 * to with a bare `node:http2` client: raw gRPC frames in, raw frames and
 * trailers out, so nothing of connect-es stands between the test and the wire.
 */
import * as http2 from "node:http2";
import { Writable } from "node:stream";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  ConnectionState,
  WatchTokenRequestSchema,
  WatchTokenResponseSchema,
  type WatchTokenResponse,
} from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import type { AuditEntry } from "../src/audit/audit-log.js";
import { createLogger } from "../src/logger.js";
import { startBroker, type BrokerFixture } from "./helpers/broker-fixture.js";
import { startSecureBroker, type SecureBrokerFixture } from "./helpers/secure-broker.js";
import { eventually } from "./helpers/stream-reader.js";

/** One raw gRPC call: headers, frames as they arrive, trailers. */
interface RawCall {
  headers: http2.IncomingHttpHeaders | undefined;
  /** Each message's bytes (without the 5-byte prefix). */
  frames: Buffer[];
  /** Trailers (or the headers of a trailers-only response) once the call ended. */
  ended: Promise<http2.IncomingHttpHeaders>;
  cancel(): void;
}

function frame(bytes: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + bytes.length);
  out.writeUInt32BE(bytes.length, 1);
  out.set(bytes, 5);
  return out;
}

function watchRequest(selector: { case: "tenantId" | "connectionId"; value: string } | undefined): Buffer {
  return frame(toBinary(WatchTokenRequestSchema, create(WatchTokenRequestSchema, selector ? { selector } : {})));
}

function call(session: http2.ClientHttp2Session, body: Buffer, headers: http2.OutgoingHttpHeaders = {}): RawCall {
  const req = session.request({
    ":method": "POST",
    ":path": "/tokenbroker.v1.TokenService/WatchToken",
    "content-type": "application/grpc",
    te: "trailers",
    ...headers,
  });
  const result: RawCall = {
    headers: undefined,
    frames: [],
    ended: new Promise((resolve, reject) => {
      let trailersOnly: http2.IncomingHttpHeaders | undefined;
      req.on("response", (h) => {
        result.headers = h;
        if (h["grpc-status"] !== undefined) trailersOnly = h;
      });
      req.on("trailers", (t) => resolve(t));
      req.on("end", () => trailersOnly && resolve(trailersOnly));
      req.on("close", () => reject(new Error(`stream closed without status (rst ${req.rstCode})`)));
    }),
    cancel: () => req.close(http2.constants.NGHTTP2_CANCEL),
  };
  result.ended.catch(() => {});
  let pending = Buffer.alloc(0);
  req.on("data", (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      const size = pending.readUInt32BE(1);
      result.frames.push(pending.subarray(5, 5 + size));
      pending = pending.subarray(5 + size);
    }
  });
  req.end(body);
  return result;
}

const decode = (b: Buffer): WatchTokenResponse => fromBinary(WatchTokenResponseSchema, b);

describe("gRPC WatchToken fast path", () => {
  let f: BrokerFixture;
  let session: http2.ClientHttp2Session;

  beforeEach(async () => {
    f = await startBroker({ server: { readMaxBytes: 8192 } });
    session = http2.connect(f.server.url);
  });
  afterEach(async () => {
    session.destroy();
    await f.close();
  });

  it("streams the token, then the refreshed one as the same bytes to every subscriber, over the fast path", async () => {
    const a = call(session, watchRequest({ case: "tenantId", value: f.tenantId }));
    const b = call(session, watchRequest({ case: "connectionId", value: f.connectionId }));
    await eventually(() => a.frames.length === 1 && b.frames.length === 1, 3000, "first tokens");
    // Connect's handler advertises gzip; the fast path takes no compressed requests.
    expect(a.headers?.["grpc-accept-encoding"]).toBe("identity");
    expect(a.headers?.["content-type"]).toBe("application/grpc");
    expect(decode(a.frames[0]!).state).toBe(ConnectionState.ACTIVE);

    const { token } = await f.client().getToken({ selector: { case: "connectionId", value: f.connectionId } });
    await f.client().reportExpired({ selector: { case: "connectionId", value: f.connectionId }, accessToken: token!.accessToken });
    await eventually(() => a.frames.length === 2 && b.frames.length === 2, 3000, "refreshed tokens");
    const [m1, m2] = [decode(a.frames[0]!), decode(a.frames[1]!)];
    expect(m2.token!.version).toBe(m1.token!.version + 1n);
    expect(m2.token!.accessToken).not.toBe(m1.token!.accessToken);
    expect(a.frames[1]!.equals(b.frames[1]!)).toBe(true);
    a.cancel();
    b.cancel();
  });

  it("answers errors like the Connect path: NOT_FOUND, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, FAILED_PRECONDITION", async () => {
    const unknown = await call(session, watchRequest({ case: "tenantId", value: "no-such-tenant" })).ended;
    expect(unknown["grpc-status"]).toBe(String(Code.NotFound));
    const none = await call(session, watchRequest(undefined)).ended;
    expect(none["grpc-status"]).toBe(String(Code.InvalidArgument));
    expect(decodeURIComponent(String(none["grpc-message"]))).toContain("tenant_id or connection_id");
    const huge = await call(session, frame(Buffer.alloc(16_384))).ended;
    expect(huge["grpc-status"]).toBe(String(Code.ResourceExhausted));

    // Revoked at Xero while the token expired: the first token cannot be had.
    f.fake.failNext(1, { status: 400, error: "invalid_grant" });
    await f.expireToken();
    const failed = await call(session, watchRequest({ case: "tenantId", value: f.tenantId })).ended;
    expect(failed["grpc-status"]).toBe(String(Code.FailedPrecondition));
    const revoked = call(session, watchRequest({ case: "tenantId", value: f.tenantId }));
    // The state is delivered, then the stream stays open; a token is never sent.
    await eventually(() => revoked.frames.length === 1, 3000, "the state");
    expect(decode(revoked.frames[0]!).state).toBe(ConnectionState.NEEDS_REAUTHORIZATION);
    expect(decode(revoked.frames[0]!).token).toBeUndefined();
    revoked.cancel();
  });

  it("a cancelled stream frees its subscription; shutdown ends the others with UNAVAILABLE", async () => {
    const kept = call(session, watchRequest({ case: "tenantId", value: f.tenantId }));
    const dropped = call(session, watchRequest({ case: "tenantId", value: f.tenantId }));
    await eventually(() => kept.frames.length === 1 && dropped.frames.length === 1, 3000, "first tokens");
    expect(f.server.broker.hub.size).toBe(2);
    dropped.cancel();
    await eventually(() => f.server.broker.hub.size === 1, 3000, "the subscription freed");

    await f.server.close();
    const trailers = await kept.ended;
    expect(trailers["grpc-status"]).toBe(String(Code.Unavailable));
    expect(f.server.broker.hub.size).toBe(0);
  });
});

describe("gRPC WatchToken fast path with API keys, audit and debug logging on", () => {
  let f: SecureBrokerFixture;
  let session: http2.ClientHttp2Session;
  let logText = "";

  beforeEach(async () => {
    logText = "";
    const destination = new Writable({
      write(chunk: Buffer | string, _encoding, callback) {
        logText += chunk.toString();
        callback();
      },
    });
    f = await startSecureBroker({ server: { logger: createLogger({ level: "debug", destination }) } });
    session = http2.connect(f.server.url);
  });
  afterEach(async () => {
    session.destroy();
    await f?.close();
  });

  /** The debug lines of WatchToken calls written so far, without their durations. */
  const rpcLines = () =>
    logText
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l["event"] === "rpc" && l["method"] === "WatchToken")
      .map(({ method, key, tenantId, connectionId, selector, code }) => ({ method, key, tenantId, connectionId, selector, code }));

  it("serves the stream itself and answers, audits and logs exactly as the Connect path does", async () => {
    const [tenantA, tenantB] = f.imported.tenants.map((t) => t.tenantId) as [string, string];
    const onlyA = f.createKey("only-a", [tenantA]);
    const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
    const tenant = (value: string) => watchRequest({ case: "tenantId", value });

    /** The same calls over one path; a `grpc-timeout` header sends a gRPC call to Connect instead. */
    const scenario = async (extra: http2.OutgoingHttpHeaders) => {
      const status = async (body: Buffer, headers: http2.OutgoingHttpHeaders = {}) => {
        const c = call(session, body, { ...extra, ...headers });
        const trailers = await c.ended;
        expect(c.frames).toEqual([]);
        return Number(trailers["grpc-status"]);
      };
      const codes = {
        noKey: await status(tenant(tenantA)),
        badKey: await status(tenant(tenantA), bearer(`tbk_${"A".repeat(43)}`)),
        otherTenant: await status(tenant(tenantB), bearer(onlyA)),
        unknownTenant: await status(tenant("00000000-0000-0000-0000-000000000000"), bearer(onlyA)),
        otherConnection: await status(watchRequest({ case: "connectionId", value: "no-such-connection" }), bearer(onlyA)),
        noSelector: await status(watchRequest(undefined), bearer(onlyA)),
      };
      const ok = call(session, tenant(tenantA), { ...extra, ...bearer(onlyA) });
      await eventually(() => ok.frames.length === 1, 3000, "the token");
      const token = decode(ok.frames[0]!).token!;
      ok.cancel();
      await eventually(() => f.server.broker.hub.size === 0, 3000, "the stream closed");
      return { codes, headers: ok.headers, token };
    };

    const fast = await scenario({});
    await eventually(() => rpcLines().length === 7, 3000, "the fast path's debug lines");
    const fastLines = rpcLines();
    const fastRows = await f.auditEntries();
    const viaConnect = await scenario({ "grpc-timeout": "60S" });
    await eventually(() => rpcLines().length === 14, 3000, "the Connect path's debug lines");
    const connectLines = rpcLines().slice(7);
    const connectRows = (await f.auditEntries()).slice(fastRows.length); // oldest first

    // The fast path served the keyed stream (Connect advertises gzip), Connect the other.
    expect(fast.headers?.["grpc-accept-encoding"]).toBe("identity");
    expect(viaConnect.headers?.["grpc-accept-encoding"]).not.toBe("identity");
    expect(fast.token.connectionId).toBe(f.connectionId);

    expect(fast.codes).toEqual({
      noKey: Code.Unauthenticated,
      badKey: Code.Unauthenticated,
      otherTenant: Code.PermissionDenied,
      unknownTenant: Code.PermissionDenied,
      otherConnection: Code.PermissionDenied,
      noSelector: Code.InvalidArgument,
    });
    expect(viaConnect.codes).toEqual(fast.codes);

    const summary = (rows: AuditEntry[]) => rows.map((e) => [e.actor, e.action, e.tenantId ?? null, e.connectionId ?? null, e.outcome]);
    expect(summary(fastRows)).toEqual([
      ["only-a", "watch_token", tenantB, null, "permission_denied"],
      ["only-a", "watch_token", "00000000-0000-0000-0000-000000000000", null, "permission_denied"],
      ["only-a", "watch_token", null, "no-such-connection", "permission_denied"],
      ["only-a", "watch_token", tenantA, f.connectionId, "ok"],
    ]);
    expect(summary(connectRows)).toEqual(summary(fastRows));

    expect(fastLines.map((l) => [l.key ?? null, l.code])).toEqual([
      [null, "Unauthenticated"],
      [null, "Unauthenticated"],
      ["only-a", "PermissionDenied"],
      ["only-a", "PermissionDenied"],
      ["only-a", "PermissionDenied"],
      ["only-a", "InvalidArgument"],
      ["only-a", "ok"],
    ]);
    expect(connectLines).toEqual(fastLines);
    for (const secret of [onlyA, fast.token.accessToken, viaConnect.token.accessToken]) expect(logText).not.toContain(secret);
  });
});
