import type * as http from "node:http";
import * as http2 from "node:http2";
import type * as net from "node:net";
import type { ConnectionLimits } from "./connection-limits.js";
import { isHeld } from "./held-connections.js";

/** What the guard keeps on each accepted socket (and finds again from a TLS socket or an HTTP/2 session). */
interface SocketState {
  /** Closes the connection unless a request's headers come first: the header timeout, then the wait for the next HTTP/1.1 request. */
  waitTimer: NodeJS.Timeout | undefined;
  readonly socket: net.Socket;
}

const STATE = Symbol("tokenbroker.connectionGuard");
type Guarded = { [STATE]?: SocketState; _parent?: Guarded };

/** Counters of what the guard refused or closed (for logs and the bench). */
export interface GuardCounts {
  /** Connections closed at once: over the per-address cap. */
  refusedConnections: number;
  /** Connections closed by the header timeout. */
  headerTimeouts: number;
  /** Connections closed by the idle timeout (HTTP/1.1 and HTTP/2). */
  idleTimeouts: number;
  /** HTTP/2 streams reset with ENHANCE_YOUR_CALM: their connection held too many request bytes. */
  resetStreams: number;
  /** Requests dropped by the request timeout: their body had not wholly arrived in time. */
  requestTimeouts: number;
}

/**
 * Applies {@link ConnectionLimits} to the sockets of `listenOnePort`: the
 * per-address cap and the header timeout from the moment a socket is
 * accepted (before its first byte tells HTTP/1.1 from HTTP/2), then the idle
 * timeout, the time a request's body may take to arrive and, on HTTP/2, the
 * request bytes each connection may hold.
 * Sockets are handed to the HTTP servers by hand, so Node's own timers of
 * those servers never start: these replace them.
 */
export class ConnectionGuard {
  readonly counts: GuardCounts = { refusedConnections: 0, headerTimeouts: 0, idleTimeouts: 0, resetStreams: 0, requestTimeouts: 0 };
  private readonly perAddress = new Map<string, number>();
  private readonly buffered = new WeakMap<object, { bytes: number }>();

  /** `onLimit` hears of every connection or stream a limit refused or closed, with the client's address. */
  constructor(
    readonly limits: ConnectionLimits,
    private readonly onLimit: (kind: keyof GuardCounts, address: string | undefined) => void = () => {},
  ) {}

  private count(kind: keyof GuardCounts, address: string | undefined): void {
    this.counts[kind]++;
    this.onLimit(kind, address);
  }

  /** A new TCP connection: false when it is over its address's cap (it is destroyed). */
  accept(socket: net.Socket): boolean {
    const address = socket.remoteAddress ?? "";
    const open = this.perAddress.get(address) ?? 0;
    if (open >= this.limits.maxConnectionsPerAddress) {
      this.count("refusedConnections", address);
      socket.destroy();
      return false;
    }
    this.perAddress.set(address, open + 1);
    const state: SocketState = { waitTimer: undefined, socket };
    (socket as Guarded)[STATE] = state;
    socket.once("close", () => {
      clearTimeout(state.waitTimer);
      const left = (this.perAddress.get(address) ?? 1) - 1;
      if (left > 0) this.perAddress.set(address, left);
      else this.perAddress.delete(address);
    });
    this.waitForRequest(state, this.limits.headersTimeoutMs, "header");
    return true;
  }

  /** An HTTP/1.1 connection (cleartext or TLS): closed when idle, unless it carries a held stream. */
  h1Socket(socket: net.Socket): void {
    const onIdle = () => {
      if (isHeld(socket)) socket.setTimeout(this.limits.idleTimeoutMs, onIdle);
      else {
        this.count("idleTimeouts", socket.remoteAddress);
        socket.destroy();
      }
    };
    socket.setTimeout(this.limits.idleTimeoutMs, onIdle);
  }

  /** An HTTP/1.1 request's headers came: the wait ends; after its response, the next must come within the idle timeout. */
  h1Request(req: http.IncomingMessage, res: http.ServerResponse, inFlight: () => number): void {
    const state = stateOf(req.socket);
    if (!state) return;
    clearTimeout(state.waitTimer);
    state.waitTimer = undefined;
    if (!req.complete) {
      const timer = setTimeout(() => {
        if (req.complete || state.socket.destroyed) return;
        this.count("requestTimeouts", state.socket.remoteAddress);
        state.socket.destroy();
      }, this.limits.requestTimeoutMs);
      timer.unref();
      req.once("close", () => clearTimeout(timer));
    }
    res.once("close", () => {
      if (inFlight() === 0 && !state.socket.destroyed) this.waitForRequest(state, this.limits.idleTimeoutMs, "idle");
    });
  }

  /** An HTTP/2 session: closed (GOAWAY) when idle, unless it carries a held stream. */
  session(session: http2.ServerHttp2Session): void {
    this.buffered.set(session, { bytes: 0 });
    const onIdle = () => {
      if (session.destroyed) return;
      if (isHeld(session)) {
        session.setTimeout(this.limits.idleTimeoutMs, onIdle);
        return;
      }
      this.count("idleTimeouts", addressOf(session));
      session.close();
      setTimeout(() => session.destroy(), 1000).unref();
    };
    session.setTimeout(this.limits.idleTimeoutMs, onIdle);
  }

  /**
   * An HTTP/2 stream (its headers came): the header wait ends, the bytes
   * received on it count towards its connection's cap until it closes, and
   * its request must end within the request timeout.
   */
  stream(stream: http2.ServerHttp2Stream): void {
    const session = stream.session;
    if (!session) return;
    const state = stateOf(session.socket);
    if (state?.waitTimer) {
      clearTimeout(state.waitTimer);
      state.waitTimer = undefined;
    }
    const held = this.buffered.get(session);
    if (!held) return;
    // State on the stream and shared functions: a WatchToken stream open for hours holds no closures for this.
    const counted: Counted = { held, mine: 0, push: stream.push, guard: this, requestTimer: undefined };
    (stream as CountedStream)[COUNTED] = counted;
    stream.push = countedPush;
    stream.on("close", releaseBytes); // `on`: it comes once, and `once` costs a wrapper per stream
    if (!stream.endAfterHeaders) {
      counted.requestTimer = setTimeout(requestTimedOut, this.limits.requestTimeoutMs, stream);
      counted.requestTimer.unref();
    }
  }

  /** A stream's request had not ended within the request timeout: it is reset. */
  requestTimedOut(stream: http2.ServerHttp2Stream): void {
    if (stream.destroyed) return;
    this.count("requestTimeouts", stream.session ? addressOf(stream.session) : undefined);
    stream.close(http2.constants.NGHTTP2_CANCEL);
  }

  /** A stream's bytes passed its connection's cap: it is reset, which frees them. */
  overCap(stream: http2.ServerHttp2Stream): void {
    this.count("resetStreams", stream.session ? addressOf(stream.session) : undefined);
    stream.close(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
  }

  /** Closes the connection unless a request's headers come within `ms`. */
  private waitForRequest(state: SocketState, ms: number, why: "header" | "idle"): void {
    clearTimeout(state.waitTimer);
    state.waitTimer = setTimeout(() => {
      state.waitTimer = undefined;
      this.count(why === "header" ? "headerTimeouts" : "idleTimeouts", state.socket.remoteAddress);
      state.socket.destroy();
    }, ms);
    state.waitTimer.unref();
  }
}

const COUNTED = Symbol("tokenbroker.countedBytes");
interface Counted {
  held: { bytes: number };
  mine: number;
  push: http2.ServerHttp2Stream["push"];
  guard: ConnectionGuard;
  /** Resets the stream unless its request ends first (cleared by the end of the request, or the stream's close). */
  requestTimer: NodeJS.Timeout | undefined;
}
type CountedStream = http2.ServerHttp2Stream & { [COUNTED]?: Counted };

function requestTimedOut(stream: CountedStream): void {
  const counted = stream[COUNTED];
  if (counted) counted.guard.requestTimedOut(stream);
}

/** The stream's push(): Node hands it each DATA frame's bytes, whether anyone reads them yet or not. */
function countedPush(this: CountedStream, chunk: unknown, encoding?: BufferEncoding): boolean {
  const counted = this[COUNTED]!;
  if (chunk === null) {
    // The end of the request (END_STREAM): it came in time.
    clearTimeout(counted.requestTimer);
    counted.requestTimer = undefined;
  } else if (chunk !== undefined && !this.destroyed) {
    const n = (chunk as { length: number }).length;
    counted.mine += n;
    counted.held.bytes += n;
    if (counted.held.bytes > counted.guard.limits.maxBufferedBytes) {
      counted.held.bytes -= counted.mine;
      counted.mine = 0;
      counted.guard.overCap(this);
      return false;
    }
  }
  return counted.push.call(this, chunk, encoding);
}

/** A closed stream's bytes no longer count towards its connection's. */
function releaseBytes(this: CountedStream): void {
  const counted = this[COUNTED];
  if (!counted) return;
  clearTimeout(counted.requestTimer);
  counted.requestTimer = undefined;
  counted.held.bytes -= counted.mine;
  counted.mine = 0;
}

/** The client's address of a session (none once its socket is gone). */
function addressOf(session: http2.Http2Session): string | undefined {
  try {
    return session.socket?.remoteAddress;
  } catch {
    return undefined; // the session's socket proxy throws once the socket is unbound
  }
}

/** The state of the accepted socket under a socket, TLS socket or HTTP/2 session's socket proxy. */
function stateOf(socket: unknown): SocketState | undefined {
  const s = socket as Guarded | undefined;
  return s?.[STATE] ?? s?._parent?.[STATE];
}
