/**
 * Token responses on every protocol carry `Cache-Control: no-store`, and over
 * TLS every response carries `Strict-Transport-Security` (issue 12, item 7):
 * read from the real response headers of a `tokenbroker serve` process, over
 * cleartext and TLS (ALPN h2 and http/1.1).
 */
import type * as http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { frame, getTokenRequest, VIA_CONNECT, watchRequest } from "./helpers/raw-grpc.js";
import { exchange, h2Request } from "./helpers/raw-http.js";
import { startProductionBrokers, type ProductionBrokers } from "./helpers/production-serve.js";

const HSTS = "max-age=31536000";
let b: ProductionBrokers;

beforeAll(async () => {
  b = await startProductionBrokers();
}, 60_000);

afterAll(async () => {
  await b?.close();
});

type Headers = Record<string, string | string[] | number | undefined>;

/** One HTTP/1.1 request over a raw socket: the status and headers of its answer (lower-case names). */
async function h1(tls: boolean, head: string, body: Buffer = Buffer.alloc(0)): Promise<{ status: number; headers: Headers; body: string }> {
  const serve = tls ? b.tls : b.plain;
  const bytes = await exchange(
    { url: serve.url, ca: b.certs.ca },
    "http/1.1",
    [Buffer.from(`${head}\r\nhost: localhost\r\nconnection: close\r\ncontent-length: ${body.length}\r\n\r\n`, "latin1"), body],
    1_000,
  );
  const text = bytes.toString("latin1");
  const [statusLine, ...lines] = text.slice(0, text.indexOf("\r\n\r\n")).split("\r\n");
  const headers: Headers = {};
  for (const line of lines) {
    const i = line.indexOf(":");
    headers[line.slice(0, i).toLowerCase()] = line.slice(i + 1).trim();
  }
  return { status: Number(statusLine!.split(" ")[1]), headers, body: text.slice(text.indexOf("\r\n\r\n") + 4) };
}

/**
 * One HTTP/2 request: its response headers (a streaming call is left once `doneWhen` holds for its body so far,
 * else after a second, its headers read).
 */
async function h2(
  tls: boolean,
  headers: http2.OutgoingHttpHeaders,
  body?: Uint8Array,
  doneWhen?: (body: Buffer) => boolean,
): Promise<{ headers: Headers; body: Buffer }> {
  const serve = tls ? b.tls : b.plain;
  const r = await h2Request({ url: serve.url, ca: b.certs.ca }, headers, body, 1_000, doneWhen);
  expect(r.headers, r.error).toBeDefined();
  return { headers: r.headers!, body: r.body };
}

const tenant = () => b.grant.tenants[0]!.tenantId;
const auth = () => ({ authorization: `Bearer ${b.key}` });
const grpc = (method: string, extra: http2.OutgoingHttpHeaders = {}) => ({
  ":method": "POST",
  ":path": `/tokenbroker.v1.TokenService/${method}`,
  "content-type": "application/grpc",
  te: "trailers",
  ...auth(),
  ...extra,
});
/** A watch stream has answered its first message (an envelope holding the token): what its headers came with. */
const firstToken = (body: Buffer) => body.length >= 5 && body.readUInt32BE(1) > 100 && body.length >= 5 + body.readUInt32BE(1);
/** A Connect streaming request: one JSON envelope. */
const connectEnvelope = () => frame(Buffer.from(JSON.stringify({ tenantId: tenant() })));

/** Each way of getting a token: its answer's headers, and whether a token came in it. */
const TOKEN_RESPONSES: Array<{ name: string; send(tls: boolean): Promise<{ headers: Headers; token: boolean }> }> = [
  {
    name: "gRPC GetToken (fast path)",
    send: async (tls) => ({ ...(await h2(tls, grpc("GetToken"), getTokenRequest({ case: "tenantId", value: tenant() }))), token: true }),
  },
  {
    name: "gRPC WatchToken (fast path)",
    send: async (tls) => ({
      ...(await h2(tls, grpc("WatchToken"), watchRequest({ case: "tenantId", value: tenant() }), firstToken)),
      token: true,
    }),
  },
  {
    name: "gRPC GetToken with a deadline (through Connect)",
    send: async (tls) => ({
      ...(await h2(tls, grpc("GetToken", VIA_CONNECT), getTokenRequest({ case: "tenantId", value: tenant() }))),
      token: true,
    }),
  },
  {
    name: "gRPC WatchToken with a deadline (through Connect)",
    send: async (tls) => ({
      ...(await h2(tls, grpc("WatchToken", VIA_CONNECT), watchRequest({ case: "tenantId", value: tenant() }), firstToken)),
      token: true,
    }),
  },
  {
    name: "gRPC-Web GetToken (HTTP/1.1)",
    send: async (tls) => {
      const r = await h1(
        tls,
        `POST /tokenbroker.v1.TokenService/GetToken HTTP/1.1\r\ncontent-type: application/grpc-web+proto\r\nx-grpc-web: 1\r\nauthorization: Bearer ${b.key}`,
        getTokenRequest({ case: "tenantId", value: tenant() }),
      );
      return { headers: r.headers, token: r.status === 200 && r.body.length > 100 };
    },
  },
  {
    name: "Connect unary POST (HTTP/1.1, JSON)",
    send: async (tls) => {
      const r = await h1(
        tls,
        `POST /tokenbroker.v1.TokenService/GetToken HTTP/1.1\r\ncontent-type: application/json\r\nauthorization: Bearer ${b.key}`,
        Buffer.from(JSON.stringify({ tenantId: tenant() })),
      );
      return { headers: r.headers, token: r.status === 200 && r.body.includes('"accessToken"') };
    },
  },
  {
    name: "Connect unary POST (HTTP/2, binary)",
    send: async (tls) => {
      const r = await h2(
        tls,
        { ":method": "POST", ":path": "/tokenbroker.v1.TokenService/GetToken", "content-type": "application/proto", ...auth() },
        Buffer.from(getTokenRequest({ case: "tenantId", value: tenant() }).subarray(5)),
      );
      return { headers: r.headers, token: Number(r.headers[":status"]) === 200 };
    },
  },
  {
    name: "Connect GET (GetToken has no side effects)",
    send: async (tls) => {
      const message = encodeURIComponent(JSON.stringify({ tenantId: tenant() }));
      const r = await h1(
        tls,
        `GET /tokenbroker.v1.TokenService/GetToken?connect=v1&encoding=json&message=${message} HTTP/1.1\r\nauthorization: Bearer ${b.key}`,
      );
      return { headers: r.headers, token: r.status === 200 && r.body.includes('"accessToken"') };
    },
  },
  {
    name: "Connect streaming WatchToken (HTTP/2, JSON)",
    send: async (tls) => {
      const r = await h2(
        tls,
        { ":method": "POST", ":path": "/tokenbroker.v1.TokenService/WatchToken", "content-type": "application/connect+json", ...auth() },
        connectEnvelope(),
        (body) => body.includes('"accessToken"'),
      );
      return { headers: r.headers, token: r.body.toString().includes('"accessToken"') };
    },
  },
];

describe.each([
  { transport: "cleartext", tls: false },
  { transport: "TLS", tls: true },
])("over $transport", ({ tls }) => {
  it.each(TOKEN_RESPONSES)(`$name: Cache-Control: no-store${tls ? ", HSTS" : ", no HSTS"}`, async ({ send }) => {
    const { headers, token } = await send(tls);
    expect(token).toBe(true);
    expect(headers["cache-control"]).toBe("no-store");
    expect(headers["strict-transport-security"]).toBe(tls ? HSTS : undefined);
  });

  it(`pages, probes, errors and refusals carry HSTS${tls ? "" : " only over TLS"}`, async () => {
    const answers = [
      await h1(tls, "GET /healthz HTTP/1.1"),
      await h1(tls, "GET / HTTP/1.1\r\naccept: text/html"), // the sign-in page
      await h1(tls, `GET / HTTP/1.1\r\nauthorization: Bearer ${b.adminKey}`), // the status page
      await h1(tls, "GET /nowhere HTTP/1.1"),
      await h1(tls, "GET // HTTP/1.1"),
      await h1(tls, "POST /tokenbroker.v1.TokenService/GetToken HTTP/1.1\r\ncontent-type: application/json", Buffer.from("{}")), // no key
    ];
    expect(answers.map((a) => a.status)).toEqual([200, 401, 200, 404, 400, 401]);
    for (const [i, a] of answers.entries()) {
      expect(a.headers["strict-transport-security"], `answer ${i}`).toBe(tls ? HSTS : undefined);
      expect(a.headers["cache-control"], `answer ${i}`).toBe("no-store");
    }
    const h2Page = await h2(tls, { ":path": "/readyz" });
    expect(h2Page.headers["strict-transport-security"]).toBe(tls ? HSTS : undefined);
    const refused = await h2(
      tls,
      grpc("GetToken", { authorization: "Bearer tbk_wrong" }),
      getTokenRequest({ case: "tenantId", value: tenant() }),
    );
    expect(refused.headers["grpc-status"]).toBe("16");
    expect(refused.headers["strict-transport-security"]).toBe(tls ? HSTS : undefined);
  });
});
