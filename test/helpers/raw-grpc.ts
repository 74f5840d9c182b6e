import * as http2 from "node:http2";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  GetTokenRequestSchema,
  ReportExpiredRequestSchema,
  WatchTokenRequestSchema,
} from "../../gen/ts/tokenbroker/v1/token_service_pb.js";

/** A TokenService method, by name. */
export type TokenMethod = "GetToken" | "ReportExpired" | "WatchToken";

/** The `selector` oneof of every TokenService request. */
export type RawSelector = { case: "tenantId" | "connectionId"; value: string } | undefined;

/**
 * Headers that send a call to the Connect handler instead of the gRPC fast
 * path: the same envelopes as gRPC-Web, which only connect-node serves (its
 * status comes in a trailer frame at the end of the body, read by
 * {@link rawCall} as trailers).
 */
export const VIA_CONNECT: http2.OutgoingHttpHeaders = { "content-type": "application/grpc-web+proto" };

/** One raw gRPC call: headers, frames as they arrive, trailers. */
export interface RawCall {
  /** The response headers, once they came. */
  headers: http2.IncomingHttpHeaders | undefined;
  /** Each message's bytes (without the 5-byte prefix). */
  frames: Buffer[];
  /** Trailers (or the headers of a trailers-only response) once the call ended; rejects if the stream closed without a status. */
  ended: Promise<http2.IncomingHttpHeaders>;
  /** Resets the stream with `code` (default CANCEL), as a client giving up does. */
  cancel(code?: number): void;
}

/** The status a call ended with. */
export interface RawStatus {
  code: number;
  /** `grpc-message`, percent-decoded. */
  message: string;
}

/** A gRPC length-prefixed message: flags byte, 4-byte big-endian length, bytes. */
export function frame(bytes: Uint8Array, flags = 0): Buffer {
  const out = Buffer.alloc(5 + bytes.length);
  out[0] = flags;
  out.writeUInt32BE(bytes.length, 1);
  out.set(bytes, 5);
  return out;
}

/** A framed GetTokenRequest; `minValidForSeconds` sets `min_valid_for`. */
export function getTokenRequest(selector: RawSelector, minValidForSeconds?: number): Buffer {
  return frame(
    toBinary(
      GetTokenRequestSchema,
      create(GetTokenRequestSchema, {
        ...(selector ? { selector } : {}),
        ...(minValidForSeconds === undefined ? {} : { minValidFor: { seconds: BigInt(minValidForSeconds) } }),
      }),
    ),
  );
}

/** A framed ReportExpiredRequest. */
export function reportExpiredRequest(selector: RawSelector, accessToken: string): Buffer {
  return frame(
    toBinary(ReportExpiredRequestSchema, create(ReportExpiredRequestSchema, { ...(selector ? { selector } : {}), accessToken })),
  );
}

/** A framed WatchTokenRequest. */
export function watchRequest(selector: RawSelector): Buffer {
  return frame(toBinary(WatchTokenRequestSchema, create(WatchTokenRequestSchema, selector ? { selector } : {})));
}

/** The request headers of a gRPC call of `method`. */
export function grpcHeaders(method: TokenMethod): http2.OutgoingHttpHeaders {
  return { ":method": "POST", ":path": `/tokenbroker.v1.TokenService/${method}`, "content-type": "application/grpc", te: "trailers" };
}

/** Starts a gRPC call of `method` on `session` with `body` as the whole request body. */
export function rawCall(
  session: http2.ClientHttp2Session,
  method: TokenMethod,
  body: Buffer,
  headers: http2.OutgoingHttpHeaders = {},
): RawCall {
  const req = session.request({ ...grpcHeaders(method), ...headers });
  let resolveWeb: ((t: http2.IncomingHttpHeaders) => void) | undefined;
  const result: RawCall = {
    headers: undefined,
    frames: [],
    ended: new Promise((resolve, reject) => {
      resolveWeb = resolve;
      let trailersOnly: http2.IncomingHttpHeaders | undefined;
      req.on("response", (h) => {
        result.headers = h;
        if (h["grpc-status"] !== undefined) trailersOnly = h;
      });
      req.on("trailers", (t) => resolve(t));
      req.on("end", () => trailersOnly && resolve(trailersOnly));
      req.on("close", () => reject(new Error(`stream closed without status (rst ${req.rstCode})`)));
    }),
    cancel: (code = http2.constants.NGHTTP2_CANCEL) => req.close(code),
  };
  result.ended.catch(() => {});
  req.on("error", () => {}); // a reset surfaces through `ended`
  let pending = Buffer.alloc(0);
  let webTrailers: http2.IncomingHttpHeaders | undefined;
  req.on("data", (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 5 && pending.length >= 5 + pending.readUInt32BE(1)) {
      const size = pending.readUInt32BE(1);
      // gRPC-Web: flag 0x80 marks the trailers, as HTTP/1.1-style header lines.
      if ((pending[0]! & 0x80) !== 0) webTrailers = parseTrailerBlock(pending.subarray(5, 5 + size).toString("utf8"));
      else result.frames.push(pending.subarray(5, 5 + size));
      pending = pending.subarray(5 + size);
    }
  });
  req.on("end", () => {
    if (webTrailers) resolveWeb?.(webTrailers);
  });
  req.end(body);
  return result;
}

/** A gRPC-Web trailer frame's `name: value` lines. */
function parseTrailerBlock(text: string): http2.IncomingHttpHeaders {
  const out: http2.IncomingHttpHeaders = {};
  for (const line of text.split("\r\n")) {
    const i = line.indexOf(":");
    if (i > 0) out[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
  }
  return out;
}

/** The status in trailers (or a trailers-only response). */
export function statusOf(trailers: http2.IncomingHttpHeaders): RawStatus {
  const message = trailers["grpc-message"];
  return { code: Number(trailers["grpc-status"]), message: message === undefined ? "" : decodeURIComponent(String(message)) };
}

/** A unary call to its end: the response headers, the messages and the status. */
export async function unary(
  session: http2.ClientHttp2Session,
  method: TokenMethod,
  body: Buffer,
  headers: http2.OutgoingHttpHeaders = {},
): Promise<{ headers: http2.IncomingHttpHeaders | undefined; frames: Buffer[]; status: RawStatus }> {
  const call = rawCall(session, method, body, headers);
  const trailers = await call.ended;
  return { headers: call.headers, frames: call.frames, status: statusOf(trailers) };
}
