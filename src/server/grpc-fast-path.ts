import type * as http2 from "node:http2";
import { create, fromBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";

/** What a fast-path method gets besides its request message. */
export interface FastCall {
  /** Aborted when the client cancels the call or its connection closes. */
  readonly signal: AbortSignal;
  /** The request's `authorization` header, if it has one. */
  readonly authorization: string | undefined;
  /**
   * Server-streaming calls only: the request held no message or more than one
   * (`request` is then empty). Connect raises this in the handler, after its
   * interceptors have checked the API key and started the debug line: throw it
   * after the same checks.
   */
  readonly protocolError: ConnectError | undefined;
}

/** A unary method: one request message, one response message. */
export interface FastUnaryMethod<I extends DescMessage = DescMessage> {
  readonly kind: "unary";
  readonly input: I;
  /**
   * Answers with the response message's serialized bytes; throws a
   * `ConnectError` to answer with its status. Returning the same `Uint8Array`
   * object again reuses its gRPC frame.
   */
  handle(request: MessageShape<I>, call: FastCall): Promise<Uint8Array>;
}

/** A server-streaming method: one request message, any number of response messages. */
export interface FastServerStreamingMethod<I extends DescMessage = DescMessage> {
  readonly kind: "server_streaming";
  readonly input: I;
  /**
   * Sends response messages (serialized bytes) with `send`, which resolves
   * when the stream can take more. The call ends OK when `handle` returns,
   * with the status of the `ConnectError` it throws otherwise.
   */
  handle(request: MessageShape<I>, call: FastCall, send: (message: Uint8Array) => Promise<void>): Promise<void>;
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
}

/** Takes an HTTP/2 stream (returns true) or leaves it alone (returns false); see `OnePortOptions.streamHandler`. */
export type Http2StreamHandler = (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => boolean;

const CONTENT_TYPES = new Set(["application/grpc", "application/grpc+proto"]);
const OK = { "grpc-status": "0" };

/** Runs `task` once the event loop has turned (one `setImmediate` for every task of a turn). */
const afterThisTurn = (() => {
  let tasks: Array<() => void> = [];
  const run = () => {
    const due = tasks;
    tasks = [];
    for (const task of due) task();
  };
  return (task: () => void) => {
    if (tasks.push(task) === 1) setImmediate(run);
  };
})();

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
      frame = Buffer.allocUnsafe(5 + message.length);
      frame[0] = 0;
      frame.writeUInt32BE(message.length, 1);
      frame.set(message, 5);
      frames.set(message, frame);
    }
    return frame;
  };

  return (stream, headers) => {
    if (headers[":method"] !== "POST") return false;
    const method = options.methods.get(String(headers[":path"]));
    if (!method) return false;
    if (!CONTENT_TYPES.has(String(headers["content-type"] ?? "").toLowerCase())) return false;
    const encoding = headers["grpc-encoding"];
    if ((encoding !== undefined && encoding !== "identity") || headers["grpc-timeout"] !== undefined) return false;
    const authorization = headers["authorization"];
    serve(stream, typeof authorization === "string" ? authorization : undefined, method, options, frameOf);
    return true;
  };
}

function serve(
  stream: http2.ServerHttp2Stream,
  authorization: string | undefined,
  method: FastMethod,
  options: GrpcFastPathOptions,
  frameOf: (message: Uint8Array) => Buffer,
): void {
  let abort: AbortController | undefined;
  const call: FastCall = {
    // Made on first use: most unary calls end without anyone listening.
    get signal() {
      abort ??= new AbortController();
      if (done || stream.destroyed) abort.abort();
      return abort.signal;
    },
    authorization,
    protocolError: undefined,
  };
  let headersSent = false;
  let done = false;
  // A reset by the client (or a broken connection) surfaces as "error" then "close": only "close" matters.
  stream.on("error", () => {});
  stream.once("close", () => {
    if (done) return; // answered: nobody is left to cancel (and an abort's DOMException is not free)
    done = true;
    abort?.abort();
  });

  const respond = () => {
    if (headersSent) return;
    headersSent = true;
    stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-accept-encoding": "identity" }, { waitForTrailers: true });
  };
  /** Ends the call: trailers after the messages, or a trailers-only response. */
  const finish = (code: Code | 0, message: string) => {
    if (done) return;
    done = true;
    if (stream.destroyed || stream.closed) return;
    const status = { "grpc-status": String(code), ...(message ? { "grpc-message": encodeMessage(message) } : {}) };
    try {
      if (!headersSent) {
        headersSent = true;
        stream.respond({ ":status": 200, "content-type": "application/grpc", ...status }, { endStream: true });
      } else {
        stream.once("wantTrailers", () => stream.sendTrailers(status));
        stream.end();
      }
    } catch {
      stream.destroy();
    }
  };
  const fail = (e: unknown) => {
    const error = e instanceof ConnectError ? e : internal(e, options);
    finish(error.code, error.rawMessage);
  };

  const chunks: Buffer[] = [];
  let length = 0;
  // Flowing from here: after the call has ended, the rest of an oversized body is read and dropped.
  let started = false;
  const onData = (chunk: Buffer) => {
    if (done || started) return;
    length += chunk.length;
    chunks.push(chunk);
    // Two whole envelopes of at most readMaxBytes decide any body's answer (see readRequest): no need to read on.
    if (length > 2 * (options.readMaxBytes + 5)) {
      const head = Buffer.concat(chunks);
      chunks.length = 0;
      try {
        readRequest(head, method.kind, options.readMaxBytes, method.input);
        finish(Code.ResourceExhausted, `message size is larger than configured readMaxBytes ${options.readMaxBytes}`);
      } catch (e) {
        if (method.kind === "server_streaming" && e instanceof ConnectError && e.code === Code.Unimplemented) start(e);
        else fail(e);
      }
    }
  };
  stream.on("data", onData);
  stream.once("end", () => {
    stream.off("data", onData); // nothing more comes: a stream that stays open for hours holds no reader
    if (done || started) return;
    let request: MessageShape<DescMessage>;
    try {
      request = readRequest(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks), method.kind, options.readMaxBytes, method.input);
    } catch (e) {
      if (method.kind === "server_streaming" && e instanceof ConnectError && e.code === Code.Unimplemented) start(e);
      else fail(e);
      return;
    }
    chunks.length = 0;
    start(undefined, request);
  });
  const start = (protocolError: ConnectError | undefined, request: MessageShape<DescMessage> = create(method.input)) => {
    started = true;
    Object.assign(call, { protocolError });
    if (method.kind === "unary") {
      let answered = false;
      method.handle(request, call).then(
        (message) => {
          answered = true;
          if (done || stream.destroyed) return;
          done = true;
          respond();
          stream.once("wantTrailers", () => stream.sendTrailers(OK));
          stream.end(frameOf(message));
        },
        (e: unknown) => {
          answered = true;
          fail(e);
        },
      );
      // Still running when the event loop turns: it waits (for a refresh, say). Its response headers go
      // out now, so that when the answer comes, a storm of waiting calls costs a frame and trailers each.
      afterThisTurn(() => {
        if (!answered && !done && !stream.destroyed) respond();
      });
      return;
    }
    const send = async (message: Uint8Array): Promise<void> => {
      if (done || stream.destroyed) return;
      respond();
      if (!stream.write(frameOf(message))) await drained(stream);
    };
    method.handle(request, call, send).then(() => finish(0, ""), fail);
  };
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
