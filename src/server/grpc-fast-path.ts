import type * as http2 from "node:http2";
import { create, fromBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { CancelSignal } from "../broker/abortable.js";
import { holdUntilClosed } from "./held-connections.js";
import { PerTurn } from "./per-turn.js";

/** What a fast-path method gets besides its request message. */
export interface FastCall {
  /**
   * Aborted when the client cancels the call or its connection closes (with
   * a CANCELED `ConnectError` as its reason). The call itself, not an
   * AbortSignal: a caller that waits for a refresh costs no event target.
   */
  readonly signal: CancelSignal;
  /** The request's `authorization` header, if it has one. */
  readonly authorization: string | undefined;
  /**
   * Server-streaming calls only: the request held no message or more than one
   * (`request` is then empty). Connect raises this in the handler, after its
   * interceptors have checked the API key and started the debug line: throw it
   * after the same checks.
   */
  readonly protocolError: ConnectError | undefined;
  /** Keeps the call's connection open past its idle timeout while the call runs (an authenticated WatchToken stream). */
  holdConnection(): void;
}

/** A unary method: one request message, one response message. */
export interface FastUnaryMethod<I extends DescMessage = DescMessage> {
  readonly kind: "unary";
  readonly input: I;
  /** See {@link FastServerStreamingMethod.authenticate}. */
  readonly authenticate?: ((authorization: string | undefined) => Promise<void>) | undefined;
  /**
   * Answers with the response message's serialized bytes; throws a
   * `ConnectError` to answer with its status. Returning the same `Uint8Array`
   * object again reuses its gRPC frame.
   */
  handle(request: MessageShape<I>, call: FastCall): Promise<Uint8Array>;
}

/** A server-streaming call: a {@link FastCall} that sends messages. */
export interface FastStreamingCall extends FastCall {
  /**
   * Sends a response message (serialized bytes); resolves when the stream can
   * take more (a caller that does not wait for it has its messages buffered).
   * Returning the same `Uint8Array` object again reuses its gRPC frame.
   */
  send(message: Uint8Array): Promise<void>;
  /** True once the client cancelled the call or its connection closed. */
  readonly closed: boolean;
}

/** A server-streaming method: one request message, any number of response messages. */
export interface FastServerStreamingMethod<I extends DescMessage = DescMessage> {
  readonly kind: "server_streaming";
  readonly input: I;
  /**
   * Checks the caller from the request's headers before any of its body is
   * read: a call it rejects is answered with the `ConnectError` it throws,
   * and its body is dropped unread.
   */
  readonly authenticate?: ((authorization: string | undefined) => Promise<void>) | undefined;
  /**
   * Sends response messages with `call.send`. The call ends OK when `handle`
   * returns, with the status of the `ConnectError` it throws otherwise.
   */
  handle(request: MessageShape<I>, call: FastStreamingCall): Promise<void>;
}

/** A method the fast path serves; see {@link createGrpcFastPath}. */
export type FastMethod = FastUnaryMethod | FastServerStreamingMethod;

/** Options for {@link createGrpcFastPath}. */
export interface GrpcFastPathOptions {
  /** The methods served, by request path (`/package.Service/Method`). */
  methods: ReadonlyMap<string, FastMethod>;
  /** Largest request message accepted, bytes (as the Connect handler's `readMaxBytes`). */
  readMaxBytes: number;
  /** Gets anything a method threw that is not a `ConnectError` (the caller sees INTERNAL). */
  onInternalError(e: unknown): void;
  /** Added to every response's headers (`Cache-Control: no-store`, HSTS over TLS). */
  responseHeaders?: http2.OutgoingHttpHeaders;
}

/** Takes an HTTP/2 stream (returns true) or leaves it alone (returns false); see `OnePortOptions.streamHandler`. */
export type Http2StreamHandler = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => boolean;

const CONTENT_TYPES = new Set(["application/grpc", "application/grpc+proto"]);
const OK = { "grpc-status": "0" };
const CANCELLED = new ConnectError("the call was cancelled", Code.Canceled);
const RESOLVED = Promise.resolve();

/** Calls `headersIfWaiting` of `call` once the event loop has turned (one `setImmediate` for all the calls of a turn). */
const afterThisTurn = (() => {
  let calls: Array<{ headersIfWaiting(): void }> = [];
  const run = () => {
    const due = calls;
    calls = [];
    for (const call of due) call.headersIfWaiting();
  };
  return (call: { headersIfWaiting(): void }) => {
    if (calls.push(call) === 1) setImmediate(run);
  };
})();

/**
 * Answers written per turn of the event loop. Node sends what an HTTP/2
 * session has been given once per turn: when a refresh ends and a thousand
 * waiting calls are answered at once, the first answer would leave together
 * with the last, after all of them were written (about 15 ms on the bench's
 * 2 cores). Paced, the first hundred are on the wire, and their callers
 * reading them, while the rest are written.
 */
const PER_TURN = 100;

const pacedAnswers = new PerTurn<{ call: ServedCall; message: Uint8Array }>(PER_TURN, ({ call, message }) =>
  call.writeAnswer(message),
);

/**
 * Serves a few hot gRPC methods straight off Node's HTTP/2 streams, without
 * the compatibility request/response objects and Connect's per-call chain of
 * async iterables: the one request message is read by hand (same size limit
 * and errors as Connect), and each response message is framed once however
 * many calls send it. What it does not take (other paths and protocols,
 * compressed requests, `grpc-timeout` deadlines) it leaves untouched for
 * Connect, which serves everything the same way, only slower.
 *
 * `npm run bench` found connect-node's handler to cost ~0.5 ms of CPU per
 * call on a 2-core machine, most of it per-call machinery (async generators,
 * abort signals, header conversion), against ~0.05 ms for the stream itself.
 */
export function createGrpcFastPath(options: GrpcFastPathOptions): Http2StreamHandler {
  // One frame per response message object: a cached token answers thousands of calls with the same bytes.
  const frames = new WeakMap<Uint8Array, Buffer>();
  const frameOf = (message: Uint8Array): Buffer => {
    let frame = frames.get(message);
    if (!frame) {
      // Not from Node's shared 8 KiB pool: a frame kept for a token's life would keep its whole pool slab.
      frame = Buffer.allocUnsafeSlow(5 + message.length);
      frame[0] = 0;
      frame.writeUInt32BE(message.length, 1);
      frame.set(message, 5);
      frames.set(message, frame);
    }
    return frame;
  };

  const shared: Shared = { options, frameOf };
  return (stream, headers) => {
    if (headers[":method"] !== "POST") return false;
    const method = options.methods.get(String(headers[":path"]));
    if (!method) return false;
    if (!CONTENT_TYPES.has(String(headers["content-type"] ?? "").toLowerCase())) return false;
    const encoding = headers["grpc-encoding"];
    if ((encoding !== undefined && encoding !== "identity") || headers["grpc-timeout"] !== undefined) return false;
    const authorization = headers["authorization"];
    new ServedCall(stream, typeof authorization === "string" ? authorization : undefined, method, shared);
    return true;
  };
}

/** What every call of one fast path shares. */
interface Shared {
  readonly options: GrpcFastPathOptions;
  frameOf(message: Uint8Array): Buffer;
}

const CALL = Symbol("tokenbroker.fastCall");
type CallStream = http2.ServerHttp2Stream & { [CALL]?: ServedCall };

// The stream's listeners are shared functions that find their call on the stream (`this`): a WatchToken
// stream open for hours holds no closures of its own for them.
function ignore(): void {}
function onStreamClose(this: CallStream): void {
  this[CALL]?.streamClosed();
}
function onStreamData(this: CallStream, chunk: Buffer): void {
  this[CALL]?.data(chunk);
}
function onStreamEnd(this: CallStream): void {
  this.off("data", onStreamData); // nothing more comes: a stream that stays open holds no reader
  this[CALL]?.ended();
}

/** One call on the fast path, from its request's first bytes to its status. */
class ServedCall implements FastStreamingCall, CancelSignal {
  /** Waits that end if the client goes away (see `signal`). */
  private abortListeners: Array<() => void> | undefined;
  private headersSent = false;
  /** The status was sent, or the stream closed: nothing more is written. */
  private done = false;
  /** The request was read and handed to the method. */
  private started = false;
  private answered = false;
  private chunks: Buffer[] = [];
  private length = 0;
  private draining: Promise<void> | undefined;
  /** The client cancelled the call, or its connection closed, before the call ended. */
  closed = false;
  protocolError: ConnectError | undefined = undefined;

  constructor(
    private readonly stream: CallStream,
    readonly authorization: string | undefined,
    private readonly method: FastMethod,
    private readonly shared: Shared,
  ) {
    stream[CALL] = this;
    // A reset by the client (or a broken connection) surfaces as "error" then "close": only "close" matters.
    stream.on("error", ignore);
    stream.once("close", onStreamClose);
    // The key first: no byte of an unauthenticated call's body is kept.
    const checked = method.authenticate?.(authorization);
    if (checked) checked.then(() => this.read(), (e: unknown) => this.refuseUnread(e));
    else this.read();
  }

  private read(): void {
    if (this.done) return;
    // Flowing from here: after the call has ended, the rest of an oversized body is read and dropped.
    this.stream.on("data", onStreamData);
    this.stream.once("end", onStreamEnd);
  }

  /** Answers a call refused before its body was read; what the client still sends is dropped. */
  private refuseUnread(e: unknown): void {
    this.fail(e);
    this.stream.resume();
  }

  holdConnection(): void {
    const session = this.stream.session;
    if (session && !this.stream.closed) holdUntilClosed(session, this.stream);
  }

  /** The call is its own signal (see {@link FastCall.signal}). */
  get signal(): CancelSignal {
    return this;
  }

  get aborted(): boolean {
    return this.closed || this.stream.destroyed;
  }

  get reason(): unknown {
    return this.aborted ? CANCELLED : undefined;
  }

  addEventListener(_type: "abort", listener: () => void): void {
    (this.abortListeners ??= []).push(listener);
  }

  removeEventListener(_type: "abort", listener: () => void): void {
    const listeners = this.abortListeners;
    const i = listeners ? listeners.indexOf(listener) : -1;
    if (i >= 0) listeners!.splice(i, 1);
  }

  send(message: Uint8Array): Promise<void> {
    if (this.done || this.stream.destroyed) return RESOLVED;
    this.respond();
    if (this.stream.write(this.shared.frameOf(message))) return RESOLVED;
    this.draining ??= drained(this.stream).then(() => {
      this.draining = undefined;
    });
    return this.draining;
  }

  /** The stream closed. */
  streamClosed(): void {
    if (this.done) return; // answered: nobody is left to cancel
    this.done = true;
    this.closed = true;
    const aborted = this.abortListeners;
    this.abortListeners = undefined;
    if (aborted) for (const listener of aborted) listener();
  }

  data(chunk: Buffer): void {
    if (this.done || this.started) return;
    this.length += chunk.length;
    this.chunks.push(chunk);
    const { readMaxBytes } = this.shared.options;
    // Two whole envelopes of at most readMaxBytes decide any body's answer (see readRequest): no need to read on.
    if (this.length > 2 * (readMaxBytes + 5)) {
      const head = Buffer.concat(this.chunks);
      this.chunks = [];
      try {
        readRequest(head, this.method.kind, readMaxBytes, this.method.input);
        this.finish(Code.ResourceExhausted, `message size is larger than configured readMaxBytes ${readMaxBytes}`);
      } catch (e) {
        this.refuse(e);
      }
    }
  }

  ended(): void {
    if (this.done || this.started) return;
    const chunks = this.chunks;
    this.chunks = [];
    let request: MessageShape<DescMessage>;
    try {
      request = readRequest(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), this.method.kind, this.shared.options.readMaxBytes, this.method.input);
    } catch (e) {
      this.refuse(e);
      return;
    }
    this.start(undefined, request);
  }

  /** Sends the response headers of a call that is still running when the event loop turns (see `start`). */
  headersIfWaiting(): void {
    if (!this.answered && !this.done && !this.stream.destroyed) this.respond();
  }

  /** A request that cannot be read: its error, or for a stream with no message or two, the method's. */
  private refuse(e: unknown): void {
    // Connect finds a streaming call's missing or extra message in the handler, after the key check.
    if (this.method.kind === "server_streaming" && e instanceof ConnectError && e.code === Code.Unimplemented) this.start(e);
    else this.fail(e);
  }

  private start(protocolError: ConnectError | undefined, request: MessageShape<DescMessage> = create(this.method.input)): void {
    this.started = true;
    this.protocolError = protocolError;
    if (this.method.kind === "server_streaming") {
      this.method.handle(request, this).then(
        () => this.finish(0, ""),
        (e: unknown) => this.fail(e),
      );
      return;
    }
    this.method.handle(request, this).then(
      (message) => this.answer(message),
      (e: unknown) => {
        this.answered = true;
        this.fail(e);
      },
    );
    // Still running when the event loop turns: it waits (for a refresh, say). Its response headers go
    // out then, so that when the answer comes, a storm of waiting calls costs a frame and trailers each.
    afterThisTurn(this);
  }

  private answer(message: Uint8Array): void {
    this.answered = true;
    if (this.done || this.stream.destroyed) return;
    this.done = true;
    pacedAnswers.add({ call: this, message });
  }

  /** Writes the answer (see {@link pacedAnswers}). */
  writeAnswer(message: Uint8Array): void {
    if (this.stream.destroyed) return;
    try {
      this.respond();
      this.stream.once("wantTrailers", sendOkTrailers);
      this.stream.end(this.shared.frameOf(message));
    } catch {
      // A stream Node will no longer write to (closed by its session meanwhile): the caller is gone, and the
      // answers paced after this one must still be written.
      this.stream.destroy();
    }
  }

  private respond(): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-accept-encoding": "identity", ...this.shared.options.responseHeaders }, { waitForTrailers: true });
  }

  /** Ends the call: trailers after the messages, or a trailers-only response. */
  private finish(code: Code | 0, message: string): void {
    if (this.done) return;
    this.done = true;
    const stream = this.stream;
    if (stream.destroyed || stream.closed) return;
    const status = { "grpc-status": String(code), ...(message ? { "grpc-message": encodeMessage(message) } : {}) };
    try {
      if (!this.headersSent) {
        this.headersSent = true;
        stream.respond({ ":status": 200, "content-type": "application/grpc", ...this.shared.options.responseHeaders, ...status }, { endStream: true });
      } else {
        stream.once("wantTrailers", () => stream.sendTrailers(status));
        stream.end();
      }
    } catch {
      stream.destroy();
    }
  }

  private fail(e: unknown): void {
    const error = e instanceof ConnectError ? e : internal(e, this.shared.options);
    this.finish(error.code, error.rawMessage);
  }
}

function sendOkTrailers(this: http2.ServerHttp2Stream): void {
  this.sendTrailers(OK);
}

/**
 * The one request message of a call, or the ConnectError Connect answers such
 * a body with: envelopes are read in order as Connect's handler reads them
 * (size, completeness, compressed flag, parse), and a second one is read
 * whole before it counts as an extra message.
 */
function readRequest(body: Buffer, methodKind: FastMethod["kind"], readMaxBytes: number, input: DescMessage): MessageShape<DescMessage> {
  const kind = methodKind === "unary" ? "unary" : "server-streaming";
  let first: MessageShape<DescMessage> | undefined;
  let offset = 0;
  while (offset < body.length) {
    if (body.length - offset < 5) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
    const size = body.readUInt32BE(offset + 1);
    if (size > readMaxBytes) {
      throw new ConnectError(`message size ${size} is larger than configured readMaxBytes ${readMaxBytes}`, Code.ResourceExhausted);
    }
    if (body.length - offset - 5 < size) throw new ConnectError("protocol error: incomplete envelope", Code.InvalidArgument);
    // Only bit 0 means anything in a request (compressed); Connect ignores the others.
    if ((body[offset]! & 1) === 1) throw new ConnectError("received compressed envelope, but do not know how to decompress", Code.Internal);
    let message: MessageShape<DescMessage>;
    try {
      message = fromBinary(input, body.subarray(offset + 5, offset + 5 + size));
    } catch (e) {
      throw new ConnectError(`parse binary: ${e instanceof Error ? e.message : String(e)}`, Code.Internal);
    }
    if (first) throw new ConnectError(`protocol error: received extra input message for ${kind} method`, Code.Unimplemented);
    first = message;
    offset += 5 + size;
  }
  if (!first) throw new ConnectError(`protocol error: missing input message for ${kind} method`, Code.Unimplemented);
  return first;
}

function internal(e: unknown, options: GrpcFastPathOptions): ConnectError {
  options.onInternalError(e);
  return new ConnectError("internal error", Code.Internal);
}

/** Resolves when the stream can take more data, or it closed. */
function drained(stream: http2.ServerHttp2Stream): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off("drain", done);
      stream.off("close", done);
      resolve();
    };
    stream.on("drain", done);
    stream.on("close", done);
  });
}

/** `grpc-message` is percent-encoded (gRPC over HTTP/2: anything outside printable ASCII, and `%`). */
function encodeMessage(message: string): string {
  return /^[\x20-\x24\x26-\x7e]*$/.test(message) ? message : encodeURIComponent(message);
}
