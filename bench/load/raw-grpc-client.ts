import { connect, constants, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from "node:http2";
import { create, fromBinary, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import {
  GetTokenRequestSchema,
  GetTokenResponseSchema,
  WatchTokenRequestSchema,
  WatchTokenResponseSchema,
  type GetTokenResponse,
  type WatchTokenResponse,
} from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import type { BenchSelector } from "./clients.js";

/** gRPC status codes this client reports itself (when the server sent none, or sent something unreadable). */
const Status = { UNKNOWN: 2, PERMISSION_DENIED: 7, UNIMPLEMENTED: 12, INTERNAL: 13, UNAVAILABLE: 14, UNAUTHENTICATED: 16 };

/** A call that did not end with `grpc-status: 0` and one response message. */
export class GrpcCallError extends Error {
  /** The gRPC status code: the server's `grpc-status`, or one derived as the gRPC spec says for HTTP failures. */
  readonly code: number;

  constructor(code: number, message: string, options?: ErrorOptions) {
    super(`call failed with gRPC status ${code}${message ? `: ${message}` : ""}`, options);
    this.name = "GrpcCallError";
    this.code = code;
  }
}

/** GetToken over gRPC on one HTTP/2 connection of its own. */
export interface RawGrpcClient {
  /** Asks for the token of `selector`; rejects with a {@link GrpcCallError} on any non-OK outcome. */
  getToken(selector: BenchSelector): Promise<GetTokenResponse>;
  /** A long poll: GetToken with `newer_than` and `wait`; answered when a newer token is stored or the wait runs out. */
  longPoll(selector: BenchSelector, newerThan: number, waitMs: number): Promise<GetTokenResponse>;
  /**
   * Opens a WatchToken stream; `onMessage` gets each message as it arrives.
   * Resolves when the stream ends with OK or `signal` cancels it; rejects
   * with a {@link GrpcCallError} otherwise.
   */
  watchToken(selector: BenchSelector, onMessage: (message: WatchTokenResponse) => void, signal: AbortSignal): Promise<void>;
  /** Closes the connection once its calls have ended. */
  close(): void;
}

// Node copies the headers object on every request, so one object serves all calls.
const REQUEST_HEADERS = {
  ":method": "POST",
  ":path": "/tokenbroker.v1.TokenService/GetToken",
  "content-type": "application/grpc",
  te: "trailers",
};

/**
 * A minimal gRPC client for GetToken and WatchToken, on `node:http2` alone,
 * for `baseUrl` (e.g. `http://127.0.0.1:PORT`): one `http2.connect` session,
 * one stream per call, protobuf-es for the messages. It exists for the refresh
 * storm and the fan-out: in production their 1,000 callers and 10,000
 * subscribers are many processes on several hosts, but the bench emulates
 * them all in one Node process, where connect-node's gRPC client costs about
 * 500 µs of CPU a call (grpc-js 250–400 µs) — longer, for 1,000 calls, than
 * the 250 ms target itself. With the leanest correct client those scenarios
 * measure the server, not a client library.
 *
 * It sends no `grpc-accept-encoding`, so it rejects a compressed response;
 * the encoded request is cached per selector (the bench uses a handful).
 */
export function createRawGrpcClient(baseUrl: string): RawGrpcClient {
  const session = connect(baseUrl);
  // A failed connection fails each of its streams, and so each call; without a listener it would also crash the process.
  session.on("error", () => {});
  const requests = new Map<string, Buffer>();
  return {
    getToken(selector) {
      const key = `${selector.case}:${selector.value}`;
      let body = requests.get(key);
      if (!body) {
        body = envelope(toBinary(GetTokenRequestSchema, create(GetTokenRequestSchema, { selector })));
        requests.set(key, body);
      }
      return unaryCall(session, body);
    },
    longPoll(selector, newerThan, waitMs) {
      const key = `${selector.case}:${selector.value}:${newerThan}:${waitMs}`;
      let body = requests.get(key);
      if (!body) {
        const wait = { seconds: BigInt(Math.floor(waitMs / 1000)), nanos: (waitMs % 1000) * 1_000_000 };
        body = envelope(toBinary(GetTokenRequestSchema, create(GetTokenRequestSchema, { selector, newerThan: BigInt(newerThan), wait })));
        requests.set(key, body);
      }
      return unaryCall(session, body);
    },
    watchToken(selector, onMessage, signal) {
      return streamCall(
        session,
        envelope(toBinary(WatchTokenRequestSchema, create(WatchTokenRequestSchema, { selector }))),
        onMessage,
        signal,
      );
    },
    close: () => session.close(),
  };
}

/** One unary call: sends `body` (an enveloped request), settles when the stream closes. */
function unaryCall(session: ClientHttp2Session, body: Buffer): Promise<GetTokenResponse> {
  return new Promise((resolve, reject) => {
    const stream = session.request(REQUEST_HEADERS);
    const chunks: Buffer[] = [];
    const status = new CallStatus(stream);
    let streamError: Error | undefined;
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("error", (e: Error) => (streamError = e));
    const done = () => {
      try {
        resolve(settle(status, chunks, stream.rstCode, streamError));
      } catch (e) {
        reject(e);
      }
    };
    // The call is answered when the response ends, after its trailers (as grpc-js settles a call on its
    // status); Node emits "close" later, once the stream is torn down. A stream reset or a failed
    // connection has no "end": "close" settles those.
    stream.once("end", done);
    stream.on("close", done);
    stream.end(body);
  });
}

const WATCH_HEADERS = { ...REQUEST_HEADERS, ":path": "/tokenbroker.v1.TokenService/WatchToken" };

/** One server-streaming WatchToken call: each whole message to `onMessage` as its bytes arrive. */
function streamCall(
  session: ClientHttp2Session,
  body: Buffer,
  onMessage: (message: WatchTokenResponse) => void,
  signal: AbortSignal,
): Promise<void> {
  return new Promise((resolve, reject) => {
    const stream = session.request(WATCH_HEADERS);
    let pending: Buffer | undefined;
    const status = new CallStatus(stream);
    let failure: GrpcCallError | undefined;
    const onAbort = () => stream.close(constants.NGHTTP2_CANCEL);
    signal.addEventListener("abort", onAbort, { once: true });
    stream.on("data", (chunk: Buffer) => {
      let data = pending ? Buffer.concat([pending, chunk]) : chunk;
      while (data.length >= 5 && data.length >= 5 + data.readUInt32BE(1)) {
        const size = data.readUInt32BE(1);
        if ((data[0]! & 1) !== 0) failure ??= new GrpcCallError(Status.INTERNAL, "compressed message, though none was accepted");
        else {
          try {
            onMessage(decodeOnce(watchTokenResponses, WatchTokenResponseSchema, data.subarray(5, 5 + size)));
          } catch (e) {
            failure ??= new GrpcCallError(Status.INTERNAL, "unreadable response message", { cause: e });
          }
        }
        data = data.subarray(5 + size);
      }
      pending = data.length > 0 ? data : undefined;
    });
    stream.on("error", () => {});
    stream.on("close", () => {
      signal.removeEventListener("abort", onAbort);
      if (signal.aborted) return resolve();
      if (failure) return reject(failure);
      if (pending) return reject(new GrpcCallError(Status.INTERNAL, "stream ended inside a message"));
      const error = status.error(stream.rstCode);
      if (error) return reject(error);
      resolve();
    });
    stream.end(body);
  });
}

/** A call's HTTP status and gRPC status, from its response headers (a trailers-only response) or its trailers. */
class CallStatus {
  private http = 0;
  private grpc: string | undefined;
  private message = "";

  constructor(stream: ClientHttp2Stream) {
    // A trailers-only response (an error before any message) carries the status in its headers.
    stream.on("response", (headers) => {
      this.http = Number(headers[":status"]);
      this.read(headers);
    });
    stream.on("trailers", (headers) => this.read(headers));
  }

  /** The error the call ended with, or undefined if it ended OK (`rstCode` and `cause`: how its stream ended). */
  error(rstCode: number | undefined, cause?: Error): GrpcCallError | undefined {
    const options = cause ? { cause } : undefined;
    if (this.grpc === undefined) {
      if (this.http !== 0 && this.http !== 200) return new GrpcCallError(codeOfHttpStatus(this.http), `HTTP ${this.http}`, options);
      const reset = rstCode ? ` (RST_STREAM code ${rstCode})` : "";
      return new GrpcCallError(Status.INTERNAL, `stream closed without grpc-status${reset}`, options);
    }
    const code = Number(this.grpc);
    if (!Number.isInteger(code)) return new GrpcCallError(Status.UNKNOWN, `invalid grpc-status "${this.grpc}"`);
    return code === 0 ? undefined : new GrpcCallError(code, this.message);
  }

  private read(headers: IncomingHttpHeaders): void {
    const s = headers["grpc-status"];
    if (s === undefined) return;
    this.grpc = String(s);
    this.message = decodeMessage(String(headers["grpc-message"] ?? ""));
  }
}

/** The response message of a finished call, or the {@link GrpcCallError} it ended with. */
function settle(status: CallStatus, chunks: Buffer[], rstCode: number | undefined, cause: Error | undefined): GetTokenResponse {
  const error = status.error(rstCode, cause);
  if (error) throw error;
  const data = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
  if (data.length < 5) throw new GrpcCallError(Status.INTERNAL, "OK status without a response message");
  if ((data[0]! & 1) !== 0) throw new GrpcCallError(Status.INTERNAL, "compressed response, though none was accepted");
  const length = data.readUInt32BE(1);
  if (data.length !== 5 + length) {
    throw new GrpcCallError(Status.INTERNAL, `expected one response message of ${length} bytes, got ${data.length - 5} bytes`);
  }
  try {
    return decodeOnce(getTokenResponses, GetTokenResponseSchema, data.subarray(5));
  } catch (e) {
    throw new GrpcCallError(Status.INTERNAL, "unreadable response message", { cause: e });
  }
}

/** The last message decoded from a schema's bytes (see {@link decodeOnce}). */
interface Decoded<T> {
  bytes: Buffer | undefined;
  message: T | undefined;
}

const getTokenResponses: Decoded<GetTokenResponse> = { bytes: undefined, message: undefined };
const watchTokenResponses: Decoded<WatchTokenResponse> = { bytes: undefined, message: undefined };

/**
 * Decodes `bytes`, or returns the message decoded last if `bytes` are the
 * same bytes (compared in full). A storm's 1,000 callers, or a fan-out's
 * 10,000 subscribers, receive one token: each compares what it received with
 * what was decoded, as 1,000 client processes would each decode their own.
 * protobuf-es's `fromBinary` costs ~20 µs for a Token, which, multiplied by
 * callers that all live in this one process, would be the client's time, not
 * the server's. The returned message is shared: callers only read it.
 */
function decodeOnce<S extends DescMessage>(last: Decoded<MessageShape<S>>, schema: S, bytes: Buffer): MessageShape<S> {
  if (last.message !== undefined && last.bytes?.equals(bytes)) return last.message;
  const message = fromBinary(schema, bytes);
  last.bytes = Buffer.from(bytes); // a copy: the received chunk's memory may be reused
  last.message = message;
  return message;
}

/** `message` in a gRPC envelope: an uncompressed flag byte and its length, big-endian. */
function envelope(message: Uint8Array): Buffer {
  const framed = Buffer.allocUnsafe(5 + message.length);
  framed[0] = 0;
  framed.writeUInt32BE(message.length, 1);
  framed.set(message, 5);
  return framed;
}

/** `grpc-message` is percent-encoded; a malformed one is shown as sent. */
function decodeMessage(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/** The gRPC status of an HTTP error without one (gRPC's "HTTP to gRPC status code mapping"). */
function codeOfHttpStatus(status: number): number {
  switch (status) {
    case 400:
      return Status.INTERNAL;
    case 401:
      return Status.UNAUTHENTICATED;
    case 403:
      return Status.PERMISSION_DENIED;
    case 404:
      return Status.UNIMPLEMENTED;
    case 429:
    case 502:
    case 503:
    case 504:
      return Status.UNAVAILABLE;
    default:
      return Status.UNKNOWN;
  }
}
