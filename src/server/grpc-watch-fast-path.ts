import * as http2 from "node:http2";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  ConnectionState,
  WatchTokenRequestSchema,
  WatchTokenResponseSchema,
} from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import type { TokenBroker } from "../broker/token-broker.js";
import type { WireProtocol } from "../metrics/served-metrics.js";
import { parseSelector } from "../service/parse-request.js";
import { toConnectError } from "../service/to-connect-error.js";
import { toProtoState, toProtoToken } from "../service/to-proto.js";
import type { TokenRecord } from "../token-set.js";
import type { DualHandler } from "./one-port-server.js";
import type { GuardedCall } from "./server-security.js";

const PATH = "/tokenbroker.v1.TokenService/WatchToken";
const CONTENT_TYPES = new Set(["application/grpc", "application/grpc+proto"]);

/** Options for {@link createGrpcWatchFastPath}. */
export interface GrpcWatchFastPathOptions {
  broker: TokenBroker;
  /** Largest request message accepted, bytes (as the Connect handler's `readMaxBytes`). */
  readMaxBytes: number;
  /** Counts one token delivered (`tokenbroker_tokens_served_total`). */
  countServed(rpc: string, protocol: WireProtocol): void;
  /** Gets anything unexpected the broker threw (the caller sees INTERNAL). */
  onInternalError(e: unknown): void;
  /**
   * Checks and records a call as the Connect interceptors do (API key and
   * scope, audit log, debug line): `ServerSecurity.guardCall`.
   */
  guardCall(method: string, authorization: string | undefined, message: unknown): GuardedCall;
}

/**
 * Serves `tokenbroker.v1.TokenService/WatchToken` over gRPC on HTTP/2 without
 * Connect's per-stream chain of async generators: one request message read
 * by hand, one broker subscription, and each update serialized once and the
 * same frame written to every subscriber. Anything else (other RPCs and
 * protocols, compressed requests, deadlines) is left to Connect: the returned
 * function answers false and does not touch the request.
 */
export function createGrpcWatchFastPath(
  options: GrpcWatchFastPathOptions,
): (req: Parameters<DualHandler>[0], res: Parameters<DualHandler>[1]) => boolean {
  // One gRPC frame per stored record: every subscriber of a publish gets the same record object.
  const frames = new WeakMap<TokenRecord, Buffer>();
  const frameOf = (record: TokenRecord): Buffer => {
    let frame = frames.get(record);
    if (!frame) {
      const state = toProtoState(record.state);
      const bytes = toBinary(
        WatchTokenResponseSchema,
        create(WatchTokenResponseSchema, { state, ...(state === ConnectionState.ACTIVE ? { token: toProtoToken(record) } : {}) }),
      );
      frame = Buffer.allocUnsafe(5 + bytes.length);
      frame[0] = 0;
      frame.writeUInt32BE(bytes.length, 1);
      frame.set(bytes, 5);
      frames.set(record, frame);
    }
    return frame;
  };

  return (req, res) => {
    if (!(req instanceof http2.Http2ServerRequest) || req.method !== "POST" || req.url !== PATH) return false;
    const headers = req.headers;
    if (!CONTENT_TYPES.has(String(headers["content-type"] ?? "").toLowerCase())) return false;
    const encoding = headers["grpc-encoding"];
    if ((encoding !== undefined && encoding !== "identity") || headers["grpc-timeout"] !== undefined) return false;
    serve(req, res as http2.Http2ServerResponse, options, frameOf);
    return true;
  };
}

function serve(
  req: http2.Http2ServerRequest,
  res: http2.Http2ServerResponse,
  options: GrpcWatchFastPathOptions,
  frameOf: (record: TokenRecord) => Buffer,
): void {
  const stream = req.stream;
  const abort = new AbortController();
  let headersSent = false;
  let done = false;
  const onClose = () => abort.abort();
  stream.once("close", onClose);

  /** Ends the call with a status: trailers after the messages, or a trailers-only response. */
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
        // The compatibility layer's response sends its trailers on "wantTrailers": hand ours to it.
        res.addTrailers(status);
        stream.end();
      }
    } catch {
      stream.destroy();
    }
  };
  const fail = (e: unknown) => {
    const error = toConnectError(e, options.onInternalError);
    finish(error.code, error.rawMessage);
  };

  const chunks: Buffer[] = [];
  let length = 0;
  req.on("data", (chunk: Buffer) => {
    if (done) return;
    length += chunk.length;
    if (length > options.readMaxBytes + 5) {
      finish(Code.ResourceExhausted, `message size is larger than configured readMaxBytes ${options.readMaxBytes}`);
      return;
    }
    chunks.push(chunk);
  });
  req.once("error", () => abort.abort());
  req.once("end", () => {
    if (done) return;
    const body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
    chunks.length = 0;
    let request;
    try {
      if (body.length < 5) throw new ConnectError("protocol error: missing input message for server-streaming method", Code.Unimplemented);
      if (body[0] !== 0) throw new ConnectError("protocol error: received compressed message without grpc-encoding", Code.Internal);
      const size = body.readUInt32BE(1);
      if (size > options.readMaxBytes) {
        throw new ConnectError(`message size ${size} is larger than configured readMaxBytes ${options.readMaxBytes}`, Code.ResourceExhausted);
      }
      if (body.length !== 5 + size) {
        throw new ConnectError(
          body.length < 5 + size ? "protocol error: incomplete envelope" : "protocol error: received extra input message for server-streaming method",
          body.length < 5 + size ? Code.InvalidArgument : Code.Unimplemented,
        );
      }
      try {
        request = fromBinary(WatchTokenRequestSchema, body.subarray(5));
      } catch (e) {
        throw new ConnectError(`parse binary: ${e instanceof Error ? e.message : String(e)}`, Code.Internal);
      }
    } catch (e) {
      fail(e);
      return;
    }
    void watch(request);
  });

  const watch = async (request: ReturnType<typeof fromBinary<typeof WatchTokenRequestSchema>>) => {
    const authorization = req.headers["authorization"];
    const guard = options.guardCall("WatchToken", typeof authorization === "string" ? authorization : undefined, request);
    try {
      await guard.authorize();
    } catch (e) {
      stream.off("close", onClose);
      fail(e);
      return;
    }
    let error: unknown;
    try {
      const selector = parseSelector(request.selector);
      for await (const record of options.broker.watch(selector, abort.signal)) {
        if (done || stream.destroyed) break;
        if (!headersSent) {
          headersSent = true;
          stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-accept-encoding": "identity" }, { waitForTrailers: true });
        }
        const frame = frameOf(record);
        if (record.state === "active") {
          options.countServed("WatchToken", "grpc");
          guard.sent(record);
        }
        if (!stream.write(frame)) await drained(stream, abort.signal);
      }
    } catch (e) {
      error = toConnectError(e, options.onInternalError);
      fail(error);
      return;
    } finally {
      stream.off("close", onClose);
      if (error === undefined && !abort.signal.aborted) error = new ConnectError("tokenbroker is shutting down; reconnect", Code.Unavailable);
      guard.ended(error);
    }
    if (!abort.signal.aborted) finish(Code.Unavailable, "tokenbroker is shutting down; reconnect");
  };
}

/** Resolves when the stream can take more data, or it closed. */
function drained(stream: http2.ServerHttp2Stream, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      stream.off("drain", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    stream.on("drain", done);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** `grpc-message` is percent-encoded (gRPC over HTTP/2: anything outside printable ASCII, and `%`). */
function encodeMessage(message: string): string {
  return /^[\x20-\x24\x26-\x7e]*$/.test(message) ? message : encodeURIComponent(message);
}
