/**
 * The Connect unary fast path (`src/server/connect-unary-fast-path.ts`)
 * against connect-node: two brokers on one store, with API keys, an audit
 * log and debug logging on, one serving as production does (fast paths on)
 * and one with every call going through connect-node (`fastPaths: false`),
 * get the same requests (good, bad JSON and binary, unknown fields, wrong
 * content types, compression, GET, no key, a key out of scope, deadline
 * headers, bodies over the limit with and without a length) over HTTP/1.1
 * and HTTP/2; each must be answered with the same status, content type,
 * encoding and body bytes, write the same debug line and the same audit rows.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import { Writable } from "node:stream";
import { gzipSync } from "node:zlib";
import { create, toBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GetTokenRequestSchema, ReportExpiredRequestSchema } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { createAuditLog, type AuditEntry, type AuditLog } from "../src/audit/audit-log.js";
import { generateApiKey, hashApiKey } from "../src/auth/api-key.js";
import { createAuthenticator } from "../src/auth/authenticator.js";
import { createLogger } from "../src/logger.js";
import { startBrokerServer, type BrokerServer } from "../src/server/broker-server.js";
import { startBroker, type BrokerFixture } from "./helpers/broker-fixture.js";

const SERVICE = "/tokenbroker.v1.TokenService";
const UNKNOWN_TENANT = "00000000-0000-0000-0000-000000000000";

/** One broker under test, its debug lines and audit rows. */
interface Side {
  server: BrokerServer;
  audit: AuditLog;
  rows: AuditEntry[];
  lines: string[];
  /** Per call that reached the request's checks: whether Connect's interceptor ran them, or the fast path. */
  paths: Array<"connect" | "fast">;
}

/** One request, as sent to both brokers. */
interface Case {
  name: string;
  /** Defaults: POST to GetToken with `application/json`, a content-length and `allKey`. */
  method?: "GET" | "POST";
  path?: string;
  headers?: Record<string, string>;
  body: Uint8Array;
  /** Send no `content-length` (HTTP/1.1: chunked). */
  noLength?: boolean;
  key?: "all" | "onlyB" | "none";
}

/** A response as the comparison sees it. */
interface Seen {
  status: number;
  contentType: string | undefined;
  contentEncoding: string | undefined;
  cacheControl: string | undefined;
  body: string;
}

let f: BrokerFixture;
let fast: Side;
let slow: Side;
let keys: Record<"all" | "onlyB", string>;
let tenantA: string;
let tenantB: string;

beforeAll(async () => {
  f = await startBroker();
  [tenantA, tenantB] = f.imported.tenants.map((t) => t.tenantId) as [string, string];
  keys = { all: generateApiKey(), onlyB: generateApiKey() };
  await f.store.apiKeys.create({ name: "all", keyHash: hashApiKey(keys.all), tenants: "*", role: "client", createdAt: Date.now() });
  await f.store.apiKeys.create({
    name: "only-b",
    keyHash: hashApiKey(keys.onlyB),
    tenants: [tenantB],
    role: "client",
    createdAt: Date.now(),
  });
  const side = async (fastPaths: boolean): Promise<Side> => {
    const rows: AuditEntry[] = [];
    const lines: string[] = [];
    const paths: Side["paths"] = [];
    const audit = createAuditLog({ sink: { write: (entries) => void rows.push(...entries) }, flushMs: 10 });
    const destination = new Writable({
      write(chunk: Buffer | string, _encoding, callback) {
        lines.push(...chunk.toString().split("\n").filter(Boolean));
        callback();
      },
    });
    const server = await startBrokerServer({
      port: 0,
      store: f.store,
      identity: f.identity,
      clock: f.clock,
      auth: { authenticator: createAuthenticator({ keys: f.store.apiKeys }) },
      audit,
      logger: createLogger({ level: "debug", destination }),
      fastPaths,
      // Which path checked the request: Connect's interceptor (guard-interceptor.ts) is on the stack of its checks.
      guardSteps: [
        { name: "path-probe", authorize: () => void paths.push(new Error().stack?.includes("guard-interceptor") ? "connect" : "fast") },
      ],
    });
    await server.scheduler.stop();
    return { server, audit, rows, lines, paths };
  };
  fast = await side(true);
  slow = await side(false);
});

afterAll(async () => {
  for (const s of [fast, slow]) {
    await s?.server.close();
    await s?.audit.close();
  }
  await f?.close();
});

const json = (value: unknown) => new TextEncoder().encode(typeof value === "string" ? value : JSON.stringify(value));
const getToken = (selector: { case: "tenantId" | "connectionId"; value: string }) => create(GetTokenRequestSchema, { selector });

function cases(): Case[] {
  const binary = { "content-type": "application/proto" };
  const good = json({ tenantId: tenantA });
  return [
    { name: "good JSON", body: good },
    { name: "good JSON, no content-length", body: good, noLength: true },
    { name: "good JSON with charset", headers: { "content-type": "application/json; charset=utf-8" }, body: good },
    { name: "good JSON by connection, min validity", body: json({ connectionId: f.connectionId, minValidFor: "60s" }) },
    { name: "good binary", headers: binary, body: toBinary(GetTokenRequestSchema, getToken({ case: "tenantId", value: tenantA })) },
    {
      name: "good binary, connect-protocol-version",
      headers: { ...binary, "connect-protocol-version": "1" },
      body: toBinary(GetTokenRequestSchema, getToken({ case: "connectionId", value: f.connectionId })),
    },
    { name: "unknown JSON fields are ignored", body: json({ tenantId: tenantA, somethingElse: [1, 2], nested: { a: 1 } }) },
    { name: "bad JSON", body: json(`{"tenantId": "${tenantA}"`) },
    { name: "JSON of the wrong type", body: json({ tenantId: 5 }) },
    { name: "JSON naming two selectors", body: json({ tenantId: tenantA, connectionId: f.connectionId }) },
    { name: "empty JSON body", body: new Uint8Array(0) },
    { name: "empty binary body (no selector)", headers: binary, body: new Uint8Array(0) },
    { name: "bad binary", headers: binary, body: new Uint8Array([0x0a, 0xff, 0xff, 0xff]) },
    { name: "a JSON body sent as binary", headers: binary, body: good },
    { name: "unknown tenant", body: json({ tenantId: UNKNOWN_TENANT }) },
    { name: "negative min validity", body: json({ tenantId: tenantA, minValidFor: "-5s" }) },
    { name: "wrong content type", headers: { "content-type": "text/plain" }, body: good },
    { name: "streaming content type", headers: { "content-type": "application/connect+json" }, body: good },
    { name: "no content type", headers: { "content-type": "" }, body: good },
    { name: "gzip-compressed request", headers: { "content-encoding": "gzip" }, body: gzipSync(good) },
    { name: "identity content-encoding", headers: { "content-encoding": "identity" }, body: good },
    { name: "unknown content-encoding", headers: { "content-encoding": "zstd-nope" }, body: good },
    { name: "accepts gzip (answer under compressMinBytes)", headers: { "accept-encoding": "gzip, br" }, body: good },
    { name: "missing key", body: good, key: "none" },
    { name: "out-of-scope key", body: good, key: "onlyB" },
    { name: "out-of-scope key, unknown tenant", body: json({ tenantId: UNKNOWN_TENANT }), key: "onlyB" },
    { name: "in-scope key", body: json({ tenantId: tenantB }), key: "onlyB" },
    { name: "timeout header", headers: { "connect-timeout-ms": "5000" }, body: good },
    { name: "timeout header past a timer's reach", headers: { "connect-timeout-ms": "9999999999" }, body: good },
    { name: "timeout header of 0", headers: { "connect-timeout-ms": "0" }, body: good },
    { name: "malformed timeout header", headers: { "connect-timeout-ms": "soon" }, body: good },
    { name: "huge body with content-length", body: json({ tenantId: tenantA, padding: "x".repeat(70_000) }) },
    { name: "huge body without content-length", body: json({ tenantId: tenantA, padding: "x".repeat(70_000) }), noLength: true },
    {
      name: "GET with the message in the query",
      method: "GET",
      path: `${SERVICE}/GetToken?encoding=json&message=${encodeURIComponent(JSON.stringify({ tenantId: tenantA }))}`,
      headers: {},
      body: new Uint8Array(0),
    },
    {
      name: "GET of ReportExpired",
      method: "GET",
      path: `${SERVICE}/ReportExpired?encoding=json&message=%7B%7D`,
      headers: {},
      body: new Uint8Array(0),
    },
    { name: "a query string on POST", path: `${SERVICE}/GetToken?x=1`, body: good },
    {
      name: "ReportExpired of a stale token",
      path: `${SERVICE}/ReportExpired`,
      body: json({ tenantId: tenantA, accessToken: "not-the-current-token" }),
    },
    {
      name: "ReportExpired, binary",
      path: `${SERVICE}/ReportExpired`,
      headers: binary,
      body: toBinary(
        ReportExpiredRequestSchema,
        create(ReportExpiredRequestSchema, { selector: { case: "connectionId", value: f.connectionId }, accessToken: "stale" }),
      ),
    },
    { name: "ReportExpired with no access token", path: `${SERVICE}/ReportExpired`, body: json({ tenantId: tenantA }) },
    {
      name: "ReportExpired out of scope",
      path: `${SERVICE}/ReportExpired`,
      body: json({ tenantId: tenantA, accessToken: "x" }),
      key: "onlyB",
    },
    { name: "WatchToken as unary JSON", path: `${SERVICE}/WatchToken`, body: good },
    { name: "unknown method", path: `${SERVICE}/NoSuchMethod`, body: good },
  ];
}

/** Sends one case to `baseUrl` over HTTP/1.1 (a fresh connection) or HTTP/2 (`session`). */
async function send(c: Case, baseUrl: string, session: http2.ClientHttp2Session | undefined): Promise<Seen> {
  const key = c.key ?? "all";
  const headers: Record<string, string> = {
    "content-type": "application/json",
    ...(key === "none" ? {} : { authorization: `Bearer ${keys[key]}` }),
    ...c.headers,
  };
  if (headers["content-type"] === "") delete headers["content-type"];
  if (!c.noLength && c.method !== "GET") headers["content-length"] = String(c.body.byteLength);
  const path = c.path ?? `${SERVICE}/GetToken`;
  const method = c.method ?? "POST";
  const seen = (status: number, h: http.IncomingHttpHeaders, body: Buffer): Seen => ({
    status,
    contentType: h["content-type"],
    contentEncoding: h["content-encoding"],
    cacheControl: h["cache-control"],
    body: body.toString("base64"),
  });
  if (!session) {
    const url = new URL(path, baseUrl);
    return await new Promise<Seen>((resolve, reject) => {
      const req = http.request(url, { method, headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => resolve(seen(res.statusCode ?? 0, res.headers, Buffer.concat(chunks))));
        res.on("error", reject);
      });
      req.on("error", reject);
      if (c.noLength && c.body.byteLength > 0) {
        // Chunked, in two writes: no length announced.
        req.write(c.body.subarray(0, 10));
        req.end(c.body.subarray(10));
      } else {
        req.end(c.body);
      }
    });
  }
  return await new Promise<Seen>((resolve, reject) => {
    const stream = session.request({ ":method": method, ":path": path, ...headers }, { endStream: method === "GET" });
    let status = 0;
    let responseHeaders: http.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on("response", (h) => {
      status = Number(h[":status"]);
      responseHeaders = h as http.IncomingHttpHeaders;
    });
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("close", () => resolve(seen(status, responseHeaders, Buffer.concat(chunks))));
    stream.on("error", reject);
    if (method !== "GET") stream.end(c.body);
  });
}

/** The debug lines written since `from`, without their durations. */
function rpcLines(side: Side, from: number): unknown[] {
  return side.lines
    .slice(from)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l["event"] === "rpc")
    .map(({ ms: _ms, time: _time, pid: _pid, hostname: _hostname, ...rest }) => rest);
}

const audited = (rows: AuditEntry[]) => rows.map(({ at: _at, ...rest }) => rest);

describe.each([
  { name: "HTTP/1.1", h2: false },
  { name: "HTTP/2", h2: true },
])("Connect unary calls over $name: the fast path answers as connect-node does", ({ h2 }) => {
  it("every case: the same status, content type, encoding and body, the same debug line and audit rows", async () => {
    const sessions = h2 ? [http2.connect(fast.server.url), http2.connect(slow.server.url)] : [undefined, undefined];
    const pathMarks = [fast.paths.length, slow.paths.length];
    try {
      for (const c of cases()) {
        const lineMarks = [fast.lines.length, slow.lines.length];
        const rowMarks = [fast.rows.length, slow.rows.length];
        const viaFast = await send(c, fast.server.url, sessions[0]);
        const viaConnect = await send(c, slow.server.url, sessions[1]);
        expect({ case: c.name, ...viaFast }).toEqual({ case: c.name, ...viaConnect });
        expect({ case: c.name, lines: rpcLines(fast, lineMarks[0]!) }).toEqual({ case: c.name, lines: rpcLines(slow, lineMarks[1]!) });
        await fast.audit.flush();
        await slow.audit.flush();
        expect({ case: c.name, rows: audited(fast.rows.slice(rowMarks[0])) }).toEqual({
          case: c.name,
          rows: audited(slow.rows.slice(rowMarks[1])),
        });
      }
      // Not a comparison of two slow paths: the fast broker checked most calls on its fast path, the other none.
      expect(fast.paths.slice(pathMarks[0]).filter((p) => p === "fast").length).toBeGreaterThanOrEqual(15);
      expect(slow.paths.slice(pathMarks[1])).not.toContain("fast");
    } finally {
      for (const s of sessions) s?.destroy();
    }
  });
});

describe("Connect unary calls whose deadline passes while they wait for a refresh", () => {
  it("end DEADLINE_EXCEEDED on both paths, over HTTP/1.1 and HTTP/2, with the same answer and debug line", async () => {
    f.fake.setLatency(3_000); // Xero answers long after the deadline
    await f.expireToken();
    const sessions = [http2.connect(fast.server.url), http2.connect(slow.server.url)];
    try {
      for (const h2 of [false, true]) {
        const c: Case = {
          name: `deadline during a refresh (${h2 ? "HTTP/2" : "HTTP/1.1"})`,
          headers: { "connect-timeout-ms": "300" },
          body: json({ tenantId: tenantA }),
        };
        const lineMarks = [fast.lines.length, slow.lines.length];
        const pathMarks = [fast.paths.length, slow.paths.length];
        const started = performance.now();
        const [viaFast, viaConnect] = await Promise.all([
          send(c, fast.server.url, h2 ? sessions[0] : undefined),
          send(c, slow.server.url, h2 ? sessions[1] : undefined),
        ]);
        expect(performance.now() - started).toBeLessThan(2_500); // answered at the deadline, not after the refresh
        expect(viaFast.status).toBe(504);
        expect({ case: c.name, ...viaFast }).toEqual({ case: c.name, ...viaConnect });
        expect(rpcLines(fast, lineMarks[0]!)).toEqual([expect.objectContaining({ method: "GetToken", code: "DeadlineExceeded" })]);
        expect(rpcLines(fast, lineMarks[0]!)).toEqual(rpcLines(slow, lineMarks[1]!));
        expect([fast.paths.slice(pathMarks[0]), slow.paths.slice(pathMarks[1])]).toEqual([["fast"], ["connect"]]);
      }
    } finally {
      for (const s of sessions) s.destroy();
      f.fake.setLatency(0);
    }
  });
});
