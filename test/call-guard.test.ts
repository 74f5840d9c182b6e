/**
 * The port's one guard (`src/server/call-guard.ts`): every TokenService call
 * runs the same list of steps whatever path serves it (the gRPC fast path,
 * with or without a deadline; Connect's handler for gRPC-Web and the Connect
 * protocol over HTTP/1.1 and HTTP/2). A step added to the list (here through
 * `guardSteps`, as tracing or rate limits would be) sees every call on every
 * path, in order: headers, request, each message sent, end. And the same
 * failure is answered with the same code and message on each path.
 */
import * as http2 from "node:http2";
import { setTimeout as delay } from "node:timers/promises";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TokenService } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { createCallGuard, type GuardStep } from "../src/server/call-guard.js";
import { getTokenRequest, unary } from "./helpers/raw-grpc.js";
import { startSecureBroker, type SecureBrokerFixture } from "./helpers/secure-broker.js";

/** Each path a TokenService call can take, as a client reaches it. */
const paths: Array<{ name: string; transport: (baseUrl: string) => Transport; timeoutMs?: number }> = [
  { name: "gRPC, fast path", transport: (baseUrl) => createGrpcTransport({ baseUrl }) },
  { name: "gRPC with a deadline, fast path", transport: (baseUrl) => createGrpcTransport({ baseUrl }), timeoutMs: 10_000 },
  { name: "gRPC-Web over HTTP/1.1, Connect", transport: (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }) },
  { name: "gRPC-Web over HTTP/2, Connect", transport: (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "2" }) },
  { name: "Connect JSON over HTTP/1.1", transport: (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1" }) },
  {
    name: "Connect binary over HTTP/2",
    transport: (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true }),
  },
];

/** A guard step that writes down what it saw of each call. */
function recorder(): { step: GuardStep; calls: string[][] } {
  const calls: string[][] = [];
  const open = new WeakMap<object, string[]>();
  const events = (call: object) => {
    let list = open.get(call);
    if (!list) {
      list = [];
      open.set(call, list);
      calls.push(list);
    }
    return list;
  };
  return {
    calls,
    step: {
      name: "recorder",
      authenticate: (call) => void events(call).push(`authenticate ${call.method} ${call.protocol}`),
      authorize: (call) => void events(call).push(`authorize ${call.principal?.name} ${call.selector.value}`),
      sent: (call, token) => void events(call).push(`sent ${token?.connectionId}`),
      ended: (call, error) => void events(call).push(`ended ${error ? Code[error.code] : "ok"}`),
    },
  };
}

describe("one guard on every path", () => {
  let f: SecureBrokerFixture;
  let key: string;
  let tenantA: string;
  let tenantB: string;
  const seen = recorder();

  beforeAll(async () => {
    f = await startSecureBroker({ server: { guardSteps: [seen.step] } });
    [tenantA, tenantB] = f.imported.tenants.map((t) => t.tenantId) as [string, string];
    key = f.createKey("only-a", [tenantA]);
  });
  afterAll(async () => {
    await f.close();
  });

  it.each(paths)("$name: a step added to the guard sees each call from its headers to its end", async ({ transport, timeoutMs }) => {
    const client = createClient(TokenService, transport(f.server.url));
    const options = { headers: { authorization: `Bearer ${key}` }, ...(timeoutMs ? { timeoutMs } : {}) };
    const before = seen.calls.length;

    const { token } = await client.getToken({ selector: { case: "tenantId", value: tenantA } }, options);
    const denied = await client
      .getToken({ selector: { case: "tenantId", value: tenantB } }, options)
      .catch((e: unknown) => ConnectError.from(e));
    const anonymous = await client.getToken({ selector: { case: "tenantId", value: tenantA } }).catch((e: unknown) => ConnectError.from(e));
    const watch = new AbortController();
    for await (const m of client.watchToken({ selector: { case: "tenantId", value: tenantA } }, { ...options, signal: watch.signal })) {
      expect(m.token?.connectionId).toBe(f.connectionId);
      break;
    }
    watch.abort(); // the client cancels the stream

    expect(token?.connectionId).toBe(f.connectionId);
    expect(denied).toBeInstanceOf(ConnectError);
    expect((denied as ConnectError).code).toBe(Code.PermissionDenied);
    expect((anonymous as ConnectError).code).toBe(Code.Unauthenticated);
    const calls = await settled(() => seen.calls.slice(before), 4);
    const wire = calls[0]?.[0]?.split(" ")[2];
    expect(calls).toEqual([
      [`authenticate GetToken ${wire}`, `authorize only-a ${tenantA}`, `sent ${f.connectionId}`, "ended ok"],
      // The key's scope (a step before this one) refused it: later steps' checks do not run, but all hear the end.
      [`authenticate GetToken ${wire}`, "ended PermissionDenied"],
      ["ended Unauthenticated"], // refused by the key step, before this one's headers check

      [`authenticate WatchToken ${wire}`, `authorize only-a ${tenantA}`, `sent ${f.connectionId}`, "ended ok"],
    ]);
  });

  it("the same failures get the same code and message on every path", async () => {
    const answers = new Map<string, string[]>();
    for (const { name, transport } of paths) {
      const client = createClient(TokenService, transport(f.server.url));
      const auth = { headers: { authorization: `Bearer ${key}` } };
      const failures = [
        client.getToken({ selector: { case: "tenantId", value: tenantA } }),
        client.getToken({ selector: { case: "tenantId", value: tenantB } }, auth),
        client.getToken({}, auth),
        client.getToken({ selector: { case: "tenantId", value: tenantA }, minValidFor: { seconds: -1n } }, auth),
        client.reportExpired({ selector: { case: "tenantId", value: tenantA }, accessToken: "" }, auth),
      ];
      const errors = await Promise.all(
        failures.map((p) =>
          p.then(
            () => undefined,
            (e: unknown) => ConnectError.from(e),
          ),
        ),
      );
      answers.set(
        name,
        errors.map((e) => (e ? `${Code[e.code]}: ${e.rawMessage}` : "no error")),
      );
    }
    const [first, ...others] = [...answers.values()];
    expect(first).toEqual([
      "Unauthenticated: a valid API key is required: send `authorization: Bearer <key>`",
      "PermissionDenied: this API key may not use that tenant or connection",
      "InvalidArgument: name the token set: set exactly one of tenant_id or connection_id",
      "InvalidArgument: min_valid_for must not be negative",
      "InvalidArgument: access_token is empty",
    ]);
    for (const other of others) expect(other).toEqual(first);
  });

  it("a raw gRPC call with a deadline takes the fast path through the same steps", async () => {
    const session = http2.connect(f.server.url);
    try {
      const before = seen.calls.length;
      const res = await unary(session, "GetToken", getTokenRequest({ case: "tenantId", value: tenantA }), {
        authorization: `Bearer ${key}`,
        "grpc-timeout": "10S",
      });
      expect(res.status.code).toBe(0);
      expect(res.headers?.["content-type"]).toBe("application/grpc"); // the fast path's answer
      expect(await settled(() => seen.calls.slice(before), 1)).toEqual([
        ["authenticate GetToken grpc", `authorize only-a ${tenantA}`, `sent ${f.connectionId}`, "ended ok"],
      ]);
    } finally {
      session.destroy();
    }
  });
});

describe("createCallGuard", () => {
  it("runs the steps in order; a refusal ends the call once, every step hearing its error", async () => {
    const log: string[] = [];
    const step = (name: string, refuse?: Code): GuardStep => ({
      name,
      authenticate: () => void log.push(`${name} authenticate`),
      authorize: () => {
        log.push(`${name} authorize`);
        if (refuse !== undefined) throw new ConnectError("no", refuse);
      },
      sent: () => void log.push(`${name} sent`),
      ended: (_call, error) => void log.push(`${name} ended ${error ? Code[error.code] : "ok"}`),
    });
    const guard = createCallGuard([step("a"), step("b", Code.PermissionDenied), step("c")]);
    const call = guard.start({ method: "GetToken", protocol: "grpc", authorization: undefined });
    await call.authenticate();
    await expect(call.authorize({ selector: { case: "tenantId", value: "t" } })).rejects.toThrow("no");
    call.ended(new Error("later")); // already ended
    expect(call.selector).toEqual({ case: "tenantId", value: "t" });
    expect(log).toEqual([
      "a authenticate",
      "b authenticate",
      "c authenticate",
      "a authorize",
      "b authorize",
      "a ended PermissionDenied",
      "b ended PermissionDenied",
      "c ended PermissionDenied",
    ]);
  });

  it("costs no promise when no step checks anything", () => {
    const call = createCallGuard([{ name: "count", sent: () => {} }]).start({
      method: "GetToken",
      protocol: "connect",
      authorization: undefined,
    });
    expect(call.authenticate()).toBeUndefined();
    expect(call.authorize({})).toBeUndefined();
  });
});

/** `read()` once it has `n` entries, each of which has ended (the stream's end is recorded after its answer). */
async function settled(read: () => string[][], n: number): Promise<string[][]> {
  const deadline = Date.now() + 3000;
  for (;;) {
    const calls = read();
    if ((calls.length >= n && calls.every((c) => c.at(-1)?.startsWith("ended"))) || Date.now() > deadline) return calls;
    await delay(10);
  }
}
