import * as http from "node:http";
import * as http2 from "node:http2";
import * as net from "node:net";
import type * as tls from "node:tls";
import { ConnectionGuard, type GuardCounts } from "./connection-guard.js";
import { connectionLimits, type ConnectionLimits } from "./connection-limits.js";
import { guardRequests, type RequestFailure } from "./request-guard.js";

/** The first bytes of every HTTP/2 connection (RFC 9113 §3.4). */
const H2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** A request handler that works for both HTTP/1.1 and HTTP/2 requests. */
export type DualHandler = (
  req: http.IncomingMessage | http2.Http2ServerRequest,
  res: http.ServerResponse | http2.Http2ServerResponse,
) => void;

/** Certificates for {@link OnePortOptions.tls} (PEM). */
export interface OnePortTls {
  /** The server's certificate chain. */
  cert: string | Buffer;
  /** The server's private key. */
  key: string | Buffer;
  /** When set, clients must present a certificate signed by one of these CAs (mutual TLS). */
  clientCa?: string | Buffer;
}

/** Options for {@link listenOnePort}. */
export interface OnePortOptions {
  host: string;
  port: number;
  handler: DualHandler;
  /** Serve HTTP/2 and HTTP/1.1 over TLS (chosen by ALPN) instead of cleartext. */
  tls?: OnePortTls;
  /**
   * Sees every HTTP/2 stream first, before Node's compatibility layer makes
   * request and response objects of it: a stream it takes (returns true) is
   * its own to answer and never reaches `handler`.
   */
  streamHandler?: (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => boolean;
  /** Streams, request bytes, timeouts and connections per address of each client (defaults: `DEFAULT_CONNECTION_LIMITS`). */
  limits?: Partial<ConnectionLimits>;
  /** Hears of every connection or stream a limit refused or closed (see `limitLog`). */
  onLimit?: (kind: keyof GuardCounts, address: string | undefined) => void;
  /**
   * Told once of each request (or HTTP/2 stream) whose handler threw or
   * rejected: that request alone fails (500, or an INTERNAL gRPC status),
   * never the process. Default: ignored.
   */
  onRequestFailure?: RequestFailure;
  /** Headers every response of `handler` carries (refusals included); the stream handler adds its own. */
  responseHeaders?: http.OutgoingHttpHeaders;
}

/** A listening server; see {@link listenOnePort}. */
export interface OnePortServer {
  /** The bound address (the real port when 0 was asked for). */
  readonly host: string;
  readonly port: number;
  /** Stops accepting connections. */
  stopAccepting(): void;
  /** Asks every connection to finish its requests and close (HTTP/2 GOAWAY, HTTP/1.1 close when idle). */
  closeGracefully(): void;
  /** Destroys every connection still open. */
  destroyAll(): void;
  /** Resolves when no connection is open. */
  idle(): Promise<void>;
  /** What the connection limits refused or closed so far. */
  readonly limitCounts: Readonly<GuardCounts>;
}

/**
 * Serves HTTP/2 cleartext (gRPC, Connect, gRPC-Web) and HTTP/1.1 (Connect,
 * gRPC-Web, plain GET) on one port. Node's HTTP/2 server falls back to
 * HTTP/1.1 only through TLS ALPN, so each cleartext connection is routed by
 * its first bytes: the HTTP/2 preface goes to the HTTP/2 server, anything
 * else to the HTTP/1.1 server. With `tls`, one HTTP/2 secure server with
 * `allowHTTP1` serves both, chosen by ALPN during the TLS handshake.
 */
export async function listenOnePort(options: OnePortOptions): Promise<OnePortServer> {
  const guard = new ConnectionGuard(connectionLimits(options.limits), options.onLimit);
  const onFailure = options.onRequestFailure ?? (() => {});
  // Every request goes through the safety net: a bad target is answered 400, a failing handler fails its request.
  const handler = guardRequests(options.handler, onFailure, options.responseHeaders);
  const h1 = http.createServer(handler);
  // Node's timers of a server never start on sockets handed over by hand: the guard's replace them, and
  // spare connections with an authenticated WatchToken stream, which stay open for hours.
  h1.requestTimeout = 0;
  h1.timeout = 0;
  h1.keepAliveTimeout = 0;
  // A socket's timeout is the guard's to act on: with no listener here, Node would destroy the socket.
  h1.on("timeout", () => {});
  const h2Settings = { settings: { maxConcurrentStreams: guard.limits.maxConcurrentStreams } };
  const h2 = http2.createServer(h2Settings, handler);
  h2.setTimeout(0);
  containStreams(h2, options.streamHandler, onFailure, guard);
  const sockets = new Set<net.Socket>();
  // HTTP/1.1 connections handed over by hand are not tracked by http.Server
  // (closeIdleConnections sees none), so count their requests in flight here.
  const h1Sockets = new Set<net.Socket>();
  const h1InFlight = new Map<net.Socket, number>();
  let draining = false;
  h1.on("connection", (socket: net.Socket) => {
    guard.h1Socket(socket);
    h1Sockets.add(socket);
    socket.on("close", () => {
      h1Sockets.delete(socket);
      h1InFlight.delete(socket);
    });
  });
  const onH1Request = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const socket = req.socket;
    h1InFlight.set(socket, (h1InFlight.get(socket) ?? 0) + 1);
    if (draining) res.setHeader("connection", "close");
    res.on("close", () => {
      const left = (h1InFlight.get(socket) ?? 1) - 1;
      h1InFlight.set(socket, left);
      if (draining && left === 0) socket.destroySoon();
    });
    guard.h1Request(req, res, () => h1InFlight.get(socket) ?? 0);
  };
  h1.on("request", onH1Request);
  const sessions = new Set<http2.ServerHttp2Session>();
  const onSession = (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    guard.session(session);
    session.on("close", () => sessions.delete(session));
  };
  h2.on("session", onSession);
  const secure = options.tls && createSecure(options.tls, handler, h2Settings);
  if (secure) {
    containStreams(secure, options.streamHandler, onFailure, guard);
    secure.on("session", onSession);
    // HTTP/1.1 over TLS (no "h2" in ALPN): tracked like the cleartext ones.
    secure.on("secureConnection", (socket: tls.TLSSocket) => {
      if (socket.alpnProtocol === "h2") return;
      guard.h1Socket(socket);
      h1Sockets.add(socket);
      socket.on("close", () => {
        h1Sockets.delete(socket);
        h1InFlight.delete(socket);
      });
    });
    secure.on("request", (req: http.IncomingMessage | http2.Http2ServerRequest, res: http.ServerResponse | http2.Http2ServerResponse) => {
      if (req.httpVersionMajor === 1) onH1Request(req as http.IncomingMessage, res as http.ServerResponse);
    });
    // A failed handshake (no or untrusted client certificate, not TLS at all) only ends that connection.
    secure.on("tlsClientError", (_e, socket) => socket.destroy());
  }
  const waiters: Array<() => void> = [];

  // noDelay: as Node's own HTTP servers set it. A response written in two pieces (headers, then body) must not
  // wait for the client's delayed ACK (Nagle): that added up to 40 ms to calls that take 0.3.
  const tcp = net.createServer({ noDelay: true }, (socket) => {
    if (!guard.accept(socket)) return;
    sockets.add(socket);
    socket.on("close", () => {
      sockets.delete(socket);
      if (sockets.size === 0) for (const w of waiters.splice(0)) w();
    });
    socket.on("error", () => socket.destroy());
    if (secure) secure.emit("connection", socket);
    else route(socket, h1, h2);
  });

  await new Promise<void>((resolve, reject) => {
    tcp.once("error", reject);
    tcp.listen(options.port, options.host, () => {
      tcp.off("error", reject);
      resolve();
    });
  });
  const address = tcp.address() as net.AddressInfo;
  // An accept that fails (out of file descriptors) is emitted as the server's 'error': without a listener it
  // would end the process. That connection alone is lost; reported at most every 10 s.
  let acceptFailedAt = -Infinity;
  tcp.on("error", (e) => {
    if (performance.now() - acceptFailedAt < 10_000) return;
    acceptFailedAt = performance.now();
    onFailure(e, { method: undefined, path: "(accept)" });
  });

  return {
    host: address.address,
    port: address.port,
    stopAccepting: () => tcp.close(),
    closeGracefully() {
      draining = true;
      for (const session of sessions) session.close();
      // Idle HTTP/1.1 connections close now; busy ones after their response.
      for (const socket of h1Sockets) if (!h1InFlight.get(socket)) socket.destroySoon();
    },
    destroyAll() {
      for (const socket of sockets) socket.destroy();
    },
    idle() {
      if (sockets.size === 0) return Promise.resolve();
      return new Promise((resolve) => waiters.push(resolve));
    },
    limitCounts: guard.counts,
  };
}

/**
 * Puts `take` (if any) in front of the server's own "stream" listener (Node's
 * compatibility layer, added with the request handler): streams it takes go
 * no further, the others reach the request handler as before; a stream
 * destroyed before its turn goes nowhere. A listener
 * that throws fails that stream alone (reset with INTERNAL_ERROR, reported
 * to `onFailure`): an exception thrown here would otherwise end the process.
 */
function containStreams(
  server: http2.Http2Server | http2.Http2SecureServer,
  take: OnePortOptions["streamHandler"],
  onFailure: RequestFailure,
  guard: ConnectionGuard,
): void {
  const others = server.listeners("stream") as Array<(...args: unknown[]) => void>;
  if (others.length === 0) throw new Error("HTTP/2 server has no request handler to put the stream handler in front of");
  server.removeAllListeners("stream");
  server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, ...rest: unknown[]) => {
    // Whoever takes the stream, an error on it (a reset, or its session failing on a bad frame) must not reach
    // the process as an unhandled 'error' event; the stream's 'close' tells its handler.
    stream.on("error", ignoreStreamError);
    // Gone already (reset, or its session failed, in the same read as its HEADERS): nothing to answer, and
    // Node's compatibility layer would throw answering `expect: 100-continue` on it.
    if (stream.destroyed) return;
    try {
      guard.stream(stream); // its connection's header wait ends; its bytes are counted
      if (take?.(stream, headers)) return;
      for (const listener of others) listener.call(server, stream, headers, ...rest);
    } catch (e) {
      try {
        onFailure(e, { method: String(headers[":method"]), path: String(headers[":path"]).slice(0, 200) });
      } catch {
        // a failing logger must not fail the stream twice
      }
      stream.on("error", () => {});
      if (!stream.destroyed) stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    }
  });
}

/** Shared by every stream (see `containStreams`): the error is also seen as the stream's close. */
function ignoreStreamError(): void {}

/** Reads just enough of a new connection to tell HTTP/2 from HTTP/1.1, then hands it over. */
function route(socket: net.Socket, h1: http.Server, h2: http2.Http2Server): void {
  let head = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    head = Buffer.concat([head, chunk]);
    const n = Math.min(head.length, H2_PREFACE.length);
    const isH2Prefix = head.subarray(0, n).equals(H2_PREFACE.subarray(0, n));
    if (isH2Prefix && head.length < H2_PREFACE.length) return; // need more bytes to decide
    socket.off("data", onData);
    socket.pause();
    socket.unshift(head);
    if (isH2Prefix) {
      h2.emit("connection", socket);
    } else {
      h1.emit("connection", socket);
      socket.resume();
    }
  };
  socket.on("data", onData);
}

/** The HTTP/2 server over TLS that also speaks HTTP/1.1 (ALPN), for {@link listenOnePort}. */
function createSecure(options: OnePortTls, handler: DualHandler, h2Settings: http2.ServerOptions): http2.Http2SecureServer {
  const secure = http2.createSecureServer(
    {
      ...h2Settings,
      cert: options.cert,
      key: options.key,
      allowHTTP1: true,
      minVersion: "TLSv1.2",
      ...(options.clientCa === undefined ? {} : { ca: options.clientCa, requestCert: true, rejectUnauthorized: true }),
    },
    handler,
  );
  // As for cleartext: the guard's timers replace Node's (an idle WatchToken stream stays open).
  secure.setTimeout(0);
  Object.assign(secure, { requestTimeout: 0, headersTimeout: 60_000, keepAliveTimeout: 0 });
  secure.on("timeout", () => {});
  return secure;
}
