/**
 * The gRPC fast path (`src/server/grpc-fast-path.ts`,
 * `src/server/token-service-fast-methods.ts`) with API keys, the audit log and
 * debug logging on: every TokenService method, called with raw `node:http2`
 * frames over the fast path and then as gRPC-Web (the same frames, served by
 * the Connect handler), must get the same status codes and write the same
 * audit rows and debug lines, with no secret in the log: both paths run the
 * port's one guard (`src/server/call-guard.ts`).
 */
import * as http2 from "node:http2";
import { Writable } from "node:stream";
import { fromBinary } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  GetTokenResponseSchema,
  ReportExpiredResponseSchema,
  WatchTokenResponseSchema,
  type Token,
} from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import type { AuditEntry } from "../src/audit/audit-log.js";
import { createLogger } from "../src/logger.js";
import {
  VIA_CONNECT,
  getTokenRequest,
  rawCall,
  reportExpiredRequest,
  statusOf,
  watchRequest,
  type RawSelector,
  type TokenMethod,
} from "./helpers/raw-grpc.js";
import { startSecureBroker, type SecureBrokerFixture } from "./helpers/secure-broker.js";
import { eventually } from "./helpers/stream-reader.js";

const UNKNOWN_TENANT = "00000000-0000-0000-0000-000000000000";
const byTenant = (value: string) => ({ case: "tenantId", value }) as const;

/** How to call one method: its request body, and a successful call's token. */
interface MethodUnderTest {
  method: TokenMethod;
  /** The audit log's name for it. */
  action: string;
  /** A request (ReportExpired reports `accessToken`). */
  body(selector: RawSelector, accessToken: string): Buffer;
  /** Extra refused calls of this method: name, body (sent with the scoped key), expected code. */
  extra: Array<{ name: string; body: (tenantA: string) => Buffer; code: Code }>;
  /** The token a successful call handed out (a watch is cancelled after its first message). */
  ok(call: ReturnType<typeof rawCall>): Promise<Token>;
}

/** The token of a unary call that ended OK with one message. */
async function unaryToken(call: ReturnType<typeof rawCall>, decode: (b: Buffer) => Token | undefined): Promise<Token> {
  expect(statusOf(await call.ended)).toEqual({ code: 0, message: "" });
  expect(call.frames).toHaveLength(1);
  return decode(call.frames[0]!)!;
}

const methods: MethodUnderTest[] = [
  {
    method: "GetToken",
    action: "get_token",
    body: (selector) => getTokenRequest(selector),
    extra: [{ name: "negativeMinValidFor", body: (tenantA) => getTokenRequest(byTenant(tenantA), -5), code: Code.InvalidArgument }],
    ok: (call) => unaryToken(call, (b) => fromBinary(GetTokenResponseSchema, b).token),
  },
  {
    method: "ReportExpired",
    action: "report_expired",
    body: (selector, accessToken) => reportExpiredRequest(selector, accessToken),
    extra: [{ name: "emptyAccessToken", body: (tenantA) => reportExpiredRequest(byTenant(tenantA), ""), code: Code.InvalidArgument }],
    ok: async (call) => {
      const token = await unaryToken(call, (b) => fromBinary(ReportExpiredResponseSchema, b).token);
      expect(fromBinary(ReportExpiredResponseSchema, call.frames[0]!).refreshed).toBe(true);
      return token;
    },
  },
  {
    method: "WatchToken",
    action: "watch_token",
    body: (selector) => watchRequest(selector),
    extra: [],
    ok: async (call) => {
      await eventually(() => call.frames.length === 1, 3000, "the token");
      call.cancel();
      return fromBinary(WatchTokenResponseSchema, call.frames[0]!).token!;
    },
  },
];

/** A secure broker logging at debug level into memory, and one HTTP/2 session to it, fresh for each test. */
function useSecureBroker(): { f: SecureBrokerFixture; session: http2.ClientHttp2Session; logText: string } {
  const ctx = { logText: "" } as { f: SecureBrokerFixture; session: http2.ClientHttp2Session; logText: string };
  beforeEach(async () => {
    ctx.logText = "";
    const destination = new Writable({
      write(chunk: Buffer | string, _encoding, callback) {
        ctx.logText += chunk.toString();
        callback();
      },
    });
    ctx.f = await startSecureBroker({ server: { logger: createLogger({ level: "debug", destination }) } });
    ctx.session = http2.connect(ctx.f.server.url);
  });
  afterEach(async () => {
    ctx.session?.destroy();
    await ctx.f?.close();
  });
  return ctx;
}

describe.each(methods)("gRPC fast path: $method with API keys, audit and debug logging on", (m) => {
  const ctx = useSecureBroker();

  /** The debug lines of this method's calls written so far, without their durations. */
  const rpcLines = () =>
    ctx.logText
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l["event"] === "rpc" && l["method"] === m.method)
      .map(({ method, key, tenantId, connectionId, selector, code }) => ({ method, key, tenantId, connectionId, selector, code }));

  it("answers, audits and logs exactly as the Connect path does", async () => {
    const { f, session } = ctx;
    const [tenantA, tenantB] = f.imported.tenants.map((t) => t.tenantId) as [string, string];
    const onlyA = f.createKey("only-a", [tenantA]);
    const bearer = (key: string) => ({ authorization: `Bearer ${key}` });
    const tenant = (value: string, accessToken = "not-a-token") => m.body(byTenant(value), accessToken);

    /** The same calls over one path; `VIA_CONNECT` sends them to Connect instead. */
    const scenario = async (extra: http2.OutgoingHttpHeaders) => {
      const status = async (body: Buffer, headers: http2.OutgoingHttpHeaders = {}) => {
        const c = rawCall(session, m.method, body, { ...extra, ...headers });
        const trailers = await c.ended;
        expect(c.frames).toEqual([]);
        return statusOf(trailers).code;
      };
      const codes: Record<string, number> = {
        noKey: await status(tenant(tenantA)),
        badKey: await status(tenant(tenantA), bearer(`tbk_${"A".repeat(43)}`)),
        otherTenant: await status(tenant(tenantB), bearer(onlyA)),
        unknownTenant: await status(tenant(UNKNOWN_TENANT), bearer(onlyA)),
        otherConnection: await status(m.body({ case: "connectionId", value: "no-such-connection" }, "not-a-token"), bearer(onlyA)),
        noSelector: await status(m.body(undefined, "not-a-token"), bearer(onlyA)),
      };
      for (const { name, body } of m.extra) codes[name] = await status(body(tenantA), bearer(onlyA));
      if (m.method !== "WatchToken") codes["truncatedBody"] = await status(tenant(tenantA).subarray(0, 7), bearer(onlyA));
      const current = (await f.store.tokens.getToken(f.connectionId))!.accessToken; // ReportExpired reports it
      const ok = rawCall(session, m.method, tenant(tenantA, current), { ...extra, ...bearer(onlyA) });
      const token = await m.ok(ok);
      await eventually(() => f.server.broker.hub.size === 0, 3000, "the call closed");
      return { codes, headers: ok.headers, token };
    };

    const calls = 7 + m.extra.length; // with a debug line each (not the truncated body, refused before the key's scope is checked)
    const fast = await scenario({});
    await eventually(() => rpcLines().length === calls, 3000, "the fast path's debug lines");
    const fastLines = rpcLines();
    const fastRows = await f.auditEntries();
    const viaConnect = await scenario(VIA_CONNECT);
    await eventually(() => rpcLines().length === 2 * calls, 3000, "the Connect path's debug lines");
    const connectLines = rpcLines().slice(calls);
    const connectRows = (await f.auditEntries()).slice(fastRows.length); // oldest first

    // The fast path answered the keyed call (`application/grpc`, identity only), Connect the other.
    expect(fast.headers?.["content-type"]).toBe("application/grpc");
    expect(fast.headers?.["grpc-accept-encoding"]).toBe("identity");
    expect(viaConnect.headers?.["content-type"]).toBe("application/grpc-web+proto");
    expect(fast.token.connectionId).toBe(f.connectionId);
    expect(viaConnect.token.connectionId).toBe(f.connectionId);

    expect(fast.codes).toEqual({
      noKey: Code.Unauthenticated,
      badKey: Code.Unauthenticated,
      otherTenant: Code.PermissionDenied,
      unknownTenant: Code.PermissionDenied,
      otherConnection: Code.PermissionDenied,
      noSelector: Code.InvalidArgument,
      ...Object.fromEntries(m.extra.map((e) => [e.name, e.code])),
      ...(m.method === "WatchToken" ? {} : { truncatedBody: Code.InvalidArgument }),
    });
    expect(viaConnect.codes).toEqual(fast.codes);

    const summary = (rows: AuditEntry[]) =>
      rows.map((e) => [e.actor, e.action, e.tenantId ?? null, e.connectionId ?? null, e.outcome, e.detail ?? null]);
    expect(summary(fastRows)).toEqual([
      ["only-a", m.action, tenantB, null, "permission_denied", null],
      ["only-a", m.action, UNKNOWN_TENANT, null, "permission_denied", null],
      ["only-a", m.action, null, "no-such-connection", "permission_denied", null],
      // ReportExpired of the current token refreshes it first.
      ...(m.method === "ReportExpired" ? [["broker", "refresh", null, f.connectionId, "ok", "report"]] : []),
      ["only-a", m.action, tenantA, f.connectionId, "ok", null],
    ]);
    expect(summary(connectRows)).toEqual(summary(fastRows));

    expect(fastLines.map((l) => [l.key ?? null, l.tenantId ?? l.connectionId ?? l.selector, l.code])).toEqual([
      // The key is checked from the headers, before the body (and the tenant in it) is read.
      [null, "none", "Unauthenticated"],
      [null, "none", "Unauthenticated"],
      ["only-a", tenantB, "PermissionDenied"],
      ["only-a", UNKNOWN_TENANT, "PermissionDenied"],
      ["only-a", "no-such-connection", "PermissionDenied"],
      ["only-a", "none", "InvalidArgument"],
      ...m.extra.map(() => ["only-a", tenantA, "InvalidArgument"]),
      ["only-a", tenantA, "ok"],
    ]);
    expect(connectLines).toEqual(fastLines);
    for (const secret of [onlyA, fast.token.accessToken, viaConnect.token.accessToken]) expect(ctx.logText).not.toContain(secret);
  });
});

describe("gRPC fast path: malformed bodies with API keys, audit and debug logging on", () => {
  const ctx = useSecureBroker();

  /** For each body, anonymous and with a key: the status codes and new debug lines of the fast path, then of Connect. */
  const answers = async (method: TokenMethod, bodies: Record<string, Buffer>) => {
    const { f, session } = ctx;
    const [tenantA] = f.imported.tenants.map((t) => t.tenantId) as [string];
    const key = f.createKey("only-a", [tenantA]);
    const lines = () => ctx.logText.split("\n").filter((l) => l.includes('"event":"rpc"')).length;
    const run = async (extra: http2.OutgoingHttpHeaders) => {
      const out: Record<string, { code: string; debugLines: number }> = {};
      for (const [name, body] of Object.entries(bodies)) {
        for (const [who, headers] of [
          ["anonymous", {}],
          ["keyed", { authorization: `Bearer ${key}` }],
        ] as const) {
          const before = lines();
          const status = statusOf(await rawCall(session, method, body, { ...headers, ...extra }).ended);
          out[`${name}, ${who}`] = { code: Code[status.code] ?? String(status.code), debugLines: lines() - before };
        }
      }
      return out;
    };
    const fast = await run({});
    const viaConnect = await run(VIA_CONNECT);
    expect(ctx.logText).not.toContain(key);
    return { fast, viaConnect, audited: await f.auditEntries() };
  };

  it.each(["GetToken", "ReportExpired"] as const)(
    "%s: anonymous calls refused by the key check before the body is read; keyed ones refused for the body, unaudited and unlogged, on both paths",
    async (method) => {
      const tenantA = ctx.f.imported.tenants[0]!.tenantId;
      const one = method === "GetToken" ? getTokenRequest(byTenant(tenantA)) : reportExpiredRequest(byTenant(tenantA), "x");
      const { fast, viaConnect, audited } = await answers(method, {
        empty: Buffer.alloc(0),
        short: one.subarray(0, 3),
        two: Buffer.concat([one, one]),
        compressed: Buffer.concat([Buffer.from([1]), one.subarray(1)]),
      });
      const unlogged = (code: string) => ({ code, debugLines: 0 });
      const unauthenticated = { code: "Unauthenticated", debugLines: 1 };
      expect(fast).toEqual({
        "empty, anonymous": unauthenticated,
        "empty, keyed": unlogged("Unimplemented"),
        "short, anonymous": unauthenticated,
        "short, keyed": unlogged("InvalidArgument"),
        "two, anonymous": unauthenticated,
        "two, keyed": unlogged("Unimplemented"),
        "compressed, anonymous": unauthenticated,
        "compressed, keyed": unlogged("Internal"),
      });
      expect(viaConnect).toEqual(fast);
      expect(audited).toEqual([]);
    },
  );

  // Connect reads a server-streaming request's messages inside its interceptors and checks there is exactly
  // one only in the handler, after the API key check: the fast path hands such a body to Connect's handler
  // (`connect-fallback.ts`), with the guarded call its headers started.
  it("WatchToken: a body with no message or two is refused after the key check, as on Connect", async () => {
    const tenantA = ctx.f.imported.tenants[0]!.tenantId;
    const one = watchRequest(byTenant(tenantA));
    const { fast, viaConnect } = await answers("WatchToken", { empty: Buffer.alloc(0), two: Buffer.concat([one, one]) });
    // Connect: anonymous → UNAUTHENTICATED, keyed → UNIMPLEMENTED, each with its debug line.
    expect(viaConnect["empty, anonymous"]).toEqual({ code: "Unauthenticated", debugLines: 1 });
    expect(viaConnect["two, keyed"]).toEqual({ code: "Unimplemented", debugLines: 1 });
    expect(fast).toEqual(viaConnect);
  });
});
