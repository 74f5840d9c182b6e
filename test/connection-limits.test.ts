/**
 * Bounded resources per client (issue 12, item 3): HTTP/2 streams per
 * connection, request bytes held per connection, a header timeout and an
 * idle timeout on every socket (an authenticated WatchToken stream keeps its
 * connection), a time limit on each request's body, and a cap on connections per client address.
 */
import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import * as tls from "node:tls";
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import type { ConnectionLimits } from "../src/server/connection-limits.js";
import type { Logger } from "../src/logger.js";
import { tempDir } from "./helpers/broker-fixture.js";
import { captureLog } from "./helpers/log-capture.js";
import { grpcHeaders, rawCall, statusOf, unary, getTokenRequest, watchRequest } from "./helpers/raw-grpc.js";
import { eventually } from "./helpers/stream-reader.js";
import { startSecureBroker, type SecureBrokerFixture } from "./helpers/secure-broker.js";
import { makeTestCertificates, opensslMissing, type TestCertificates } from "./helpers/test-certificates.js";

let f: SecureBrokerFixture | undefined;
const opened: Array<{ destroy(): void }> = [];
afterEach(async () => {
  for (const o of opened.splice(0)) o.destroy();
  await f?.close();
  f = undefined;
});

async function broker(
  limits: Partial<ConnectionLimits> = {},
  extra: { tls?: TestCertificates; logger?: Logger } = {},
): Promise<SecureBrokerFixture> {
  f = await startSecureBroker({
    server: {
      shutdownGraceMs: 500,
      limits,
      ...(extra.logger ? { logger: extra.logger } : {}),
      ...(extra.tls ? { tls: { cert: extra.tls.serverCert, key: extra.tls.serverKey } } : {}),
    },
  });
  return f;
}

function h2(url: string, options: http2.SecureClientSessionOptions = {}): Promise<http2.ClientHttp2Session> {
  const session = http2.connect(url, options);
  opened.push(session);
  session.on("error", () => {});
  return new Promise((resolve, reject) => {
    session.once("remoteSettings", () => resolve(session));
    session.once("error", reject);
  });
}

/** A raw TCP socket to the broker; resolves once connected. */
function socketTo(port: number, localAddress?: string): Promise<net.Socket> {
  const socket = net.connect({ port, host: "127.0.0.1", ...(localAddress ? { localAddress } : {}) });
  opened.push(socket);
  socket.on("error", () => {});
  return new Promise((resolve, reject) => {
    socket.once("connect", () => resolve(socket));
    socket.once("error", reject);
  });
}

/** Resolves with the ms until `socket` closes, or rejects after `timeoutMs`. */
function closedWithin(socket: net.Socket, timeoutMs: number): Promise<number> {
  const started = performance.now();
  return new Promise((resolve, reject) => {
    if (socket.destroyed) return resolve(0);
    const timer = setTimeout(() => reject(new Error(`socket still open after ${timeoutMs} ms`)), timeoutMs);
    socket.once("close", () => {
      clearTimeout(timer);
      resolve(performance.now() - started);
    });
    socket.resume();
  });
}

/** What became of the streams of a flood: answered with a gRPC status, reset (by RST code), or still open. */
interface FloodOutcome {
  statuses: Map<number, number>;
  resets: Map<number, number>;
  /** Streams that ended because the server closed the whole connection (GOAWAY), not with a status or reset of their own. */
  closedWithConnection: number;
  open: number;
}

/**
 * Opens `n` streams on `session` to `path`, each sending `bodyBytes` of an
 * unfinished body (never ended); waits until every stream was answered or
 * reset, or `waitMs` passed.
 */
async function flood(
  session: http2.ClientHttp2Session,
  n: number,
  headers: http2.OutgoingHttpHeaders,
  bodyBytes: number,
  waitMs: number,
): Promise<FloodOutcome> {
  const body = Buffer.alloc(bodyBytes, 1);
  body[0] = 0;
  body.writeUInt32BE(bodyBytes * 2, 1); // declares more than is sent: the body never completes
  const outcome: FloodOutcome = { statuses: new Map(), resets: new Map(), closedWithConnection: 0, open: n };
  // Node 24's server ends a connection that keeps it resetting streams with GOAWAY; the streams it had not
  // answered yet then close with the session's error code, not a reset of their own.
  let goaway = false;
  session.once("goaway", () => (goaway = true));
  session.on("error", () => {});
  const bump = (m: Map<number, number>, k: number) => m.set(k, (m.get(k) ?? 0) + 1);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, waitMs);
    for (let i = 0; i < n; i++) {
      const stream = session.request(headers, { endStream: false });
      let settled = false;
      const settle = (record: () => void) => {
        if (settled) return;
        settled = true;
        record();
        if (--outcome.open === 0) {
          clearTimeout(timer);
          resolve();
        }
        if (!stream.closed) stream.close(http2.constants.NGHTTP2_CANCEL);
      };
      stream.on("error", () => {});
      stream.on("response", (h) => {
        if (h["grpc-status"] !== undefined) settle(() => bump(outcome.statuses, Number(h["grpc-status"])));
      });
      stream.on("trailers", (t) => settle(() => bump(outcome.statuses, Number(t["grpc-status"]))));
      stream.on("close", () =>
        settle(() => {
          if (goaway && stream.rstCode === http2.constants.NGHTTP2_INTERNAL_ERROR) outcome.closedWithConnection++;
          else bump(outcome.resets, stream.rstCode ?? -1);
        }),
      );
      stream.write(body);
    }
  });
  return outcome;
}

describe("HTTP/2 streams and buffered request bytes", () => {
  it("advertises the configured SETTINGS_MAX_CONCURRENT_STREAMS (default 1,000)", async () => {
    const b = await broker();
    expect((await h2(b.server.url)).remoteSettings.maxConcurrentStreams).toBe(1000);
    await b.close();
    f = undefined;
    const c = await broker({ maxConcurrentStreams: 50 });
    expect((await h2(c.server.url)).remoteSettings.maxConcurrentStreams).toBe(50);
  });

  it("a client that opens more streams than advertised (raw frames) gets GOAWAY and its connection closed", async () => {
    const b = await broker({ maxConcurrentStreams: 50 });
    const frameOf = (type: number, flags: number, id: number, payload: Buffer) => {
      const head = Buffer.alloc(9);
      head.writeUIntBE(payload.length, 0, 3);
      head[3] = type;
      head[4] = flags;
      head.writeUInt32BE(id, 5);
      return Buffer.concat([head, payload]);
    };
    const socket = await socketTo(b.server.port);
    let received = Buffer.alloc(0);
    socket.on("data", (d: Buffer) => (received = Buffer.concat([received, d])));
    socket.write(Buffer.concat([Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), frameOf(4, 0, 0, Buffer.alloc(0))]));
    await eventually(() => received.length >= 9, 3000, "the server's SETTINGS");
    socket.write(frameOf(4, 1, 0, Buffer.alloc(0))); // SETTINGS ACK: the limit is in force
    // HEADERS frames (END_HEADERS, a body to follow), HPACK-encoded :method POST, :scheme http, :path /, :authority x.
    const block = Buffer.from([0x83, 0x86, 0x84, 0x41, 0x01, 0x78]);
    for (let i = 0; i < 51; i++) socket.write(frameOf(1, 4, 1 + 2 * i, block));
    await closedWithin(socket, 5000);
    const goaways: number[] = [];
    for (let at = 0; at + 9 <= received.length; at += 9 + received.readUIntBE(at, 3)) {
      if (received[at + 3] === 7) goaways.push(received.readUInt32BE(at + 9) & 0x7fffffff); // last stream id
    }
    expect(goaways).toEqual([99]); // the 50th stream was the last one taken; the 51st (101) was not
  });

  it("an unauthenticated flood of streams with unfinished bodies is refused at once, and memory stays bounded", async () => {
    const b = await broker();
    const session = await h2(b.server.url);
    const rssBefore = process.memoryUsage().rss;
    // 2,000 streams × 64 KB declared: 128 MB if the bodies were kept.
    const outcome = await flood(session, 2000, grpcHeaders("GetToken"), 64 * 1024, 20_000);
    const grown = (process.memoryUsage().rss - rssBefore) / 1024 / 1024;
    console.log(
      `flood: statuses ${[...outcome.statuses]}, resets ${[...outcome.resets]}, closed with the connection ${outcome.closedWithConnection}, open ${outcome.open}, RSS +${grown.toFixed(0)} MB`,
    );
    expect(outcome.open).toBe(0);
    // Every stream refused: UNAUTHENTICATED (16), or reset for holding too many bytes (ENHANCE_YOUR_CALM: by the
    // connection's byte cap, or by Node when the bodies waiting on one connection pass its session memory, 10 MB),
    // or ended with the whole connection when the server closed it (Node 24, after a thousand such resets).
    const refused =
      (outcome.statuses.get(16) ?? 0) + (outcome.resets.get(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM) ?? 0) + outcome.closedWithConnection;
    expect(refused).toBe(2000);
    expect(grown).toBeLessThan(64);
    // Others are still served.
    const key = b.createKey("ok", "*");
    const other = await h2(b.server.url);
    const { status } = await unary(other, "GetToken", getTokenRequest({ case: "tenantId", value: b.tenantId }), {
      authorization: `Bearer ${key}`,
    });
    expect(status.code).toBe(0);
  }, 40_000);

  it("streams over the connection's byte cap are reset with ENHANCE_YOUR_CALM (an open path: health)", async () => {
    const b = await broker({ maxBufferedBytes: 256 * 1024 });
    const session = await h2(b.server.url);
    const headers = { ":method": "POST", ":path": "/grpc.health.v1.Health/Check", "content-type": "application/grpc", te: "trailers" };
    const outcome = await flood(session, 100, headers, 32 * 1024, 3000);
    // 256 KB hold 8 bodies of 32 KB at most (still open, waiting for the rest); the others are reset.
    expect(outcome.open).toBeLessThanOrEqual(8);
    expect(outcome.resets.get(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM) ?? 0).toBeGreaterThanOrEqual(92);
    // The connection still serves a finished request.
    const ok = await new Promise<number>((resolve) => {
      const s = session.request({ ":path": "/healthz" });
      s.on("response", (h) => resolve(Number(h[":status"])));
      s.on("error", () => resolve(-1));
      s.resume();
    });
    expect(ok).toBe(200);
  }, 30_000);
});

describe("the key is checked before the body is read", () => {
  const big = 10 * 1024 * 1024;

  it("gRPC (fast path and Connect path): UNAUTHENTICATED with no body sent", async () => {
    const b = await broker();
    const session = await h2(b.server.url);
    for (const extra of [{}, { "grpc-timeout": "60S" }]) {
      const stream = session.request({ ...grpcHeaders("GetToken"), ...extra }, { endStream: false });
      stream.on("error", () => {});
      // Only the envelope's prefix, declaring 10 MB: the body itself is never sent.
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(big, 1);
      stream.write(prefix);
      const status = await new Promise<http2.IncomingHttpHeaders>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no answer before the body")), 5000);
        const answered = (h: http2.IncomingHttpHeaders) => {
          clearTimeout(timer);
          resolve(h);
        };
        stream.on("response", (h) => {
          if (h["grpc-status"] !== undefined) answered(h);
        });
        stream.on("trailers", answered);
      });
      expect(statusOf(status).code).toBe(16);
      stream.close();
    }
  });

  it("Connect JSON and gRPC-Web over HTTP/1.1: 401 / UNAUTHENTICATED before the body ends", async () => {
    const b = await broker();
    const url = new URL(b.server.url);
    const cases = [
      { type: "application/json", check: (res: http.IncomingMessage) => expect(res.statusCode).toBe(401) },
      { type: "application/grpc-web+proto", check: (res: http.IncomingMessage) => expect(res.statusCode).toBe(200) },
      { type: "application/connect+json", check: (res: http.IncomingMessage) => expect(res.statusCode).toBe(200) },
    ];
    for (const c of cases) {
      const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
        const req = http.request({
          host: url.hostname,
          port: url.port,
          method: "POST",
          path: "/tokenbroker.v1.TokenService/GetToken",
          // Chunked, of no declared length: the first kilobyte of a body that never ends.
          headers: { "content-type": c.type, "connect-protocol-version": "1" },
        });
        const timer = setTimeout(() => reject(new Error(`${c.type}: no answer before the body`)), 5000);
        req.on("response", (r) => {
          clearTimeout(timer);
          resolve(r);
        });
        req.on("error", () => {});
        req.write(Buffer.alloc(1024, 32));
      });
      c.check(res);
      const body = await new Promise<string>((resolve) => {
        let text = "";
        res.on("data", (d: Buffer) => (text += d.toString("latin1")));
        res.on("end", () => resolve(text));
        res.on("close", () => resolve(text));
      });
      // gRPC-Web: the status in the trailers frame; Connect: the error's code in JSON.
      expect(body).toMatch(c.type === "application/grpc-web+proto" ? /grpc-status: ?16/ : /unauthenticated/);
      res.socket.destroy();
    }
  });
});

describe("header and idle timeouts", () => {
  it("closes silent sockets and half-sent headers after the header timeout (HTTP/1.1, h2c)", async () => {
    const b = await broker({ headersTimeoutMs: 300 });
    const silent = await socketTo(b.server.port);
    const halfH1 = await socketTo(b.server.port);
    halfH1.write("GET /healthz HTTP/1.1\r\nHost: x\r\n");
    const halfPreface = await socketTo(b.server.port);
    halfPreface.write("PRI * HTTP/2.0\r\n");
    const prefaceOnly = await socketTo(b.server.port);
    prefaceOnly.write("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    const closed = await Promise.all([silent, halfH1, halfPreface, prefaceOnly].map((s) => closedWithin(s, 5000)));
    for (const ms of closed) expect(ms).toBeGreaterThanOrEqual(200);
  });

  it.skipIf(opensslMissing())("closes a silent TLS socket after the header timeout, and an idle one after the idle timeout", async () => {
    const dir = tempDir();
    try {
      const certs = makeTestCertificates(dir.path);
      const b = await broker({ headersTimeoutMs: 300, idleTimeoutMs: 600 }, { tls: certs });
      const silent = await socketTo(b.server.port);
      expect(await closedWithin(silent, 5000)).toBeGreaterThanOrEqual(200);
      const handshaken = tls.connect({
        port: b.server.port,
        host: "127.0.0.1",
        ca: certs.ca,
        servername: "localhost",
        ALPNProtocols: ["http/1.1"],
      });
      opened.push(handshaken);
      handshaken.on("error", () => {});
      await new Promise((r) => handshaken.once("secureConnect", r));
      expect(await closedWithin(handshaken as unknown as net.Socket, 5000)).toBeGreaterThanOrEqual(100);
      // HTTP/2 over TLS: a request, then nothing.
      const session = await h2(b.server.url, { ca: certs.ca, servername: "localhost" });
      const status = await new Promise<number>((resolve) => {
        const s = session.request({ ":path": "/healthz" });
        s.on("response", (h) => resolve(Number(h[":status"])));
        s.resume();
      });
      expect(status).toBe(200);
      const started = performance.now();
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("TLS h2 session still open")), 5000);
        session.once("close", () => {
          clearTimeout(timer);
          resolve();
        });
      });
      expect(performance.now() - started).toBeGreaterThanOrEqual(400);
    } finally {
      dir.cleanup();
    }
  });

  it("closes idle HTTP/1.1 and HTTP/2 connections after the idle timeout", async () => {
    const b = await broker({ idleTimeoutMs: 500 });
    const socket = await socketTo(b.server.port);
    socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    await new Promise((r) => socket.once("data", r));
    expect(await closedWithin(socket, 5000)).toBeGreaterThanOrEqual(300);
    const session = await h2(b.server.url);
    const key = b.createKey("idle", "*");
    expect(
      (await unary(session, "GetToken", getTokenRequest({ case: "tenantId", value: b.tenantId }), { authorization: `Bearer ${key}` }))
        .status.code,
    ).toBe(0);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("h2 session still open")), 5000);
      session.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
    });
    // An open stream that is not an authenticated WatchToken (here gRPC health's Watch, open to all) keeps nothing.
    const watcher = await h2(b.server.url);
    const health = watcher.request({
      ":method": "POST",
      ":path": "/grpc.health.v1.Health/Watch",
      "content-type": "application/grpc",
      te: "trailers",
    });
    health.on("error", () => {});
    health.end(Buffer.from([0, 0, 0, 0, 0]));
    const firstStatus = new Promise((resolve) => health.once("data", resolve));
    await firstStatus;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("session with a health Watch still open")), 5000);
      watcher.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  });

  it("drops a request whose body trickles past the request timeout on an open path (HTTP/1.1, h2c), and says so once in the log", async () => {
    const log = captureLog();
    const b = await broker({ requestTimeoutMs: 600, idleTimeoutMs: 60_000 }, { logger: log.logger });
    const dribbling: NodeJS.Timeout[] = [];
    try {
      // HTTP/1.1: gRPC-Web health Check announcing 1,000 bytes, one byte every 100 ms (each resets any idle timer).
      const socket = await socketTo(b.server.port);
      socket.write(
        "POST /grpc.health.v1.Health/Check HTTP/1.1\r\nHost: x\r\ncontent-type: application/grpc-web+proto\r\ncontent-length: 1000\r\n\r\n",
      );
      dribbling.push(setInterval(() => socket.writable && socket.write("\0"), 100));
      const h1Closed = closedWithin(socket, 5000);
      // h2c: a gRPC health Check stream that never ends its request.
      const session = await h2(b.server.url);
      const stream = session.request({
        ":method": "POST",
        ":path": "/grpc.health.v1.Health/Check",
        "content-type": "application/grpc",
        te: "trailers",
      });
      stream.on("error", () => {});
      stream.resume();
      dribbling.push(setInterval(() => stream.writable && stream.write(Buffer.from([0])), 100));
      const started = performance.now();
      const rstCode = await new Promise<number>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("trickling h2 stream still open")), 5000);
        stream.once("close", () => {
          clearTimeout(timer);
          resolve(stream.rstCode);
        });
      });
      expect(rstCode).toBe(http2.constants.NGHTTP2_CANCEL);
      expect(performance.now() - started).toBeGreaterThanOrEqual(400);
      expect(await h1Closed).toBeGreaterThanOrEqual(400);
      // The connection itself stays usable on HTTP/2: only the stream was dropped.
      const ok = await new Promise<number>((resolve) => {
        const s = session.request({ ":path": "/healthz" });
        s.on("response", (h) => resolve(Number(h[":status"])));
        s.resume();
      });
      expect(ok).toBe(200);
      const warnings = log.records().filter((r) => r["event"] === "limit" && r["limit"] === "requestTimeouts");
      expect(warnings).toHaveLength(1);
      expect(String(warnings[0]!["msg"])).toContain("--request-timeout");
    } finally {
      for (const t of dribbling) clearInterval(t);
    }
  });

  it("an authenticated WatchToken stream keeps its connection past both timeouts (fast path, Connect, gRPC-Web)", async () => {
    const b = await broker({ headersTimeoutMs: 200, idleTimeoutMs: 300 });
    const key = b.createKey("watcher", "*");
    const selector = { case: "tenantId" as const, value: b.tenantId };
    // One connection per path, so that each path's stream must hold its own.
    const session = await h2(b.server.url);
    const connectSession = await h2(b.server.url);
    const fast = rawCall(session, "WatchToken", watchRequest(selector), { authorization: `Bearer ${key}` });
    const viaConnect = rawCall(connectSession, "WatchToken", watchRequest(selector), {
      authorization: `Bearer ${key}`,
      "grpc-timeout": "3600S",
    });
    const webClosed = { value: false };
    const url = new URL(b.server.url);
    const web = http.request({
      host: url.hostname,
      port: url.port,
      method: "POST",
      path: "/tokenbroker.v1.TokenService/WatchToken",
      headers: { "content-type": "application/grpc-web+proto", authorization: `Bearer ${key}` },
    });
    web.on("response", (res) => {
      res.resume();
      res.on("close", () => (webClosed.value = true));
    });
    web.on("error", () => (webClosed.value = true));
    web.end(watchRequest(selector));
    await eventually(() => fast.frames.length === 1 && viaConnect.frames.length === 1, 5000, "first tokens");
    await delay(1500);
    expect(session.closed || session.destroyed).toBe(false);
    expect(connectSession.closed || connectSession.destroyed).toBe(false);
    expect(webClosed.value).toBe(false);
    // Still delivering: a refresh reaches both streams.
    await b.expireToken();
    await b.server.broker.getToken({ tenantId: b.tenantId });
    await eventually(() => fast.frames.length === 2 && viaConnect.frames.length === 2, 5000, "second tokens");
    web.destroy();
  });
});

describe("connections per client address", () => {
  it("refuses the N+1th connection from one address while another address still connects, and says so in the log", async () => {
    const log = captureLog();
    const b = await broker({ maxConnectionsPerAddress: 3 }, { logger: log.logger });
    const ask = (socket: net.Socket) =>
      new Promise<string>((resolve) => {
        let text = "";
        socket.on("data", (d: Buffer) => {
          text += d.toString();
          if (text.includes("\r\n\r\n")) resolve(text.split("\r\n")[0]!);
        });
        socket.on("close", () => resolve(text ? text.split("\r\n")[0]! : "closed"));
        socket.write("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
      });
    const first = await Promise.all([0, 1, 2].map(() => socketTo(b.server.port)));
    for (const s of first) expect(await ask(s)).toMatch(/200/);
    const fourth = await socketTo(b.server.port);
    expect(await ask(fourth)).toBe("closed");
    expect(await ask(await socketTo(b.server.port))).toBe("closed");
    // One warning for both (at most one a minute), naming the address.
    const warnings = log.records().filter((r) => r["event"] === "limit");
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 40, limit: "refusedConnections", address: "127.0.0.1" });
    expect(String(warnings[0]!["msg"])).toContain("--max-connections-per-address");
    const elsewhere = await socketTo(b.server.port, "127.0.0.2");
    expect(await ask(elsewhere)).toMatch(/200/);
    // One closes: a new one from the first address is served again.
    first[0]!.destroy();
    await eventually(() => true, 10);
    await delay(100);
    expect(await ask(await socketTo(b.server.port))).toMatch(/200/);
  });
});
