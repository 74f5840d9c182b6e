/**
 * Hostile and malformed input, over gRPC, Connect JSON and raw HTTP: every bad
 * request gets a clear status, none crashes the server, none sends anything
 * upstream, and none changes the stored token set.
 */
import { createHash } from "node:crypto";
import * as http2 from "node:http2";
import * as net from "node:net";
import { create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { protocols, startBroker, type BrokerFixture } from "./helpers/broker-fixture.js";
import type { TokenRecord } from "../src/token-set.js";

const GET_TOKEN = "/tokenbroker.v1.TokenService/GetToken";
const UNKNOWN_TENANT = "00000000-0000-0000-0000-000000000000";

/** What must not change in the store, with the secrets hashed so a failing diff shows none. */
function fingerprint(record: TokenRecord | undefined) {
  const hash = (s: string | undefined) => (s === undefined ? undefined : createHash("sha256").update(s).digest("hex").slice(0, 16));
  if (!record) return undefined;
  return {
    connectionId: record.connectionId,
    version: record.version,
    state: record.state,
    expiresAt: record.expiresAt,
    obtainedAt: record.obtainedAt,
    tenantIds: [...record.tenantIds].sort(),
    accessToken: hash(record.accessToken),
    refreshToken: hash(record.refreshToken),
  };
}

/** The ConnectError `promise` rejects with. */
async function connectError(promise: Promise<unknown>): Promise<ConnectError> {
  const error: unknown = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error, "the call should have failed").toBeInstanceOf(ConnectError);
  return error as ConnectError;
}

/** A raw HTTP/1.1 POST (fetch), returning the status, content type and parsed JSON body if any. */
async function post(
  baseUrl: string,
  path: string,
  body: string | Uint8Array,
  contentType: string,
): Promise<{ status: number; contentType: string; json: Record<string, unknown> | undefined }> {
  const res = await fetch(new URL(path, baseUrl), {
    method: "POST",
    headers: { "content-type": contentType },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  const text = await res.text();
  let json: Record<string, unknown> | undefined;
  try {
    json = text === "" ? undefined : (JSON.parse(text) as Record<string, unknown>);
  } catch {
    json = undefined;
  }
  return { status: res.status, contentType: res.headers.get("content-type") ?? "", json };
}

/** A raw gRPC request over HTTP/2 with `frame` as the body: the grpc-status it ends with. */
async function rawGrpc(baseUrl: string, frame: Buffer): Promise<{ httpStatus: number; grpcStatus: number | undefined }> {
  const session = http2.connect(baseUrl);
  try {
    return await new Promise((resolve, reject) => {
      session.on("error", reject);
      const req = session.request({
        ":method": "POST",
        ":path": GET_TOKEN,
        "content-type": "application/grpc+proto",
        te: "trailers",
      });
      let httpStatus = 0;
      let grpcStatus: number | undefined;
      req.on("response", (headers) => {
        httpStatus = Number(headers[":status"]);
        // A trailers-only response carries grpc-status in the headers.
        if (headers["grpc-status"] !== undefined) grpcStatus = Number(headers["grpc-status"]);
      });
      req.on("trailers", (trailers) => {
        if (trailers["grpc-status"] !== undefined) grpcStatus = Number(trailers["grpc-status"]);
      });
      req.on("data", () => {});
      req.on("end", () => resolve({ httpStatus, grpcStatus }));
      req.on("error", reject);
      req.setTimeout(10_000, () => reject(new Error("raw gRPC request timed out")));
      req.end(frame);
    });
  } finally {
    session.close();
  }
}

/** A gRPC length-prefixed message frame. */
function grpcFrame(payload: Buffer, declaredLength = payload.length): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt8(0, 0);
  header.writeUInt32BE(declaredLength, 1);
  return Buffer.concat([header, payload]);
}

/** Opens a TCP connection, writes `bytes`, and returns whatever comes back before the server closes (or 2 s). */
async function rawTcp(port: number, bytes: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = net.connect(port, "127.0.0.1", () => socket.end(bytes));
    socket.setTimeout(2000, () => socket.destroy());
    socket.on("data", (c: Buffer) => chunks.push(c));
    socket.on("close", () => resolve(Buffer.concat(chunks).toString("latin1")));
    socket.on("error", (e: NodeJS.ErrnoException) =>
      e.code === "ECONNRESET" ? resolve(Buffer.concat(chunks).toString("latin1")) : reject(e),
    );
  });
}

describe("bad input", () => {
  let f: BrokerFixture;
  let before: ReturnType<typeof fingerprint>;
  let callsBefore: number;

  beforeEach(async () => {
    f = await startBroker();
    before = fingerprint(await f.store.tokens.getToken(f.connectionId));
    expect(before?.version).toBe(1);
    callsBefore = f.fake.tokenEndpointCalls;
  });

  afterEach(async () => {
    await f?.close();
  });

  /** The server still serves the right token, the store is untouched and nothing went upstream. */
  async function expectUnharmed(): Promise<void> {
    for (const { transport } of protocols) {
      const { token } = await f.client(transport).getToken({ selector: { case: "tenantId", value: f.tenantId } });
      expect(token?.connectionId).toBe(f.connectionId);
      expect(token?.version).toBe(1n);
      expect(token?.tokenType).toBe("Bearer");
    }
    expect(fingerprint(await f.store.tokens.getToken(f.connectionId))).toEqual(before);
    const connections = await f.store.connections.listConnections();
    expect(connections.map((c) => c.connectionId)).toEqual([f.connectionId]);
    expect(connections[0]!.tenants.map((t) => t.tenantId).sort()).toEqual(f.imported.tenants.map((t) => t.tenantId).sort());
    expect(f.fake.tokenEndpointCalls).toBe(callsBefore);
  }

  const gRPC = protocols.find((p) => p.name.startsWith("gRPC (HTTP/2)"))!;
  const connectJson = protocols.find((p) => p.name.startsWith("Connect JSON"))!;

  describe.each([gRPC, connectJson])("invalid requests over $name", ({ transport }) => {
    const badSelectors: Array<[string, { case: "tenantId" | "connectionId"; value: string } | { case: undefined }]> = [
      ["no selector", { case: undefined }],
      ["an empty tenant_id", { case: "tenantId", value: "" }],
      ["an empty connection_id", { case: "connectionId", value: "" }],
      ["a 10 000-character tenant_id", { case: "tenantId", value: "a".repeat(10_000) }],
      ["a tenant_id with a NUL byte", { case: "tenantId", value: `${UNKNOWN_TENANT}\u0000` }],
      ["a tenant_id with a newline", { case: "tenantId", value: "abc\ndef" }],
      ["a tenant_id with an escape sequence", { case: "tenantId", value: "\u001b[31mred" }],
      ["a connection_id with DEL", { case: "connectionId", value: "conn\u007f" }],
      ["a connection_id with a space", { case: "connectionId", value: "conn id" }],
      ["a tenant_id with non-ASCII letters", { case: "tenantId", value: "tenant-é" }],
    ];

    it.each(badSelectors)("GetToken, ReportExpired and WatchToken with %s are INVALID_ARGUMENT", async (_name, selector) => {
      const client = f.client(transport);
      const error = await connectError(client.getToken({ selector }));
      expect(error.code).toBe(Code.InvalidArgument);
      expect(error.rawMessage.length).toBeGreaterThan(0);
      // The message never echoes a huge or hostile id back.
      expect(error.rawMessage.length).toBeLessThan(200);
      expect(error.rawMessage).not.toMatch(/\p{Cc}/u);

      const report = await connectError(client.reportExpired({ selector, accessToken: "x" }));
      expect(report.code).toBe(Code.InvalidArgument);
      const watch = await connectError(
        (async () => {
          for await (const _ of client.watchToken({ selector })) break;
        })(),
      );
      expect(watch.code).toBe(Code.InvalidArgument);
      await expectUnharmed();
    });

    it("negative min_valid_for is INVALID_ARGUMENT", async () => {
      const client = f.client(transport);
      for (const minValidFor of [
        create(DurationSchema, { seconds: -1n }),
        create(DurationSchema, { seconds: 0n, nanos: -5 }),
        create(DurationSchema, { seconds: -3600n, nanos: -1 }),
      ]) {
        const error = await connectError(client.getToken({ selector: { case: "tenantId", value: f.tenantId }, minValidFor }));
        expect(error.code).toBe(Code.InvalidArgument);
        expect(error.rawMessage).toMatch(/min_valid_for/);
      }
      await expectUnharmed();
    });

    it("ReportExpired with an empty access_token is INVALID_ARGUMENT", async () => {
      const error = await connectError(
        f.client(transport).reportExpired({ selector: { case: "tenantId", value: f.tenantId }, accessToken: "" }),
      );
      expect(error.code).toBe(Code.InvalidArgument);
      await expectUnharmed();
    });

    it("an unknown connection id or tenant id is NOT_FOUND", async () => {
      const client = f.client(transport);
      const byConnection = await connectError(client.getToken({ selector: { case: "connectionId", value: "no-such-connection" } }));
      expect(byConnection.code).toBe(Code.NotFound);
      const byTenant = await connectError(client.getToken({ selector: { case: "tenantId", value: UNKNOWN_TENANT } }));
      expect(byTenant.code).toBe(Code.NotFound);
      const report = await connectError(
        client.reportExpired({ selector: { case: "connectionId", value: "no-such-connection" }, accessToken: "x" }),
      );
      expect(report.code).toBe(Code.NotFound);
      await expectUnharmed();
    });

    it("min_valid_for longer than the token's lifetime does not make every call refresh", async () => {
      const client = f.client(transport);
      const stored = (await f.store.tokens.getToken(f.connectionId))!;
      const lifetime = stored.expiresAt - stored.obtainedAt;
      expect(lifetime).toBe(30 * 60_000); // Xero's 30 minutes
      // 20 minutes in: 10 minutes left, less than the honoured half-lifetime (15 minutes).
      f.clock.set(stored.obtainedAt + 20 * 60_000);
      const oneHour = create(DurationSchema, { seconds: 3600n });
      const versions: bigint[] = [];
      for (let i = 0; i < 10; i++) {
        const { token } = await client.getToken({ selector: { case: "tenantId", value: f.tenantId }, minValidFor: oneHour });
        versions.push(token!.version);
      }
      // One refresh (the stored token had less than half its lifetime left), then the fresh token qualifies.
      expect(f.fake.tokenEndpointCalls - callsBefore).toBe(1);
      expect(new Set(versions)).toEqual(new Set([2n]));

      // An absurdly large min_valid_for is capped the same way.
      const huge = create(DurationSchema, { seconds: 315_576_000_000n });
      const { token } = await client.getToken({ selector: { case: "connectionId", value: f.connectionId }, minValidFor: huge });
      expect(token?.version).toBe(2n);
      expect(f.fake.tokenEndpointCalls - callsBefore).toBe(1);
    });
  });

  describe("raw HTTP requests", () => {
    it("Connect JSON naming both tenantId and connectionId is a 400, not a 500", async () => {
      const res = await post(
        f.server.url,
        GET_TOKEN,
        JSON.stringify({ tenantId: f.tenantId, connectionId: f.connectionId }),
        "application/json",
      );
      expect(res.status).toBe(400);
      expect(res.json?.["code"]).toBe("invalid_argument");
      await expectUnharmed();
    });

    it("malformed JSON bodies are 400 invalid_argument", async () => {
      for (const body of ["{", "not json", "[]", '{"tenantId": 42}', '{"minValidFor": "forever", "tenantId": "a"}', "\u0000\u0001"]) {
        const res = await post(f.server.url, GET_TOKEN, body, "application/json");
        expect(res.status, `body ${JSON.stringify(body)}`).toBe(400);
        expect(res.json?.["code"], `body ${JSON.stringify(body)}`).toBe("invalid_argument");
      }
      await expectUnharmed();
    });

    it("an empty JSON body names no token set: 400 invalid_argument", async () => {
      const res = await post(f.server.url, GET_TOKEN, "", "application/json");
      expect(res.status).toBe(400);
      expect(res.json?.["code"]).toBe("invalid_argument");
    });

    it("a wrong content type is 415", async () => {
      const res = await post(f.server.url, GET_TOKEN, JSON.stringify({ tenantId: f.tenantId }), "text/plain");
      expect(res.status).toBe(415);
      const form = await post(f.server.url, GET_TOKEN, "tenantId=x", "application/x-www-form-urlencoded");
      expect(form.status).toBe(415);
      await expectUnharmed();
    });

    it("unknown method and service paths are 404", async () => {
      for (const path of [
        "/tokenbroker.v1.TokenService/StealToken",
        "/tokenbroker.v2.TokenService/GetToken",
        "/../../etc/passwd",
        "/tokenbroker.v1.TokenService/GetToken/extra",
      ]) {
        const res = await post(f.server.url, path, "{}", "application/json");
        expect(res.status, path).toBe(404);
      }
      // `/` is the status page: it takes GET only.
      expect((await post(f.server.url, "/", "{}", "application/json")).status).toBe(405);
      await expectUnharmed();
    });

    it("a Connect JSON body over the 64 KiB limit is rejected with a 4xx", async () => {
      const body = JSON.stringify({ tenantId: "t".repeat(100 * 1024) });
      const res = await post(f.server.url, GET_TOKEN, body, "application/json");
      expect(res.status).toBeGreaterThanOrEqual(400);
      expect(res.status).toBeLessThan(500);
      expect(["resource_exhausted", "invalid_argument"]).toContain(res.json?.["code"]);
      await expectUnharmed();
    });

    // connect-es reports a request it cannot decode as INTERNAL ("parse binary: ..."),
    // as grpc-go does; what matters here is a clear refusal and an unharmed server.
    it("garbage protobuf over Connect binary is refused with a parse error", async () => {
      const res = await post(f.server.url, GET_TOKEN, new Uint8Array([0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a, 0x99]), "application/proto");
      expect([400, 500]).toContain(res.status);
      expect(["invalid_argument", "internal"]).toContain(res.json?.["code"]);
      expect(res.json?.["message"]).toMatch(/parse/);
      await expectUnharmed();
    });

    it("garbage protobuf in a gRPC frame is refused; an oversized frame is RESOURCE_EXHAUSTED", async () => {
      const garbage = await rawGrpc(f.server.url, grpcFrame(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x0a, 0x99])));
      expect(garbage.httpStatus).toBe(200);
      expect([Code.InvalidArgument, Code.Internal]).toContain(garbage.grpcStatus);

      const oversized = await rawGrpc(f.server.url, grpcFrame(Buffer.alloc(16), 1024 * 1024));
      expect(oversized.grpcStatus).toBe(Code.ResourceExhausted);

      const truncated = await rawGrpc(f.server.url, Buffer.from([0, 0, 0]));
      expect(truncated.grpcStatus).toBeDefined();
      expect(truncated.grpcStatus).not.toBe(0); // 0 is OK
      await expectUnharmed();
    });

    it("a Connect JSON request over the 64 KiB limit from a Connect client is RESOURCE_EXHAUSTED", async () => {
      const error = await connectError(
        f.client(connectJson.transport).getToken({ selector: { case: "tenantId", value: "t".repeat(70 * 1024) } }),
      );
      expect(error.code).toBe(Code.ResourceExhausted);
      await expectUnharmed();
    });

    it("a gRPC request over the 64 KiB limit is RESOURCE_EXHAUSTED and leaves no stuck stream behind", async () => {
      // Its own broker with a 4 s shutdown grace, so that a failure costs 4 s, not 10.
      const g = await startBroker({ server: { shutdownGraceMs: 4000 } });
      try {
        // The client sends 70 KiB; the server answers RESOURCE_EXHAUSTED after 64 KiB.
        const error = await connectError(
          g.client(gRPC.transport).getToken({ selector: { case: "tenantId", value: "t".repeat(70 * 1024) } }),
        );
        expect(error.code).toBe(Code.ResourceExhausted);
        const { token } = await g.client(gRPC.transport).getToken({ selector: { case: "tenantId", value: g.tenantId } });
        expect(token?.version).toBe(1n);
        // Nothing is in flight any more, so a graceful shutdown has nothing to
        // wait for. A stream whose unread request body the server neither
        // drained nor reset (RFC 9113 §8.1: RST_STREAM NO_ERROR) would hold
        // the shutdown for the whole grace period.
        const started = performance.now();
        await g.server.close();
        expect(performance.now() - started).toBeLessThan(2000);
      } finally {
        await g.close();
      }
    });

    it("non-HTTP bytes and a cut-off HTTP/2 preface on the port do not hurt the server", async () => {
      const garbage = await rawTcp(f.server.port, Buffer.from("\u0016\u0003\u0001 hello, not http at all\r\n\r\n", "latin1"));
      expect(garbage).toMatch(/^(HTTP\/1\.1 400|$)/);
      await rawTcp(f.server.port, Buffer.from("PRI * HTTP/2.0\r\n"));
      await rawTcp(f.server.port, Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\u0000\u0000\u0004garbage"));
      await expectUnharmed();
    });
  });
});
