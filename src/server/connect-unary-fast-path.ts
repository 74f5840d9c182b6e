import type * as http from "node:http";
import type * as http2 from "node:http2";
import type { DescMessage, DescService, Message } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  compressionNegotiate,
  createDeadlineSignal,
  createMethodSerializationLookup,
  validateReadWriteMaxBytes,
  type Compression,
  type MethodSerializationLookup,
} from "@connectrpc/connect/protocol";
import {
  codeToHttpStatus,
  contentTypeUnaryJson,
  contentTypeUnaryProto,
  errorToJsonBytes,
  headerTimeout,
  headerUnaryAcceptEncoding,
  headerUnaryEncoding,
  parseContentType,
  parseTimeout,
} from "@connectrpc/connect/protocol-connect";
import type { CancelSignal } from "../broker/abortable.js";
import type { CallGuard, GuardedCall } from "./call-guard.js";
import { MAX_DEADLINE_MS, clampConnectTimeout } from "./deadline-headers.js";
import type { FastAnswer, FastCall, FastMethod, FastUnaryMethod, Http2StreamHandler } from "./grpc-fast-path.js";
import { holdUntilClosed } from "./held-connections.js";
import type { DualHandler } from "./one-port-server.js";

/**
 * Serves, the way Connect does, a unary call the fast path took but whose
 * body it does not answer (a body that does not parse, or longer than
 * announced or allowed): `body` is what was read of it, `call` its guard,
 * which checked its headers. See `connectFallback`.
 */
export interface ConnectUnaryFallback {
  h1(req: http.IncomingMessage, res: http.ServerResponse, body: Uint8Array, call: GuardedCall): void;
  h2(stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders, body: Uint8Array, call: GuardedCall): void;
}

/** Options for {@link createConnectUnaryFastPath}. */
export interface ConnectUnaryFastPathOptions {
  /** The service whose unary methods are served (`tokenbroker.v1.TokenService`). */
  service: DescService;
  /** The methods, by request path (`/package.Service/Method`); only the unary ones are served. */
  methods: ReadonlyMap<string, FastMethod>;
  /** The port's guard: every call runs its steps, as on the Connect path (`guardInterceptor`). */
  guard: CallGuard;
  /** As the Connect handler's options (`connectNodeAdapter`): the same limits and compression. */
  readMaxBytes: number;
  compressMinBytes: number;
  acceptCompression: readonly Compression[];
  /** Answers bodies the fast path does not (see {@link ConnectUnaryFallback}). */
  fallback: ConnectUnaryFallback;
  /** Gets anything a method threw that is not a `ConnectError` (the caller sees INTERNAL). */
  onInternalError(e: unknown): void;
  /** Added to every HTTP/2 response's headers (HTTP/1.1 responses get the port's from `listenOnePort`). */
  responseHeaders?: http2.OutgoingHttpHeaders;
}

/** The Connect unary fast path; see {@link createConnectUnaryFastPath}. */
export interface ConnectUnaryFastPath {
  /** Takes the HTTP/2 streams of the calls it serves (see `OnePortOptions.streamHandler`). */
  readonly stream: Http2StreamHandler;
  /** `next`, with the HTTP/1.1 requests of the calls it serves taken first. */
  requests(next: DualHandler): DualHandler;
}

/** One served method: its guard name, implementation and Connect's serialization of its messages. */
interface Route {
  readonly name: string;
  readonly method: FastUnaryMethod;
  readonly serialization: MethodSerializationLookup<DescMessage, DescMessage>;
}

/** What a call's headers decided (see {@link accept}). */
interface Accepted {
  readonly route: Route;
  readonly binary: boolean;
  /** `content-length`, if given. */
  readonly length: number | undefined;
  readonly timeoutMs: number | undefined;
}

/** What every call of one fast path shares. */
interface Shared {
  readonly options: ConnectUnaryFastPathOptions;
  readonly readMaxBytes: number;
  readonly writeMaxBytes: number;
  /** The JSON of each answer, made once for all the callers it is sent to. */
  readonly json: WeakMap<FastAnswer, Uint8Array>;
}

const CONTENT_LENGTH = /^\d{1,10}$/;
const TIMEOUT = headerTimeout.toLowerCase();
const ENCODING = headerUnaryEncoding.toLowerCase();
const ACCEPT_ENCODING = headerUnaryAcceptEncoding.toLowerCase();
const CANCELLED = new ConnectError("the call was cancelled", Code.Canceled);

/**
 * Serves the TokenService's unary Connect calls (GetToken, ReportExpired;
 * JSON and binary; HTTP/1.1 and HTTP/2) without connect-node's per-call
 * machinery (universal request and response objects, `Headers`, abort
 * controllers, async iterables, the interceptor chain), on connect-es's own
 * protocol pieces (content types, `connect-timeout-ms` parsing and deadline
 * signal, message serialization, error JSON, code → HTTP status, response
 * compression) and through the same guard steps as the Connect path. Each
 * answer's JSON is made once however many calls it is sent to.
 *
 * It takes a call only when connect-node would serve it in full from what
 * it is given: a POST of a unary content type, uncompressed, with a valid
 * deadline if any and a `content-length` within `readMaxBytes` if any.
 * Everything else (streams, GET, compression, other content types and
 * paths) goes on to connect-node; a body that does not parse, or runs past
 * its length or the limit, is handed to `fallback` (Connect's handler), so
 * every malformed call gets Connect's answer, not a copy of it.
 *
 * `npm run bench` (cached GetToken, h2load) measured connect-node at half
 * again the broker's own CPU per Connect call: this path is what keeps the
 * broker near a plain connect-node server with its guard on.
 */
export function createConnectUnaryFastPath(options: ConnectUnaryFastPathOptions): ConnectUnaryFastPath {
  const limits = validateReadWriteMaxBytes(options.readMaxBytes, undefined, options.compressMinBytes);
  const routes = new Map<string, Route>();
  for (const [path, method] of options.methods) {
    if (method.kind !== "unary") continue;
    const name = path.slice(path.lastIndexOf("/") + 1);
    const desc = options.service.methods.find((m) => m.name === name);
    if (!desc || `/${options.service.typeName}/${name}` !== path) throw new Error(`${path} is not a method of ${options.service.typeName}`);
    routes.set(path, { name, method, serialization: createMethodSerializationLookup(desc, undefined, undefined, limits) });
  }
  const shared: Shared = { options, readMaxBytes: limits.readMaxBytes, writeMaxBytes: limits.writeMaxBytes, json: new WeakMap() };
  return {
    stream(stream, headers) {
      const accepted = accept(routes, shared.readMaxBytes, headers[":method"], headers[":path"], headers);
      if (!accepted) return false;
      new H2Call(stream, headers, start(options.guard, accepted, headers), accepted, shared);
      return true;
    },
    requests(next) {
      return (req, res) => {
        const accepted = req.httpVersionMajor === 1 ? accept(routes, shared.readMaxBytes, req.method, req.url, req.headers) : undefined;
        if (!accepted) {
          next(req, res);
          return;
        }
        new H1Call(req as http.IncomingMessage, res as http.ServerResponse, start(options.guard, accepted, req.headers), accepted, shared);
      };
    },
  };
}

/** The call's route and format if the fast path serves it (see {@link createConnectUnaryFastPath}); undefined leaves it to connect-node. */
function accept(
  routes: ReadonlyMap<string, Route>,
  readMaxBytes: number,
  method: string | undefined,
  path: string | undefined,
  headers: http.IncomingHttpHeaders,
): Accepted | undefined {
  if (method !== "POST" || path === undefined) return undefined;
  const route = routes.get(path);
  if (!route) return undefined;
  const type = parseContentType(headers["content-type"] ?? null);
  if (!type || type.stream) return undefined;
  const encoding = headers[ENCODING];
  if (encoding !== undefined && encoding !== "identity") return undefined;
  let length: number | undefined;
  const contentLength = headers["content-length"];
  if (contentLength !== undefined) {
    if (!CONTENT_LENGTH.test(contentLength)) return undefined;
    length = Number(contentLength);
    if (length > readMaxBytes) return undefined; // Connect refuses it before reading it
  }
  let timeoutMs: number | undefined;
  const timeout = headers[TIMEOUT];
  if (timeout !== undefined) {
    const parsed = parseTimeout(clampConnectTimeout(String(timeout)), MAX_DEADLINE_MS);
    if (parsed.error) return undefined; // Connect answers it with its own error
    timeoutMs = parsed.timeoutMs;
  }
  return { route, binary: type.binary, length, timeoutMs };
}

function start(guard: CallGuard, accepted: Accepted, headers: http.IncomingHttpHeaders): GuardedCall {
  const authorization = headers["authorization"];
  return guard.start({
    method: accepted.route.name,
    protocol: "connect",
    authorization: typeof authorization === "string" ? authorization : undefined,
  });
}

/** A response: status, headers (lower-case names) and body. */
interface Answer {
  status: number;
  headers: Record<string, string>;
  body: Uint8Array;
}

/**
 * One unary call, from its request's first bytes to its answer; the
 * transport (HTTP/1.1 or HTTP/2) reads and writes it in {@link H1Call} and
 * {@link H2Call}.
 */
abstract class UnaryCall implements FastCall, CancelSignal {
  private abortListeners: Array<() => void> | undefined;
  private abortReason: unknown;
  private deadline: ReturnType<typeof createDeadlineSignal> | undefined;
  /** Answered, handed to the fallback, or closed by the client: nothing more is done. */
  protected done = false;
  /** The request was read and handed on (to the method, or to the fallback). */
  private started = false;
  private chunks: Buffer[] = [];
  private length = 0;
  private closedEarly = false;

  constructor(
    readonly guarded: GuardedCall,
    private readonly accepted: Accepted,
    protected readonly shared: Shared,
  ) {}

  /** Starts the call once the transport listens: the headers' checks first (the key), then the body. */
  protected begin(): void {
    const { timeoutMs } = this.accepted;
    if (timeoutMs !== undefined) {
      const deadline = createDeadlineSignal(timeoutMs);
      this.deadline = deadline;
      if (deadline.signal.aborted) this.abort(deadline.signal.reason);
      else deadline.signal.addEventListener("abort", () => this.abort(deadline.signal.reason), { once: true });
    }
    const checked = this.guarded.authenticate();
    if (checked)
      checked.then(
        () => this.read(),
        (e: unknown) => this.refuse(ConnectError.from(e)),
      );
    else this.read();
  }

  /** Starts reading the body. */
  protected abstract read(): void;
  /** Writes the answer. */
  protected abstract write(answer: Answer): void;
  /** Answers a call refused before its body was read; what the client still sends is dropped. */
  protected abstract writeRefusal(answer: Answer): void;
  /** Hands the call to Connect's handler with the body read so far. */
  protected abstract toConnect(body: Uint8Array): void;

  /** The call is its own signal (see {@link FastCall.signal}). */
  get signal(): CancelSignal {
    return this;
  }

  get aborted(): boolean {
    return this.abortReason !== undefined || this.closedEarly;
  }

  get reason(): unknown {
    return this.abortReason ?? (this.closedEarly ? CANCELLED : undefined);
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

  /** Keeps the connection open past its idle timeout until the answer (a long poll waits up to 60 s). */
  abstract holdConnection(): void;

  private abort(reason: unknown): void {
    this.abortReason ??= reason;
    const aborted = this.abortListeners;
    this.abortListeners = undefined;
    if (aborted) for (const listener of aborted) listener();
  }

  /** The client went away before the answer: what waits is let go, and the call ends CANCELED. */
  closed(): void {
    this.deadline?.cleanup();
    if (this.done) return;
    this.done = true;
    this.closedEarly = true;
    this.guarded.ended(CANCELLED);
    this.abort(CANCELLED);
  }

  data(chunk: Buffer): void {
    if (this.done || this.started) return;
    this.length += chunk.length;
    this.chunks.push(chunk);
    // Past the limit or the announced length: Connect's answer is decided by the bytes read so far.
    if (this.length > this.shared.readMaxBytes || this.length > (this.accepted.length ?? Infinity)) this.fallBack();
  }

  ended(): void {
    if (this.done || this.started) return;
    if (this.length !== (this.accepted.length ?? this.length)) return this.fallBack(); // shorter than announced
    const body = this.body();
    let request: Message;
    try {
      request = this.accepted.route.serialization.getI(this.accepted.binary).parse(body);
    } catch {
      return this.fallBack(body);
    }
    this.started = true;
    const authorized = this.guarded.authorize(request);
    if (authorized)
      authorized.then(
        () => this.run(request),
        (e: unknown) => this.fail(e),
      );
    else this.run(request);
  }

  private body(): Buffer {
    const chunks = this.chunks;
    this.chunks = [];
    return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  }

  private fallBack(body: Uint8Array = this.body()): void {
    this.started = true;
    this.done = true;
    this.deadline?.cleanup();
    this.toConnect(body);
  }

  private run(request: Parameters<FastUnaryMethod["handle"]>[0]): void {
    if (this.done) return;
    this.accepted.route.method.handle(request, this).then(
      (answer) => this.answer(answer),
      (e: unknown) => this.fail(e),
    );
  }

  private answer(answer: FastAnswer): void {
    if (this.done) return;
    let body: Uint8Array;
    try {
      body = this.accepted.binary ? answer.bytes : this.jsonOf(answer);
    } catch (e) {
      return this.fail(e);
    }
    this.done = true;
    this.deadline?.cleanup();
    this.guarded.sent(answer.token);
    this.guarded.ended();
    const headers = { "content-type": this.accepted.binary ? contentTypeUnaryProto : contentTypeUnaryJson };
    this.compressed({ status: 200, headers, body });
  }

  private jsonOf(answer: FastAnswer): Uint8Array {
    const json = this.shared.json.get(answer);
    if (json) return json;
    const made = this.accepted.route.serialization.getO(false).serialize(answer.message);
    this.shared.json.set(answer, made);
    return made;
  }

  /** Ends the call with `e`, answered as Connect answers a unary error, the guard told of it. */
  private fail(e: unknown): void {
    if (this.done) return;
    this.done = true;
    this.deadline?.cleanup();
    const error = e instanceof ConnectError ? e : internal(e, this.shared.options);
    this.guarded.ended(error);
    this.compressed(errorAnswer(error));
  }

  /** A refusal by the guard's header checks (the key): answered at once, the body left unread. */
  private refuse(error: ConnectError): void {
    if (this.done) return;
    this.done = true;
    this.deadline?.cleanup();
    const answer = errorAnswer(error);
    answer.headers["content-length"] = String(answer.body.byteLength);
    this.writeRefusal(answer);
  }

  /** Writes `answer`, compressed as Connect would (a body of `compressMinBytes` or more, to a client that accepts it). */
  private compressed(answer: Answer): void {
    const { options } = this.shared;
    if (answer.body.byteLength < options.compressMinBytes) return this.send(answer);
    const accepted = this.header(ACCEPT_ENCODING);
    const compression = compressionNegotiate([...options.acceptCompression], null, accepted ?? null, headerUnaryAcceptEncoding).response;
    if (!compression) return this.send(answer);
    compression.compress(answer.body).then(
      (body) => this.send({ ...answer, headers: { ...answer.headers, [ENCODING]: compression.name }, body }),
      (e: unknown) => this.send(errorAnswer(internal(e, options))),
    );
  }

  private send(answer: Answer): void {
    answer.headers["content-length"] = String(answer.body.byteLength);
    this.write(answer);
  }

  /** A request header, as one string. */
  protected abstract header(name: string): string | undefined;
}

/** A unary error as Connect answers it: its HTTP status, JSON, and its metadata as headers. */
function errorAnswer(error: ConnectError): Answer {
  const headers: Record<string, string> = {};
  error.metadata.forEach((value, name) => {
    headers[name] = value;
  });
  headers["content-type"] = contentTypeUnaryJson;
  return { status: codeToHttpStatus(error.code), headers, body: errorToJsonBytes(error, undefined) };
}

function internal(e: unknown, options: ConnectUnaryFastPathOptions): ConnectError {
  options.onInternalError(e);
  return new ConnectError("internal error", Code.Internal);
}

const CALL = Symbol("tokenbroker.connectUnaryCall");
type Carrier = { [CALL]?: UnaryCall };

// Shared listeners that find their call on the stream or request (`this`): no closures per call.
function ignore(): void {}
function onData(this: Carrier, chunk: Buffer): void {
  this[CALL]?.data(chunk);
}
function onEnd(this: Carrier): void {
  this[CALL]?.ended();
}
function onClose(this: Carrier): void {
  this[CALL]?.closed();
}

/** A call over HTTP/1.1: Node's request and response objects, which plain connect-node gets too. */
class H1Call extends UnaryCall {
  holdConnection(): void {
    if (!this.res.destroyed) holdUntilClosed(this.req.socket, this.res);
  }

  constructor(
    private readonly req: http.IncomingMessage & Carrier,
    private readonly res: http.ServerResponse & Carrier,
    guarded: GuardedCall,
    accepted: Accepted,
    shared: Shared,
  ) {
    super(guarded, accepted, shared);
    req[CALL] = this;
    res[CALL] = this;
    req.on("error", ignore); // a reset is also the response's close
    res.once("close", onClose);
    this.begin();
  }

  protected read(): void {
    if (this.done) return;
    this.req.on("data", onData);
    this.req.once("end", onEnd);
  }

  protected header(name: string): string | undefined {
    const value = this.req.headers[name];
    return Array.isArray(value) ? value.join(", ") : value;
  }

  protected write(answer: Answer): void {
    if (this.res.destroyed) return;
    this.res.writeHead(answer.status, answer.headers);
    this.res.end(answer.body);
  }

  protected writeRefusal(answer: Answer): void {
    // The unread body would follow on the connection: it closes after the answer instead.
    this.write({ ...answer, headers: { ...answer.headers, connection: "close" } });
  }

  protected toConnect(body: Uint8Array): void {
    delete this.req[CALL];
    delete this.res[CALL];
    this.req.off("data", onData);
    this.req.resume(); // what the client still sends is dropped
    this.shared.options.fallback.h1(this.req, this.res, body, this.guarded);
  }
}

/** A call over HTTP/2: the stream itself, without Node's compatibility request and response objects. */
class H2Call extends UnaryCall {
  holdConnection(): void {
    const session = this.stream.session;
    if (session && !this.stream.closed) holdUntilClosed(session, this.stream);
  }

  constructor(
    private readonly stream: http2.ServerHttp2Stream & Carrier,
    private readonly headers: http2.IncomingHttpHeaders,
    guarded: GuardedCall,
    accepted: Accepted,
    shared: Shared,
  ) {
    super(guarded, accepted, shared);
    stream[CALL] = this;
    stream.on("error", ignore); // a reset is also a close
    stream.once("close", onClose);
    this.begin();
  }

  protected read(): void {
    if (this.done) return;
    this.stream.on("data", onData);
    this.stream.once("end", onEnd);
  }

  protected header(name: string): string | undefined {
    const value = this.headers[name];
    return Array.isArray(value) ? value.join(", ") : value;
  }

  protected write(answer: Answer): void {
    const stream = this.stream;
    if (stream.destroyed || stream.closed) return;
    try {
      stream.respond({ ":status": answer.status, ...this.shared.options.responseHeaders, ...answer.headers });
      stream.end(answer.body);
    } catch {
      stream.destroy(); // closed by its session meanwhile: the caller is gone
    }
  }

  protected writeRefusal(answer: Answer): void {
    this.write(answer);
    this.stream.resume(); // what the client still sends is dropped
  }

  protected toConnect(body: Uint8Array): void {
    delete this.stream[CALL];
    this.stream.off("data", onData);
    this.shared.options.fallback.h2(this.stream, this.headers, body, this.guarded);
  }
}
