/**
 * Property-based: generated requests (random ids with unicode, control
 * characters and huge lengths, random durations, random oneof choices, random
 * keys, random raw bytes as bodies) at every RPC over gRPC and Connect JSON.
 * Every answer is a proper status, the server stays up and nothing stored
 * changes.
 */
import { createHash } from "node:crypto";
import * as http2 from "node:http2";
import { create } from "@bufbuild/protobuf";
import { DurationSchema } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { TokenService } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { startSecureBroker, withKey, type SecureBrokerFixture } from "./helpers/secure-broker.js";
import { withRawDatabase } from "./helpers/raw-database.js";

const SERVICE = "/tokenbroker.v1.TokenService";
/** The statuses a well-behaved broker answers generated requests with. */
const PROPER = new Set<Code | "ok">(["ok", Code.InvalidArgument, Code.NotFound, Code.PermissionDenied, Code.Unauthenticated]);
/** Added for bodies that are not a decodable message or envelope at all (as grpc-go does for undecodable input). */
const UNDECODABLE = new Set<Code | "ok">([...PROPER, Code.Internal, Code.ResourceExhausted, Code.Unimplemented]);

let f: SecureBrokerFixture;
let keys: Record<"all" | "scoped" | "revoked", string>;
let grpcClient: Client<typeof TokenService>;
let jsonClient: Client<typeof TokenService>;
let h2: http2.ClientHttp2Session;
let before: string;

/** Everything stored about token sets, hashed (so a failure shows no secret). */
function snapshot(): string {
  const rows = withRawDatabase(f.dbPath, (db) => [
    db.prepare("SELECT * FROM token_sets ORDER BY connection_id").all(),
    db.prepare("SELECT * FROM connections ORDER BY id").all(),
    db.prepare("SELECT * FROM tenants ORDER BY connection_id, tenant_id").all(),
    db.prepare("SELECT * FROM refresh_leases").all(),
  ]);
  return createHash("sha256").update(JSON.stringify(rows)).digest("hex");
}

beforeAll(async () => {
  f = await startSecureBroker();
  keys = {
    all: f.createKey("all", "*"),
    scoped: f.createKey("scoped", [f.tenantId]),
    revoked: f.createKey("revoked", "*"),
  };
  await f.keys.revoke("revoked", Date.now());
  grpcClient = createClient(TokenService, createGrpcTransport({ baseUrl: f.server.url }));
  jsonClient = createClient(TokenService, createConnectTransport({ baseUrl: f.server.url, httpVersion: "1.1" }));
  h2 = http2.connect(f.server.url);
  before = snapshot();
});

afterAll(async () => {
  h2?.close();
  await f?.close();
});

/** The status a call ended with. */
async function outcome(call: () => Promise<unknown>): Promise<Code | "ok"> {
  try {
    await call();
    return "ok";
  } catch (e) {
    return ConnectError.from(e).code;
  }
}

function ids(): fc.Arbitrary<string> {
  return fc.oneof(
    {
      arbitrary: fc.constantFrom(f.tenantId, f.connectionId, f.imported.tenants[1]!.tenantId, "00000000-0000-0000-0000-000000000000", ""),
      weight: 5,
    },
    fc.string({ unit: "binary", maxLength: 80 }), // any code point, lone surrogates included
    fc.string({ unit: "grapheme", maxLength: 80 }),
    fc.string({ unit: "binary-ascii", maxLength: 80 }), // control characters
    fc.stringMatching(/^[\x21-\x7e]{1,140}$/), // printable, around the 128 limit
    fc.integer({ min: 129, max: 60_000 }).map((n) => "t".repeat(n)), // huge, still under the 64 KiB request limit
  );
}

/** Durations: sign-consistent ones (any protocol can send), and out-of-range ones (binary only: JSON cannot encode them). */
function durations(binary: boolean) {
  const max = 315_576_000_000n;
  const valid = fc.oneof(
    fc.record({ seconds: fc.bigInt(-max, max), nanos: fc.constant(0) }),
    fc.record({ seconds: fc.bigInt(0n, max), nanos: fc.integer({ min: 0, max: 999_999_999 }) }),
    fc.record({ seconds: fc.bigInt(-max, 0n), nanos: fc.integer({ min: -999_999_999, max: 0 }) }),
  );
  const wild = fc.record({ seconds: fc.bigInt(-(2n ** 63n), 2n ** 63n - 1n), nanos: fc.integer() });
  return fc.option(binary ? fc.oneof(valid, wild) : valid, { nil: undefined }).map((d) => d && create(DurationSchema, d));
}

function requests(binary: boolean) {
  const selector = fc.oneof(
    fc.record({ case: fc.constantFrom("tenantId" as const, "connectionId" as const), value: ids() }),
    fc.constant({ case: undefined }),
  );
  return fc.record({
    rpc: fc.constantFrom("getToken" as const, "reportExpired" as const, "watchToken" as const),
    selector,
    minValidFor: durations(binary),
    // The long poll: any version (1 is the stored one), and waits that are refused (negative, over 60 s) or short.
    newerThan: fc.oneof(fc.constantFrom(0n, 1n, 2n), fc.bigInt(0n, 2n ** 64n - 1n)),
    wait: fc.oneof(
      durations(binary),
      fc.integer({ min: 0, max: 200 }).map((ms) => create(DurationSchema, { nanos: ms * 1_000_000 })),
    ),
    accessToken: fc.string({ unit: "binary", maxLength: 64 }),
    key: fc.constantFrom<keyof typeof keys | "none" | "garbage">("all", "all", "scoped", "scoped", "revoked", "none", "garbage"),
  });
}

type Generated = {
  rpc: "getToken" | "reportExpired" | "watchToken";
  selector: { case: "tenantId" | "connectionId"; value: string } | { case: undefined };
  minValidFor: ReturnType<typeof create<typeof DurationSchema>> | undefined;
  newerThan: bigint;
  wait: ReturnType<typeof create<typeof DurationSchema>> | undefined;
  accessToken: string;
  key: keyof typeof keys | "none" | "garbage";
};

async function send(client: Client<typeof TokenService>, r: Generated): Promise<Code | "ok"> {
  const key = r.key === "none" ? undefined : r.key === "garbage" ? "tbk_garbage" : keys[r.key];
  const options = { ...(key ? withKey(key) : {}), timeoutMs: 10_000 };
  switch (r.rpc) {
    case "getToken":
      return outcome(() =>
        client.getToken(
          {
            selector: r.selector,
            ...(r.minValidFor ? { minValidFor: r.minValidFor } : {}),
            newerThan: r.newerThan,
            ...(r.wait ? { wait: r.wait } : {}),
          },
          options,
        ),
      );
    case "reportExpired":
      return outcome(() => client.reportExpired({ selector: r.selector, accessToken: r.accessToken }, options));
    case "watchToken":
      return outcome(async () => {
        const cancel = new AbortController();
        try {
          for await (const _ of client.watchToken({ selector: r.selector }, { ...options, signal: cancel.signal })) return;
        } finally {
          cancel.abort();
        }
      });
  }
}

describe("generated requests", () => {
  it.each([
    { name: "gRPC", binary: true, client: () => grpcClient },
    { name: "Connect JSON", binary: false, client: () => jsonClient },
  ])("over $name: every answer is a proper status", async ({ binary, client }) => {
    const seen = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(requests(binary), async (r) => {
        const code = await send(client(), r as Generated);
        const name = code === "ok" ? "OK" : Code[code];
        seen.set(name, (seen.get(name) ?? 0) + 1);
        expect(PROPER, `answered ${name}`).toContain(code);
      }),
      { numRuns: 300 },
    );
    console.log(Object.fromEntries(seen));
    // The mix reached past authentication and the scope check.
    expect(seen.get("OK") ?? 0).toBeGreaterThan(0);
    expect(seen.get("InvalidArgument") ?? 0).toBeGreaterThan(0);
    expect(seen.get("PermissionDenied") ?? 0).toBeGreaterThan(0);
    expect(snapshot()).toBe(before);
  });
});

/** A raw Connect request over HTTP/1.1 (fetch): the status it ends with. */
async function rawConnect(path: string, contentType: string, body: Uint8Array, key: string | undefined): Promise<Code | "ok"> {
  const cancel = new AbortController();
  const timer = setTimeout(() => cancel.abort(), 10_000);
  try {
    const res = await fetch(`${f.server.url}${path}`, {
      method: "POST",
      headers: { "content-type": contentType, "connect-protocol-version": "1", ...(key ? { authorization: `Bearer ${key}` } : {}) },
      body,
      signal: cancel.signal,
    });
    if (contentType.startsWith("application/connect+") && res.status === 200) return await firstEnvelope(res);
    return await unaryStatus(res);
  } finally {
    clearTimeout(timer);
    cancel.abort(); // drops a stream that is still open
  }
}

/** Reads a Connect stream up to its first envelope: a data message is a streamed token; the end message carries the error. */
async function firstEnvelope(res: Response): Promise<Code | "ok"> {
  const reader = res.body!.getReader();
  let bytes = new Uint8Array(0);
  for (;;) {
    if (bytes.length >= 5) {
      const length = new DataView(bytes.buffer, bytes.byteOffset + 1, 4).getUint32(0);
      if (bytes.length >= 5 + length) {
        if ((bytes[0]! & 2) === 0) return "ok";
        const end = JSON.parse(new TextDecoder().decode(bytes.subarray(5, 5 + length))) as { error?: { code: string } };
        return end.error ? codeFromString(end.error.code) : "ok";
      }
    }
    const { done, value } = await reader.read();
    if (done) throw new Error("the stream ended without an end-of-stream message");
    bytes = new Uint8Array([...bytes, ...value]);
  }
}

/** The status of a unary Connect response: 200, or the code of its JSON error body. */
async function unaryStatus(res: Response): Promise<Code | "ok"> {
  const bytes = new Uint8Array(await res.arrayBuffer());
  if (res.status === 200) return "ok";
  const text = new TextDecoder().decode(bytes);
  try {
    return codeFromString((JSON.parse(text) as { code: string }).code);
  } catch {
    throw new Error(`HTTP ${res.status} without a Connect error body: ${text.slice(0, 100)}`);
  }
}

function codeFromString(code: string): Code {
  const name = code.replace(/(^|_)([a-z])/g, (_m, _u, c: string) => c.toUpperCase()) as keyof typeof Code;
  const value = Code[name];
  if (value === undefined) throw new Error(`unknown code ${code}`);
  return value;
}

/** A raw gRPC request on the shared HTTP/2 session: the grpc-status it ends with. */
async function rawGrpc(path: string, body: Uint8Array, key: string | undefined): Promise<Code | "ok"> {
  return new Promise((resolve, reject) => {
    const req = h2.request({
      ":method": "POST",
      ":path": path,
      "content-type": "application/grpc+proto",
      te: "trailers",
      ...(key ? { authorization: `Bearer ${key}` } : {}),
    });
    let status: number | undefined;
    req.on("response", (headers) => {
      if (headers["grpc-status"] !== undefined) status = Number(headers["grpc-status"]);
    });
    req.on("trailers", (trailers) => {
      if (trailers["grpc-status"] !== undefined) status = Number(trailers["grpc-status"]);
    });
    req.on("data", () => {
      if (path.endsWith("/WatchToken")) req.close(http2.constants.NGHTTP2_CANCEL); // got a token: drop the stream
    });
    req.on("close", () => resolve(status === undefined ? "ok" : status === 0 ? "ok" : (status as Code)));
    req.on("error", reject);
    req.setTimeout(10_000, () => reject(new Error("raw gRPC request timed out")));
    req.end(body);
  });
}

/** Prefixes a gRPC / Connect envelope (flags 0, the right length). */
function envelope(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(5 + payload.length);
  new DataView(out.buffer).setUint32(1, payload.length);
  out.set(payload, 5);
  return out;
}

describe("random bytes as bodies", () => {
  it("every RPC, every encoding: a proper status (or a decoding error for undecodable binary), never UNKNOWN", async () => {
    const seen = new Map<string, number>();
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 512 }),
      fc.json({ maxDepth: 3 }).map((j) => new TextEncoder().encode(j)),
      fc
        .constantFrom(`{"tenantId":"${f.tenantId}"}`, `{"connectionId":"${f.connectionId}","minValidFor":"1s"}`)
        .map((j) => new TextEncoder().encode(j)),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("GetToken", "ReportExpired", "WatchToken"),
        fc.constantFrom("json", "proto", "grpc"),
        body,
        fc.boolean(), // framed in a correct envelope (streaming and gRPC)
        fc.constantFrom<string | undefined>(undefined, "all", "scoped"),
        async (method, encoding, bytes, framed, keyName) => {
          const key = keyName === undefined ? undefined : keys[keyName as "all" | "scoped"];
          const path = `${SERVICE}/${method}`;
          const stream = method === "WatchToken";
          let code: Code | "ok";
          if (encoding === "grpc") {
            code = await rawGrpc(path, framed ? envelope(bytes) : bytes, key);
          } else if (stream) {
            code = await rawConnect(path, `application/connect+${encoding}`, framed ? envelope(bytes) : bytes, key);
          } else {
            code = await rawConnect(path, `application/${encoding}`, bytes, key);
          }
          const name = code === "ok" ? "OK" : Code[code];
          seen.set(`${encoding} ${name}`, (seen.get(`${encoding} ${name}`) ?? 0) + 1);
          // JSON that is valid framing is judged strictly; binary, or broken framing, may be undecodable.
          const strict = encoding === "json" && (!stream || framed);
          expect(strict ? PROPER : UNDECODABLE, `${method} ${encoding} answered ${name}`).toContain(code);
        },
      ),
      { numRuns: 400 },
    );
    console.log(Object.fromEntries(seen));
    expect(snapshot()).toBe(before);
  });

  it("afterwards the server still serves, and nothing went upstream", async () => {
    const { token } = await grpcClient.getToken({ selector: { case: "tenantId", value: f.tenantId } }, withKey(keys.all));
    expect(token?.version).toBe(1n);
    expect(f.fake.tokenEndpointCalls).toBe(1); // the import
    expect(snapshot()).toBe(before);
  });
});
