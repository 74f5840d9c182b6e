/**
 * Request targets that `new URL(req.url, base)` cannot parse used to end the
 * broker's process (issue 12): `GET // HTTP/1.1` and its kin, over HTTP/1.1,
 * h2c and TLS. Each is sent as is to a real `tokenbroker serve` (API keys and
 * encryption on); each is answered 400, and the process keeps serving.
 */
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { watchRequest } from "./helpers/raw-grpc.js";
import {
  END_HEADERS,
  END_STREAM,
  exchange,
  FrameType,
  h1Status,
  h2Frame,
  h2Opening,
  h2Request,
  hpackLiterals,
  readFrames,
  type RawTarget,
} from "./helpers/raw-http.js";
import { getStatus, grpcClient, isAlive, startProductionBrokers, type ProductionBrokers } from "./helpers/production-serve.js";
import { withKey } from "./helpers/secure-broker.js";
import { KILLER_TARGETS } from "./helpers/http-corpus.js";

/** How a request is refused: 400, or over HTTP/2 a stream reset PROTOCOL_ERROR (Node refuses a `:path` that is not a path itself). */
const REFUSED = [400, "PROTOCOL_ERROR"];

let b: ProductionBrokers;

beforeAll(async () => {
  b = await startProductionBrokers();
}, 60_000);

afterAll(async () => {
  await b?.close();
});

beforeEach(async () => {
  await b.respawn();
}, 30_000);

type Transport = { name: string; tls: boolean; status(target: RawTarget, path: string): Promise<number | string | undefined> };

const h1: Transport["status"] = async (target, path) =>
  h1Status(
    await exchange(target, "http/1.1", Buffer.from(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`, "latin1")),
  );
const h2: Transport["status"] = async (target, path) => {
  const r = await h2Request(target, { ":method": "GET", ":path": path });
  return r.headers ? Number(r.headers[":status"]) : /NGHTTP2_PROTOCOL_ERROR/.test(r.error ?? "") ? "PROTOCOL_ERROR" : r.error;
};

const TRANSPORTS: Transport[] = [
  { name: "HTTP/1.1", tls: false, status: h1 },
  { name: "h2c", tls: false, status: h2 },
  { name: "HTTP/1.1 over TLS (ALPN http/1.1)", tls: true, status: h1 },
  { name: "HTTP/2 over TLS (ALPN h2)", tls: true, status: h2 },
];

describe("request targets that no URL parser accepts", () => {
  it.each(TRANSPORTS)("over $name: each is refused (400) and the process keeps serving", async ({ tls, status }) => {
    const serve = tls ? b.tls : b.plain;
    const target = { url: serve.url, ca: b.certs.ca };
    for (const path of KILLER_TARGETS) {
      const answer = await status(target, path);
      if (!REFUSED.includes(answer as number | string)) {
        const dead = !(await isAlive(serve));
        expect.fail(
          `${JSON.stringify(path)} was answered ${String(answer)}${dead ? `, and the process exited: ${serve.stderr().slice(-2000)}` : ""}`,
        );
      }
    }
    expect(await isAlive(serve)).toBe(true);
    expect(await getStatus(serve, b.certs.ca, "/healthz")).toBe(200);
    const res = await grpcClient(serve, b.certs.ca).getToken(
      { selector: { case: "tenantId", value: b.grant.tenants[0]!.tenantId } },
      withKey(b.key),
    );
    expect(res.token?.tokenType).toBe("Bearer");
  });
});

describe("hosts that are not hosts, and requests without one", () => {
  const getToken = (host: string | undefined, version = "1.1") => {
    const body = JSON.stringify({ tenantId: b.grant.tenants[0]!.tenantId });
    return Buffer.from(
      `POST /tokenbroker.v1.TokenService/GetToken HTTP/${version}\r\n${host === undefined ? "" : `Host: ${host}\r\n`}` +
        `Authorization: Bearer ${b.key}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
      "latin1",
    );
  };

  it.each(["a b", "[", "a:99999", "@", "a/b", ""])(
    "a GetToken with Host %j is answered 4xx over HTTP/1.1, and the process keeps serving",
    async (host) => {
      const answer = h1Status(await exchange({ url: b.plain.url }, "http/1.1", getToken(host)));
      expect(answer).toBeGreaterThanOrEqual(400);
      expect(answer).toBeLessThan(500);
      expect(await isAlive(b.plain)).toBe(true);
      expect(await getStatus(b.plain, b.certs.ca, "/healthz")).toBe(200);
    },
  );

  it("HTTP/1.0 without Host is served (health checks send none), the RPCs included", async () => {
    const health = await exchange({ url: b.plain.url }, "http/1.1", Buffer.from("GET /healthz HTTP/1.0\r\n\r\n"));
    expect(h1Status(health)).toBe(200);
    const token = await exchange({ url: b.plain.url }, "http/1.1", getToken(undefined, "1.0"));
    expect(h1Status(token)).toBe(200);
    expect(token.toString("latin1")).toMatch(/"accessToken":/);
  });

  it("HTTP/2 with Host instead of :authority is served; without either the stream is reset (PROTOCOL_ERROR)", async () => {
    const body = Buffer.from(JSON.stringify({ tenantId: b.grant.tenants[0]!.tenantId }));
    const rpc = (authority: Array<[string, string]>) =>
      [
        [":method", "POST"],
        [":scheme", "http"],
        [":path", "/tokenbroker.v1.TokenService/GetToken"],
        ...authority,
        ["content-type", "application/json"],
        ["authorization", `Bearer ${b.key}`],
      ] as Array<[string, string]>;
    const frames = readFrames(
      await exchange({ url: b.plain.url }, "h2", [
        h2Opening(),
        h2Frame(FrameType.HEADERS, END_HEADERS, 1, hpackLiterals(rpc([["host", "127.0.0.1"]]))),
        h2Frame(FrameType.DATA, END_STREAM, 1, body),
        h2Frame(FrameType.HEADERS, END_HEADERS, 3, hpackLiterals(rpc([]))),
        h2Frame(FrameType.DATA, END_STREAM, 3, body),
      ]),
    );
    // `:status: 200` is entry 8 of HPACK's static table, which Node sends indexed.
    expect(frames.find((f) => f.type === FrameType.HEADERS && f.streamId === 1)?.payload[0]).toBe(0x80 | 8);
    expect(Buffer.concat(frames.filter((f) => f.type === FrameType.DATA && f.streamId === 1).map((f) => f.payload)).toString()).toMatch(
      /"accessToken":/,
    );
    const reset = frames.find((f) => f.type === FrameType.RST_STREAM && f.streamId === 3);
    expect(reset?.payload.readUInt32BE(0)).toBe(1); // PROTOCOL_ERROR
    expect(await isAlive(b.plain)).toBe(true);
  });
});

describe("deadlines too long for a timer", () => {
  it("gRPC's 99999999H and Connect's 9999999999 ms are cut to 24.8 days, not expired after 1 ms", async () => {
    const tenantId = b.grant.tenants[0]!.tenantId;
    const watch = (timeout: string) =>
      h2Request(
        { url: b.plain.url },
        {
          ":method": "POST",
          ":path": "/tokenbroker.v1.TokenService/WatchToken",
          "content-type": "application/grpc",
          te: "trailers",
          "grpc-timeout": timeout,
          authorization: `Bearer ${b.key}`,
        },
        watchRequest({ case: "tenantId", value: tenantId }),
        1_000,
      );
    for (const timeout of ["99999999H", "500H"]) {
      // The watch is still open when the client leaves a second later, the current token sent.
      const open = await watch(timeout);
      expect(open.error, timeout).toBe("timeout");
      expect(open.body.length).toBeGreaterThan(5);
    }
    const connect = await h2Request(
      { url: b.plain.url },
      {
        ":method": "POST",
        ":path": "/tokenbroker.v1.TokenService/GetToken",
        "content-type": "application/json",
        "connect-timeout-ms": "9999999999",
        authorization: `Bearer ${b.key}`,
      },
      Buffer.from(JSON.stringify({ tenantId })),
    );
    expect(connect.headers?.[":status"]).toBe(200);
    expect(b.plain.stderr()).not.toMatch(/TimeoutOverflowWarning/);
  });
});

describe("an HTTP/2 stream gone before it is handled (found by test/fuzz-http.test.ts)", () => {
  it("`expect: 100-continue` on a stream reset in the same packet neither ends the process nor logs an error", async () => {
    const block = hpackLiterals([
      [":method", "GET"],
      [":scheme", "http"],
      [":path", "/healthz"],
      [":authority", "127.0.0.1"],
      ["expect", "100-continue"],
    ]);
    const rst = Buffer.alloc(4);
    rst.writeUInt32BE(8); // CANCEL
    for (const serve of [b.plain, b.tls]) {
      // One write: Node reads both frames before it hands the stream over, then answers 100 on a destroyed stream.
      await exchange(
        { url: serve.url, ca: b.certs.ca },
        "h2",
        Buffer.concat([h2Opening(), h2Frame(FrameType.HEADERS, END_HEADERS, 1, block), h2Frame(FrameType.RST_STREAM, 0, 1, rst)]),
      );
      expect(await isAlive(serve), serve.stderr().slice(-2000)).toBe(true);
      expect(await getStatus(serve, b.certs.ca, "/healthz")).toBe(200);
      expect(serve.stderr()).not.toMatch(/"level":50/);
    }
  });
});
