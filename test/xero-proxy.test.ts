/**
 * The Xero API proxy on a real broker's port (API keys and an audit log on,
 * as `tokenbroker serve` runs it), in front of a recording stand-in for Xero's
 * API and, for `/connections`, the fake Xero itself: forwarding both ways over
 * HTTP/1.1 and HTTP/2, streaming, hostile targets as raw bytes, keys and
 * scopes, one refresh for 100 callers after Xero's 401, the replay bound, the
 * call budget, aborts, timeouts, audit, metrics, and no secret in a log or an
 * answer.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createXeroFetch } from "../packages/client/src/index.js";
import { QuotaExceededError, unlimitedBudget, type CallBudget } from "../src/quota/call-budget.js";
import { startBrokerServer, type BrokerServer } from "../src/server/broker-server.js";
import { captureLog, type LogCapture } from "./helpers/log-capture.js";
import { exchange, h1Status } from "./helpers/raw-http.js";
import { startRecordingApi, type RecordingApi } from "./helpers/recording-api.js";
import { startSecureBroker, type SecureBrokerFixture } from "./helpers/secure-broker.js";

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** An HTTP/1.1 request with the target sent exactly as given. */
function h1(base: string, method: string, path: string, headers: http.OutgoingHttpHeaders = {}, body?: Buffer | string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}/`, { method, path, headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on("error", reject);
    });
    req.on("error", reject);
    req.end(body);
  });
}

/** An HTTP/2 (h2c) request on a connection of its own. */
function h2(base: string, method: string, path: string, headers: http2.OutgoingHttpHeaders = {}, body?: Buffer | string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const session = http2.connect(base);
    session.on("error", reject);
    const stream = session.request({ ":method": method, ":path": path, ...headers });
    const chunks: Buffer[] = [];
    let status = 0;
    let responseHeaders: http.IncomingHttpHeaders = {};
    stream.on("response", (h) => {
      status = Number(h[":status"]);
      responseHeaders = h as http.IncomingHttpHeaders;
    });
    stream.on("data", (c: Buffer) => chunks.push(c));
    stream.on("end", () => {
      session.close();
      resolve({ status, headers: responseHeaders, body: Buffer.concat(chunks) });
    });
    stream.on("error", reject);
    stream.end(body);
  });
}

const json = (a: Answer) => JSON.parse(a.body.toString()) as Record<string, unknown>;

/** A budget that counts permits and can be told to refuse. */
function countingBudget(): CallBudget & {
  acquired: number;
  released: number;
  refuse: QuotaExceededError | undefined;
  tenants: (string | undefined)[];
} {
  const b = {
    acquired: 0,
    released: 0,
    refuse: undefined as QuotaExceededError | undefined,
    tenants: [] as (string | undefined)[],
    async acquire(tenantId: string | undefined) {
      if (b.refuse) throw b.refuse;
      b.acquired++;
      b.tenants.push(tenantId);
      let done = false;
      return {
        release() {
          if (!done) b.released++;
          done = true;
        },
      };
    },
  };
  return b;
}

let api: RecordingApi;
let f: SecureBrokerFixture;
let log: LogCapture;
let budget: ReturnType<typeof countingBudget>;
let all: string;
let onlyA: string;
let tenantB: string;
/** Every access token the API saw, to look for in logs and answers. */
const seenTokens = new Set<string>();

const base = () => f.server.url;
const currentToken = async () => (await f.store.tokens.getToken(f.connectionId))!.accessToken;

beforeAll(async () => {
  api = await startRecordingApi();
  log = captureLog("debug");
  budget = countingBudget();
  f = await startSecureBroker({
    server: { logger: log.logger, proxy: { apiUrl: api.url, replayMaxBytes: 1024, timeoutMs: 1500 }, callBudget: budget },
  });
  tenantB = f.imported.tenants[1]!.tenantId;
  all = f.createKey("channel-all", "*");
  onlyA = f.createKey("channel-a", [f.tenantId]);
}, 30_000);

afterAll(async () => {
  await f?.close();
  await api?.close();
});

const auth = (key: string, tenant?: string) => ({ authorization: `Bearer ${key}`, ...(tenant ? { "xero-tenant-id": tenant } : {}) });

describe("forwarding", () => {
  it("sends method, query, body and end-to-end headers with the tenant's token, and returns status, headers and body (HTTP/1.1)", async () => {
    api.handler = (_req, res) => {
      res.writeHead(201, {
        "content-type": "application/json",
        "x-minlimit-remaining": "59",
        "set-cookie": "affinity=1",
        connection: "keep-alive, x-hop",
        "x-hop": "1",
      });
      res.end('{"Invoices":[]}');
    };
    const before = api.requests.length;
    const a = await h1(
      base(),
      "POST",
      "/xero/api.xro/2.0/Invoices?where=Status%3D%22PAID%22&page=2",
      {
        ...auth(all, f.tenantId),
        "content-type": "application/json",
        accept: "application/json",
        "x-custom": "yes",
        cookie: "tb_session=secret",
      },
      '{"Type":"ACCREC"}',
    );
    expect(a.status).toBe(201);
    expect(a.body.toString()).toBe('{"Invoices":[]}');
    expect(a.headers["x-minlimit-remaining"]).toBe("59");
    expect(a.headers["set-cookie"]).toBeUndefined();
    expect(a.headers["x-hop"]).toBeUndefined();
    const r = api.requests[before]!;
    expect(r.method).toBe("POST");
    expect(r.url).toBe("/api.xro/2.0/Invoices?where=Status%3D%22PAID%22&page=2");
    expect(r.body.toString()).toBe('{"Type":"ACCREC"}');
    expect(r.headers["authorization"]).toBe(`Bearer ${await currentToken()}`);
    expect(r.headers["xero-tenant-id"]).toBe(f.tenantId);
    expect(r.headers["content-type"]).toBe("application/json");
    expect(r.headers["x-custom"]).toBe("yes");
    expect(r.headers["cookie"]).toBeUndefined();
    expect(r.headers["host"]).toBe(new URL(api.url).host);
    expect(JSON.stringify(r.headers)).not.toContain("tbk_");
  });

  it("forwards over HTTP/2 without connection-specific headers in the answer", async () => {
    api.handler = (_req, res, rec) => {
      res.writeHead(200, { "content-type": "text/plain", connection: "close", "keep-alive": "timeout=5", "x-upstream": "h1" });
      res.end(`got ${rec.method} ${rec.body.length}`);
    };
    const before = api.requests.length;
    const a = await h2(
      base(),
      "PUT",
      "/xero/api.xro/2.0/Contacts?summaryOnly=true",
      { ...auth(all, tenantB), "content-type": "application/json" },
      "x".repeat(500),
    );
    expect(a.status).toBe(200);
    expect(a.body.toString()).toBe("got PUT 500");
    expect(a.headers["x-upstream"]).toBe("h1");
    expect(a.headers["connection"]).toBeUndefined();
    expect(a.headers["keep-alive"]).toBeUndefined();
    const r = api.requests[before]!;
    expect(r.headers["xero-tenant-id"]).toBe(tenantB);
    expect(r.url).toBe("/api.xro/2.0/Contacts?summaryOnly=true");
  });

  it.each(["GET", "DELETE", "PATCH", "HEAD", "OPTIONS"])("forwards %s over both HTTP versions", async (method) => {
    api.handler = (_req, res, rec) => {
      res.writeHead(200, { "content-type": "text/plain", "x-method": rec.method });
      res.end(method === "HEAD" ? undefined : `m=${rec.method}`);
    };
    for (const send of [h1, h2]) {
      const before = api.requests.length;
      const a = await send(base(), method, "/xero/api.xro/2.0/Items", auth(all, f.tenantId));
      expect(a.status).toBe(200);
      expect(a.headers["x-method"]).toBe(method);
      expect(a.body.toString()).toBe(method === "HEAD" ? "" : `m=${method}`);
      expect(api.requests[before]!.method).toBe(method);
    }
  });

  it("streams a body over the replay bound to Xero whole, over HTTP/1.1 (with its length) and HTTP/2 (without)", async () => {
    api.handler = (_req, res, rec) => res.end(String(rec.body.length));
    const body = Buffer.alloc(600 * 1024, 7);
    for (const [send, length] of [
      [h1, String(body.length)],
      [h2, undefined],
    ] as const) {
      const before = api.requests.length;
      const a = await send(
        base(),
        "POST",
        "/xero/api.xro/2.0/Invoices/1/Attachments/a.bin",
        { ...auth(all, f.tenantId), "content-type": "application/octet-stream" },
        body,
      );
      expect(a.body.toString()).toBe(String(body.length));
      const r = api.requests[before]!;
      expect(r.body.equals(body)).toBe(true);
      expect(r.headers["content-length"]).toBe(length);
    }
  });

  it.each(["1.1", "2"])("streams a large answer over HTTP/%s: the first bytes arrive before Xero has finished", async (version) => {
    let finish!: () => void;
    const finished = new Promise<void>((r) => (finish = r));
    api.handler = (_req, res) => {
      res.writeHead(200, { "content-type": "application/octet-stream" });
      res.write(Buffer.alloc(256 * 1024, 1));
      void finished.then(() => res.end(Buffer.alloc(256 * 1024, 2)));
    };
    const chunks: Buffer[] = [];
    let onFirst!: () => void;
    const first = new Promise<void>((r) => (onFirst = r));
    const done = new Promise<void>((resolve, reject) => {
      const onData = (c: Buffer) => {
        chunks.push(c);
        onFirst();
      };
      if (version === "1.1") {
        const req = http.request(`${base()}/xero/api.xro/2.0/Reports/Big`, { headers: auth(all, f.tenantId), agent: false }, (res) => {
          res.on("data", onData);
          res.on("end", resolve);
        });
        req.on("error", reject);
        req.end();
      } else {
        const session = http2.connect(base());
        const stream = session.request({ ":path": "/xero/api.xro/2.0/Reports/Big", ...auth(all, f.tenantId) });
        stream.on("data", onData);
        stream.on("end", () => {
          session.close();
          resolve();
        });
        stream.on("error", reject);
        stream.end();
      }
    });
    await first; // while Xero still holds the rest of its answer
    const beforeEnd = Buffer.concat(chunks).length;
    expect(beforeEnd).toBeGreaterThan(0);
    expect(beforeEnd).toBeLessThanOrEqual(256 * 1024);
    finish();
    await done;
    const whole = Buffer.concat(chunks);
    expect(whole.length).toBe(512 * 1024);
    expect(whole[whole.length - 1]).toBe(2);
  });
});

describe("what it refuses", () => {
  const HOSTILE = [
    "/xero/../connect/token",
    "/xero/%2e%2e/connect/token",
    "/xero/api.xro%2F..%2F..%2Fconnect%2Ftoken",
    "/xero/%252e%252e/x",
    "/xero/api.xro/2.0/./Invoices",
    "/xero/@evil.example/x",
    "/xero/http://evil.example/",
    "/xero//evil.example/x",
    "/xero/a%00b",
    "/xero/a%5c..%5cb",
    "/xero/",
  ];
  it.each(HOSTILE)("answers 400 to %s sent as raw bytes, over HTTP/1.1, without calling Xero", async (target) => {
    const before = api.requests.length;
    const request = `GET ${target} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${all}\r\nxero-tenant-id: ${f.tenantId}\r\nConnection: close\r\n\r\n`;
    const bytes = await exchange({ url: base() }, "http/1.1", Buffer.from(request, "latin1"));
    expect(h1Status(bytes)).toBe(400);
    expect(bytes.toString()).not.toContain(all);
    expect(api.requests.length).toBe(before);
  });

  it("answers 400 to hostile targets over HTTP/2 (the :path as sent)", async () => {
    const before = api.requests.length;
    for (const target of HOSTILE) {
      const a = await h2(base(), "GET", target, auth(all, f.tenantId));
      expect(a.status, target).toBe(400);
    }
    expect(api.requests.length).toBe(before);
  });

  it("answers 401 without a valid key, 403 outside the key's tenants, 400 without a tenant, 404 for a tenant not connected", async () => {
    const before = api.requests.length;
    const path = "/xero/api.xro/2.0/Invoices";
    for (const send of [h1, h2]) {
      expect((await send(base(), "GET", path, { "xero-tenant-id": f.tenantId })).status).toBe(401);
      expect((await send(base(), "GET", path, auth(`tbk_${"x".repeat(43)}`, f.tenantId))).status).toBe(401);
      expect((await send(base(), "GET", path, auth("not-a-key", f.tenantId))).status).toBe(401);
      const denied = await send(base(), "GET", path, auth(onlyA, tenantB));
      expect(denied.status).toBe(403);
      expect(json(denied)["code"]).toBe("permission_denied");
      expect((await send(base(), "GET", path, auth(onlyA, "not-connected"))).status).toBe(403);
      const noTenant = await send(base(), "GET", path, auth(all));
      expect(noTenant.status).toBe(400);
      expect(json(noTenant)["code"]).toBe("tenant_required");
      const unknown = await send(base(), "GET", path, auth(all, "00000000-0000-0000-0000-000000000000"));
      expect(unknown.status).toBe(404);
      expect(json(unknown)["code"]).toBe("not_found");
    }
    expect((await h1(base(), "GET", path, auth(onlyA, f.tenantId))).status).toBe(200);
    expect(api.requests.length).toBe(before + 1);
  });

  it("refuses browsers (Origin, Sec-Fetch-Site) with 403, and a TRACE with 405", async () => {
    const before = api.requests.length;
    const a = await h1(base(), "GET", "/xero/api.xro/2.0/Invoices", { ...auth(all, f.tenantId), origin: "https://evil.example" });
    expect(a.status).toBe(403);
    expect(json(a)["code"]).toBe("browser_refused");
    expect((await h1(base(), "GET", "/xero/connections", { ...auth(all, f.tenantId), "sec-fetch-site": "same-origin" })).status).toBe(403);
    expect((await h1(base(), "TRACE", "/xero/connections", auth(all, f.tenantId))).status).toBe(405);
    expect(api.requests.length).toBe(before);
  });
});

describe("Xero's 401", () => {
  it("makes exactly one refresh for 100 concurrent callers, each retried once and answered 200", async () => {
    const stale = await currentToken();
    api.handler = (req, res) => {
      const expired = req.headers.authorization === `Bearer ${stale}`;
      res.writeHead(expired ? 401 : 200, { "content-type": "application/json" });
      res.end(expired ? JSON.stringify({ Title: "Unauthorized", Detail: "TokenExpired: token expired" }) : '{"ok":true}');
    };
    const refreshes = f.fake.refreshes;
    const before = api.requests.length;
    const answers = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        (i % 2 === 0 ? h1 : h2)(
          base(),
          "POST",
          "/xero/api.xro/2.0/Invoices",
          { ...auth(all, f.tenantId), "content-type": "application/json" },
          `{"n":${i}}`,
        ),
      ),
    );
    expect(answers.map((a) => a.status)).toEqual(Array(100).fill(200));
    expect(f.fake.refreshes - refreshes).toBe(1);
    const fresh = await currentToken();
    expect(fresh).not.toBe(stale);
    const sent = api.requests.slice(before);
    expect(sent.filter((r) => r.headers.authorization === `Bearer ${fresh}`)).toHaveLength(100);
    // Each retry carried its own body again.
    expect(new Set(sent.filter((r) => r.headers.authorization === `Bearer ${fresh}`).map((r) => r.body.toString())).size).toBe(100);
    for (const r of sent) seenTokens.add(String(r.headers.authorization).slice(7));
  }, 30_000);

  it("passes the 401 through for a body over the replay bound, and still refreshes once", async () => {
    const stale = await currentToken();
    api.handler = (req, res) => {
      const expired = req.headers.authorization === `Bearer ${stale}`;
      res.writeHead(expired ? 401 : 200, { "content-type": "application/json", "www-authenticate": 'Bearer error="invalid_token"' });
      res.end(expired ? '{"Title":"Unauthorized"}' : '{"ok":true}');
    };
    const refreshes = f.fake.refreshes;
    const before = api.requests.length;
    const big = "y".repeat(4096); // over the 1 KiB bound of this broker
    const a = await h1(base(), "POST", "/xero/api.xro/2.0/Invoices", { ...auth(all, f.tenantId), "content-type": "text/plain" }, big);
    expect(a.status).toBe(401);
    expect(a.body.toString()).toBe('{"Title":"Unauthorized"}');
    expect(a.headers["www-authenticate"]).toBe('Bearer error="invalid_token"');
    expect(api.requests.length).toBe(before + 1);
    expect(api.requests[before]!.body.toString()).toBe(big);
    await expect.poll(() => f.fake.refreshes - refreshes).toBe(1);
    // The next call gets the new token.
    expect((await h1(base(), "POST", "/xero/api.xro/2.0/Invoices", auth(all, f.tenantId), big)).status).toBe(200);
    seenTokens.add(stale);
    seenTokens.add(await currentToken());
  });
});

describe("budget, failures and aborts", () => {
  it("answers 429 with Retry-After and X-Rate-Limit-Problem when the budget refuses, without calling Xero", async () => {
    const before = api.requests.length;
    budget.refuse = new QuotaExceededError("minute", 12_300, false);
    try {
      const a = await h1(base(), "GET", "/xero/api.xro/2.0/Invoices", auth(all, f.tenantId));
      expect(a.status).toBe(429);
      expect(a.headers["retry-after"]).toBe("13");
      expect(a.headers["x-rate-limit-problem"]).toBe("minute");
      expect(json(a)["code"]).toBe("quota_exceeded");
    } finally {
      budget.refuse = undefined;
    }
    expect(api.requests.length).toBe(before);
  });

  it("asks the budget for the tenant, and for /connections the app's alone; every permit is released", async () => {
    api.handler = (_req, res) => res.end("[]");
    budget.tenants.length = 0;
    await h1(base(), "GET", "/xero/api.xro/2.0/Invoices", auth(all, f.tenantId));
    const c = await h1(base(), "GET", "/xero/connections", auth(all, f.tenantId));
    expect(c.status).toBe(200);
    expect(api.requests.at(-1)!.headers["xero-tenant-id"]).toBeUndefined();
    expect(budget.tenants).toEqual([f.tenantId, undefined]);
    expect(budget.released).toBe(budget.acquired);
  });

  it("aborts the call to Xero when the caller goes away, and releases its permit", async () => {
    api.handler = () => {}; // never answers
    const before = api.requests.length;
    for (const version of ["1.1", "2"]) {
      if (version === "1.1") {
        const req = http.request(`${base()}/xero/api.xro/2.0/Hang`, { headers: auth(all, f.tenantId), agent: false });
        req.on("error", () => {});
        req.end();
        await expect.poll(() => api.requests.length).toBe(before + 1);
        req.destroy();
        await expect.poll(() => api.requests[before]!.aborted, { timeout: 1000 }).toBe(true);
      } else {
        const session = http2.connect(base());
        session.on("error", () => {});
        const stream = session.request({ ":path": "/xero/api.xro/2.0/Hang", ...auth(all, f.tenantId) });
        stream.on("error", () => {});
        stream.end();
        await expect.poll(() => api.requests.length).toBe(before + 2);
        stream.close(http2.constants.NGHTTP2_CANCEL);
        session.close();
        await expect.poll(() => api.requests[before + 1]!.aborted, { timeout: 1000 }).toBe(true);
      }
    }
    await expect.poll(() => api.requests.slice(before).every((r) => r.aborted)).toBe(true);
    await expect.poll(() => budget.released).toBe(budget.acquired);
  });

  it("answers 504 when Xero does not answer within the timeout, and 502 when it cannot be reached", async () => {
    api.handler = () => {};
    const a = await h1(base(), "GET", "/xero/api.xro/2.0/Slow", auth(all, f.tenantId));
    expect(a.status).toBe(504);
    expect(json(a)["code"]).toBe("upstream_timeout");
    const closed = await startBrokerServer({
      port: 0,
      store: f.store,
      identity: f.identity,
      proxy: { apiUrl: "http://127.0.0.1:1" },
      callBudget: unlimitedBudget,
    });
    try {
      await closed.scheduler.stop();
      const b = await h1(closed.url, "GET", "/xero/api.xro/2.0/Invoices", { "xero-tenant-id": f.tenantId });
      expect(b.status).toBe(502);
      expect(json(b)["code"]).toBe("upstream_unreachable");
    } finally {
      await closed.close();
    }
    expect(budget.released).toBe(budget.acquired);
  });
});

describe("/connections at the fake Xero, and a port without keys", () => {
  let open: BrokerServer;
  beforeAll(async () => {
    open = await startBrokerServer({
      port: 0,
      store: f.store,
      identity: f.identity,
      proxy: { apiUrl: f.fake.issuer, refused: [`${f.fake.issuer}/connect`, `${f.fake.issuer}/identity`, `${f.fake.issuer}/.well-known`] },
    });
    await open.scheduler.stop();
  });
  afterAll(() => open?.close());

  it("lists the grant's connections through the proxy, by tenant or by connection id", async () => {
    for (const headers of [{ "xero-tenant-id": f.tenantId }, { "tokenbroker-connection-id": f.connectionId }]) {
      const a = await h1(open.url, "GET", "/xero/connections", headers);
      expect(a.status).toBe(200);
      const list = JSON.parse(a.body.toString()) as Array<{ tenantId: string }>;
      expect(list.map((c) => c.tenantId).sort()).toEqual(f.imported.tenants.map((t) => t.tenantId).sort());
    }
  });

  it("never reaches the identity server that shares the API's origin", async () => {
    const calls = f.fake.tokenEndpointCalls;
    for (const path of [
      "/xero/connect/token",
      "/xero/Connect/Revocation",
      "/xero/.well-known/openid-configuration",
      "/xero/identity/connect/authorize",
    ]) {
      const a = await h1(
        open.url,
        "POST",
        path,
        { "xero-tenant-id": f.tenantId, "content-type": "application/x-www-form-urlencoded" },
        "grant_type=refresh_token",
      );
      expect(a.status, path).toBe(400);
    }
    expect(f.fake.tokenEndpointCalls).toBe(calls);
  });

  it("still refuses browsers on a port without keys", async () => {
    const a = await h1(open.url, "GET", "/xero/connections", { "xero-tenant-id": f.tenantId, origin: "http://evil.example" });
    expect(a.status).toBe(403);
  });
});

describe("the client's createXeroFetch", () => {
  it("calls Xero through the proxy with the key and tenant, and Xero's 401 is handled by the broker", async () => {
    const stale = await currentToken();
    api.handler = (req, res, rec) => {
      const expired = req.headers.authorization === `Bearer ${stale}`;
      res.writeHead(expired ? 401 : 200, { "content-type": "application/json" });
      res.end(expired ? "{}" : JSON.stringify({ url: rec.url, tenant: req.headers["xero-tenant-id"], body: rec.body.toString() }));
    };
    const xero = createXeroFetch({ baseUrl: base(), apiKey: onlyA, tenantId: f.tenantId });
    const refreshes = f.fake.refreshes;
    const res = await xero("api.xro/2.0/Invoices?page=1", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ Type: "ACCREC" }),
    });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ url: "/api.xro/2.0/Invoices?page=1", tenant: f.tenantId, body: '{"Type":"ACCREC"}' });
    expect(f.fake.refreshes - refreshes).toBe(1);
    seenTokens.add(stale);
    // Another organisation per call; the key's scope still applies.
    expect((await xero("/api.xro/2.0/Invoices", { tenantId: tenantB })).status).toBe(403);
    await expect(xero("https://evil.example/")).rejects.toThrow(TypeError);
  });
});

describe("what it records", () => {
  it("audits each call: key name, tenant, status, method and path with query names only", async () => {
    api.handler = (_req, res) => res.end("{}");
    await h1(base(), "GET", "/xero/api.xro/2.0/Invoices?where=Secret%3D1&page=3", auth(onlyA, f.tenantId));
    await h1(base(), "GET", "/xero/api.xro/2.0/Invoices", auth(onlyA, tenantB));
    const entries = (await f.auditEntries()).filter((e) => e.action === "xero_call");
    expect(entries).toContainEqual(
      expect.objectContaining({ actor: "channel-a", tenantId: f.tenantId, outcome: "200", detail: "GET /api.xro/2.0/Invoices?where&page" }),
    );
    expect(entries).toContainEqual(expect.objectContaining({ actor: "channel-a", tenantId: tenantB, outcome: "403" }));
    expect(JSON.stringify(entries)).not.toContain("Secret");
  });

  it("counts calls by method and status class at /metrics", async () => {
    const text = (await h1(base(), "GET", "/metrics", {})).body.toString();
    expect(text).toMatch(/tokenbroker_proxy_calls_total\{method="POST",status_class="2xx",status=""\} \d+/);
    expect(text).toMatch(/tokenbroker_proxy_calls_total\{method="GET",status_class="4xx",status="403"\} \d+/);
    expect(text).toMatch(/tokenbroker_proxy_calls_total\{method="GET",status_class="4xx",status="429"\} 1/);
    expect(text).toMatch(/tokenbroker_proxy_upstream_seconds_count\{method="POST",status_class="4xx"\} \d+/);
  });

  it("never logs or answers a token or a key", async () => {
    const text = log.lines().join("\n");
    expect(log.records().some((r) => r["event"] === "xero_call")).toBe(true);
    expect(seenTokens.size).toBeGreaterThan(1);
    for (const secret of [...seenTokens, all, onlyA]) expect(text).not.toContain(secret);
    expect(text).not.toContain("tbk_");
  });
});
