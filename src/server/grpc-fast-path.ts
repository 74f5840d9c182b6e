import type * as http2 from "node:http2";
import { fromBinary, type DescMessage, type Message, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import { createDeadlineSignal, encodeEnvelope } from "@connectrpc/connect/protocol";
import { grpcStatusOk, headerGrpcStatus, parseTimeout, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import type { CancelSignal } from "../broker/abortable.js";
import type { CallGuard, GuardedCall } from "./call-guard.js";
import { MAX_DEADLINE_MS, clampGrpcTimeout } from "./deadline-headers.js";
import { holdUntilClosed } from "./held-connections.js";
import { PerTurn } from "./per-turn.js";

/** What a fast-path method gets besides its request message. */
export interface FastCall {
  /**
   * Aborted when the client cancels the call, its connection closes (with a
   * CANCELED `ConnectError` as its reason) or its deadline passes (Connect's
   * DEADLINE_EXCEEDED). The call itself, not an AbortSignal: a caller that
   * waits for a refresh costs no event target.
   */
  readonly signal: CancelSignal;
  /** The call as the port's guard steps see it (its principal: the caller's key). */
  readonly guarded: GuardedCall;
  /** Keeps the call's connection open past its idle timeout while the call runs (an authenticated WatchToken stream, a long poll). */
  holdConnection(): void;
}

/**
 * A response message: the message, its binary serialization, and the token
 * it carries (for the guard's audit and metrics). Returning the same answer
 * again reuses its gRPC frame (the same `bytes`) and its Connect JSON.
 */
export interface FastAnswer {
  readonly message: Message;
  readonly bytes: Uint8Array;
  readonly token: { readonly connectionId: string } | undefined;
}

/** A unary method: one request message, one response message. */
export interface FastUnaryMethod<I extends DescMessage = DescMessage> {
  readonly kind: "unary";
  readonly input: I;
  /** Answers, or throws a `ConnectError` to answer with its status. */
  handle(request: MessageShape<I>, call: FastCall): Promise<FastAnswer>;
}

/** A server-streaming call: a {@link FastCall} that sends messages. */
export interface FastStreamingCall extends FastCall {
  /**
   * Sends a response message; resolves when the stream can take more (a
   * caller that does not wait for it has its messages buffered).
   */
  send(answer: FastAnswer): Promise<void>;
  /** True once the client cancelled the call or its connection closed. */
  readonly closed: boolean;
}

/** A server-streaming method: one request message, any number of response messages. */
export interface FastServerStreamingMethod<I extends DescMessage = DescMessage> {
  readonly kind: "server_streaming";
  readonly input: I;
  /**
   * Sends response messages with `call.send`. The call ends OK when `handle`
   * returns, with the status of the `ConnectError` it throws otherwise.
   */
  handle(request: MessageShape<I>, call: FastStreamingCall): Promise<void>;
}

/** A method the fast path serves; see {@link createGrpcFastPath}. */
export type FastMethod = FastUnaryMethod | FastServerStreamingMethod;

/**
 * Serves, the way Connect does, a call the fast path took but whose body is
 * not one well-formed message: `body` is what was read of it (enough to
 * decide: see `readMaxBytes`), `call` its guard, which checked its headers.
 */
export type FastPathFallback = (
  stream: http2.ServerHttp2Stream,
  headers: http2.IncomingHttpHeaders,
  body: Uint8Array,
  call: GuardedCall,
) => void;

/** Options for {@link createGrpcFastPath}. */
export interface GrpcFastPathOptions {
  /** The methods served, by request path (`/package.Service/Method`). */
  methods: ReadonlyMap<string, FastMethod>;
  /** The port's guard: every call runs its steps, as the Connect path does (`guardInterceptor`). */
  guard: CallGuard;
  /** Largest request message accepted, bytes (as the Connect handler's `readMaxBytes`). */
  readMaxBytes: number;
  /** Answers bodies that are not one well-formed message (see {@link FastPathFallback}). */
  fallback: FastPathFallback;
  /** Gets anything a method threw that is not a `ConnectError` (the caller sees INTERNAL). */
  onInternalError(e: unknown): void;
  /** Added to every response's headers (`Cache-Control: no-store`, HSTS over TLS). */
  responseHeaders?: http2.OutgoingHttpHeaders;
}

/** Takes an HTTP/2 stream (returns true) or leaves it alone (returns false); see `OnePortOptions.streamHandler`. */
export type Http2StreamHandler = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => boolean;

const CONTENT_TYPES = new Set(["application/grpc", "application/grpc+proto"]);
const OK = { [headerGrpcStatus.toLowerCase()]: grpcStatusOk };
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

const pacedAnswers = new PerTurn<{ call: ServedCall; answer: FastAnswer }>(PER_TURN, ({ call, answer }) => call.writeAnswer(answer));

/**
 * Serves the TokenService's plain gRPC calls straight off Node's HTTP/2
 * streams, without the compatibility request/response objects and Connect's
 * per-call chain of async iterables, on Connect's own protocol pieces
 * (envelopes, `grpc-timeout` parsing, deadline signal, trailer status) and
 * through the same guard steps as the Connect path. The one request message
 * is read by hand; a body that is anything else is handed to `fallback`
 * (Connect), which answers it as it answers any call. Each response message
 * is framed once however many calls send it. What it does not take (other
 * paths and protocols, compressed requests, malformed deadlines) goes to
 * Connect, which serves everything the same way, only slower.
 *
 * `npm run bench` (cached GetToken, h2load) measured a plain connect-node
 * server at several times the CPU per gRPC call of a plain `@grpc/grpc-js`
 * server: this path is what keeps the broker near the latter.
 */
export function createGrpcFastPath(options: GrpcFastPathOptions): Http2StreamHandler {
  // One frame per response message object: a cached token answers thousands of calls with the same bytes.
  const frames = new WeakMap<Uint8Array, Uint8Array>();
  const frameOf = (message: Uint8Array): Uint8Array => {
    let frame = frames.get(message);
    if (!frame) {
      frame = encodeEnvelope(0, message);
      frames.set(message, frame);
    }
    return frame;
  };
  const names = new Map<string, string>();
  for (const path of options.methods.keys()) names.set(path, path.slice(path.lastIndexOf("/") + 1));

  const shared: Shared = { options, frameOf };
  return (stream, headers) => {
    if (headers[":method"] !== "POST") return false;
    const path = String(headers[":path"]);
    const method = options.methods.get(path);
    if (!method) return false;
    if (!CONTENT_TYPES.has(String(headers["content-type"] ?? "").toLowerCase())) return false;
    const encoding = headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity") return false;
    let timeoutMs: number | undefined;
    const timeout = headers["grpc-timeout"];
    if (timeout !== undefined) {
      const parsed = parseTimeout(clampGrpcTimeout(String(timeout)), MAX_DEADLINE_MS);
      if (parsed.error) return false; // Connect answers it with its own error
      timeoutMs = parsed.timeoutMs;
    }
    const authorization = headers["authorization"];
    const guarded = options.guard.start({
      method: names.get(path)!,
      protocol: "grpc",
      authorization: typeof authorization === "string" ? authorization : undefined,
    });
    new ServedCall(stream, headers, guarded, method, timeoutMs, shared);
    return true;
  };
}

/** What every call of one fast path shares. */
interface Shared {
  readonly options: GrpcFastPathOptions;
  frameOf(message: Uint8Array): Uint8Array;
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
  /** Waits that end if the client goes away or the deadline passes (see `signal`). */
  private abortListeners: Array<() => void> | undefined;
  private headersSent = false;
  /** The status was sent, or the stream closed: nothing more is written. */
  private done = false;
  /** The request was read and handed on (to the method, or to the fallback). */
  private started = false;
  private answered = false;
  private chunks: Buffer[] = [];
  private length = 0;
  private draining: Promise<void> | undefined;
  /** Connect's deadline signal, for a call with `grpc-timeout`. */
  private deadline: ReturnType<typeof createDeadlineSignal> | undefined;
  /** Why the call was aborted (cancelled, or its deadline passed). */
  private abortReason: unknown;
  /** The client cancelled the call, or its connection closed, before the call ended. */
  closed = false;

  constructor(
    private readonly stream: CallStream,
    private readonly headers: http2.IncomingHttpHeaders,
    readonly guarded: GuardedCall,
    private readonly method: FastMethod,
    timeoutMs: number | undefined,
    private readonly shared: Shared,
  ) {
    stream[CALL] = this;
    // A reset by the client (or a broken connection) surfaces as "error" then "close": only "close" matters.
    stream.on("error", ignore);
    stream.once("close", onStreamClose);
    if (timeoutMs !== undefined) {
      const deadline = createDeadlineSignal(timeoutMs);
      this.deadline = deadline;
      if (deadline.signal.aborted) this.expire();
      else deadline.signal.addEventListener("abort", () => this.expire(), { once: true });
    }
    // The headers' checks first (the key): no byte of an unauthenticated call's body is kept.
    const checked = guarded.authenticate();
    if (checked)
      checked.then(
        () => this.read(),
        (e: unknown) => this.refuseUnread(e),
      );
    else this.read();
  }

  private read(): void {
    if (this.done) return;
    // Flowing from here: after the call has ended, the rest of an oversized body is read and dropped.
    this.stream.on("data", onStreamData);
    this.stream.once("end", onStreamEnd);
  }

  /** Answers a call refused before its body was read (the guard ended it); what the client still sends is dropped. */
  private refuseUnread(e: unknown): void {
    this.finish(ConnectError.from(e));
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
    return this.abortReason !== undefined || this.closed || this.stream.destroyed;
  }

  get reason(): unknown {
    return this.abortReason ?? (this.aborted ? CANCELLED : undefined);
  }

  addEventListener(_type: "abort", listener: () => void): void {
    this.abortListeners ??= [];
    this.abortListeners.push(listener);
  }

  removeEventListener(_type: "abort", listener: () => void): void {
    const listeners = this.abortListeners;
    const i = listeners ? listeners.indexOf(listener) : -1;
    if (i >= 0) listeners!.splice(i, 1);
  }

  private abort(reason: unknown): void {
    this.abortReason ??= reason;
    const aborted = this.abortListeners;
    this.abortListeners = undefined;
    if (aborted) for (const listener of aborted) listener();
  }

  /** The deadline passed: what waits is let go, and the call ends with Connect's DEADLINE_EXCEEDED. */
  private expire(): void {
    const reason = this.deadline!.signal.reason as unknown;
    this.abort(reason);
    this.fail(reason);
  }

  send(answer: FastAnswer): Promise<void> {
    if (this.done || this.stream.destroyed) return RESOLVED;
    this.respond();
    this.guarded.sent(answer.token);
    if (this.stream.write(this.shared.frameOf(answer.bytes))) return RESOLVED;
    this.draining ??= drained(this.stream).then(() => {
      this.draining = undefined;
    });
    return this.draining;
  }

  /** The stream closed. */
  streamClosed(): void {
    this.deadline?.cleanup();
    if (this.done) return; // answered: nobody is left to cancel
    this.done = true;
    this.closed = true;
    // As on Connect: a unary call the client gave up on ended CANCELED; a stream it closed simply ended.
    this.guarded.ended(this.started && this.method.kind === "server_streaming" ? undefined : CANCELLED);
    this.abort(CANCELLED);
  }

  data(chunk: Buffer): void {
    if (this.done || this.started) return;
    this.length += chunk.length;
    this.chunks.push(chunk);
    // Two whole envelopes of at most readMaxBytes decide any body's answer: Connect need see no more.
    if (this.length > 2 * (this.shared.options.readMaxBytes + 5)) this.toFallback(Buffer.concat(this.chunks));
  }

  ended(): void {
    if (this.done || this.started) return;
    const chunks = this.chunks;
    this.chunks = [];
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    const request = readOneMessage(body, this.shared.options.readMaxBytes, this.method.input);
    if (request === undefined) this.toFallback(body);
    else this.start(request);
  }

  /** Hands a body that is not one well-formed message to Connect, which answers it; the rest of the body is dropped. */
  private toFallback(body: Buffer): void {
    this.started = true;
    this.done = true;
    this.chunks = [];
    this.deadline?.cleanup();
    delete this.stream[CALL];
    this.shared.options.fallback(this.stream, this.headers, body, this.guarded);
  }

  /** Sends the response headers of a call that is still running when the event loop turns (see `start`). */
  headersIfWaiting(): void {
    if (!this.answered && !this.done && !this.stream.destroyed) this.respond();
  }

  private start(request: MessageShape<DescMessage>): void {
    this.started = true;
    const authorized = this.guarded.authorize(request);
    if (authorized)
      authorized.then(
        () => this.run(request),
        (e: unknown) => this.finish(ConnectError.from(e)),
      );
    else this.run(request);
  }

  private run(request: MessageShape<DescMessage>): void {
    if (this.done) return;
    if (this.method.kind === "server_streaming") {
      this.method.handle(request, this).then(
        () => this.fail(undefined),
        (e: unknown) => this.fail(e),
      );
      return;
    }
    this.method.handle(request, this).then(
      (answer) => this.answer(answer),
      (e: unknown) => {
        this.answered = true;
        this.fail(e);
      },
    );
    // Still running when the event loop turns: it waits (for a refresh, say). Its response headers go
    // out then, so that when the answer comes, a storm of waiting calls costs a frame and trailers each.
    afterThisTurn(this);
  }

  private answer(answer: FastAnswer): void {
    this.answered = true;
    if (this.done || this.stream.destroyed) return;
    this.done = true;
    this.deadline?.cleanup();
    this.guarded.sent(answer.token);
    this.guarded.ended();
    pacedAnswers.add({ call: this, answer });
  }

  /** Writes the answer (see {@link pacedAnswers}). */
  writeAnswer(answer: FastAnswer): void {
    if (this.stream.destroyed) return;
    try {
      this.respond();
      this.stream.once("wantTrailers", sendOkTrailers);
      this.stream.end(this.shared.frameOf(answer.bytes));
    } catch {
      // A stream Node will no longer write to (closed by its session meanwhile): the caller is gone, and the
      // answers paced after this one must still be written.
      this.stream.destroy();
    }
  }

  private respond(): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.stream.respond(
      { ":status": 200, "content-type": "application/grpc", "grpc-accept-encoding": "identity", ...this.shared.options.responseHeaders },
      { waitForTrailers: true },
    );
  }

  /** Ends the call with `e` (OK when undefined), the guard told of it. */
  private fail(e: unknown): void {
    if (this.done) return;
    const error = e === undefined ? undefined : e instanceof ConnectError ? e : internal(e, this.shared.options);
    this.guarded.ended(error);
    this.finish(error);
  }

  /** Ends the call: trailers after the messages, or a trailers-only response. */
  private finish(error: ConnectError | undefined): void {
    if (this.done) return;
    this.done = true;
    this.deadline?.cleanup();
    const stream = this.stream;
    if (stream.destroyed || stream.closed) return;
    const status = error ? trailerOf(error) : OK;
    try {
      if (!this.headersSent) {
        this.headersSent = true;
        stream.respond(
          { ":status": 200, "content-type": "application/grpc", ...this.shared.options.responseHeaders, ...status },
          { endStream: true },
        );
      } else {
        stream.once("wantTrailers", () => stream.sendTrailers(status));
        stream.end();
      }
    } catch {
      stream.destroy();
    }
  }
}

function sendOkTrailers(this: http2.ServerHttp2Stream): void {
  this.sendTrailers(OK);
}

/** The trailers of a call ended by `error`, as Connect writes them (`setTrailerStatus`). */
function trailerOf(error: ConnectError): Record<string, string> {
  const trailer: Record<string, string> = {};
  setTrailerStatus(new Headers(), error).forEach((value, name) => {
    trailer[name] = value;
  });
  return trailer;
}

/**
 * The one request message of a body that holds exactly one whole,
 * uncompressed envelope of at most `readMaxBytes` that parses; undefined for
 * any other body (Connect answers those).
 */
function readOneMessage(body: Buffer, readMaxBytes: number, input: DescMessage): MessageShape<DescMessage> | undefined {
  if (body.length < 5) return undefined;
  const size = body.readUInt32BE(1);
  // Only bit 0 of the flags means anything in a request (compressed); Connect ignores the others.
  if (size > readMaxBytes || body.length !== 5 + size || (body[0]! & 1) === 1) return undefined;
  try {
    return fromBinary(input, body.subarray(5));
  } catch {
    return undefined;
  }
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
