import * as http2 from "node:http2";
import { ConnectError } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, createEndStreamSerialization, endStreamFlag, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import { protocolOf } from "../metrics/served-metrics.js";
import type { CallGuard, GuardedCall } from "./call-guard.js";
import type { DualHandler } from "./one-port-server.js";

/** Options for {@link guardBeforeBody}. */
export interface GuardBeforeBodyOptions {
  /** The service whose calls are guarded (`tokenbroker.v1.TokenService`). */
  service: string;
  /** The port's guard: its steps' header checks run here, the rest in `guardInterceptor`. */
  guard: CallGuard;
}

const GUARDED = Symbol("tokenbroker.guardedCall");
type Guarded = { [GUARDED]?: GuardedCall };

/** The call {@link guardBeforeBody} started for a request (for `guardedCallKey`), if any. */
export function guardedCallOf(req: object): GuardedCall | undefined {
  return (req as Guarded)[GUARDED];
}

type Request = Parameters<DualHandler>[0];
type Response = Parameters<DualHandler>[1];

/**
 * Starts the guard of each call of the service from its headers and runs
 * the steps' header checks (the API key) before the Connect handler reads
 * its body (connect-node reads the whole body before interceptors run); the
 * call is handed on to `guardInterceptor` (see {@link guardedCallOf}). A
 * refused call is answered at once in its own protocol (gRPC
 * trailers-only, gRPC-Web trailers, Connect streaming end-of-stream, Connect
 * unary 401 JSON), and its body is never buffered. Other paths (health,
 * reflection, pages) go straight to `handler`.
 */
export function guardBeforeBody(options: GuardBeforeBodyOptions, handler: DualHandler): DualHandler {
  const prefix = `/${options.service}/`;
  return (req, res) => {
    const url = req.url ?? "";
    if (!url.startsWith(prefix)) {
      handler(req, res);
      return;
    }
    const method = url.slice(prefix.length).split("?", 1)[0] ?? "";
    const authorization = req.headers["authorization"];
    const contentType = req.headers["content-type"];
    const call = options.guard.start({
      method,
      protocol: protocolOf(typeof contentType === "string" ? contentType : null),
      authorization: typeof authorization === "string" ? authorization : undefined,
    });
    (req as Guarded)[GUARDED] = call;
    const checked = call.authenticate();
    if (!checked) {
      handler(req, res);
      return;
    }
    checked
      .then(
        () => handler(req, res),
        (e: unknown) => refuse(req, res, ConnectError.from(e)),
      )
      // Whatever went wrong answering, this request alone ends: the client went away meanwhile, say.
      .catch(() => req.destroy());
  };
}

/** Answers a call with `error` in the protocol its content type names, without reading its body. */
function refuse(req: Request, res: Response, error: ConnectError): void {
  if (res.headersSent || res.writableEnded) return;
  const contentType = String(req.headers["content-type"] ?? "").toLowerCase();
  const headers: Record<string, string> = {};
  // HTTP/1.1: the unread body would follow; the connection closes after the answer instead.
  if (!(req instanceof http2.Http2ServerRequest)) headers["connection"] = "close";
  const trailer = setTrailerStatus(new Headers(), error);
  let status = 200;
  let body: Uint8Array | string = new Uint8Array(0);
  if (contentType.startsWith("application/grpc-web")) {
    const frame = encodeEnvelope(trailerFlag, trailerSerialize(trailer));
    body = contentType.startsWith("application/grpc-web-text") ? Buffer.from(frame).toString("base64") : frame;
    headers["content-type"] = contentType.split(";", 1)[0]!;
  } else if (contentType.startsWith("application/grpc")) {
    headers["content-type"] = "application/grpc";
    trailer.forEach((value, name) => {
      headers[name] = value;
    });
    if (req instanceof http2.Http2ServerRequest) {
      // Trailers-only: one HEADERS frame that ends the stream (the compatibility layer would add an empty DATA frame).
      req.stream.respond({ ":status": 200, ...headers }, { endStream: true });
      return;
    }
  } else if (contentType.startsWith("application/connect+")) {
    body = encodeEnvelope(endStreamFlag, createEndStreamSerialization(undefined).serialize({ metadata: new Headers(), error }));
    headers["content-type"] = contentType.split(";", 1)[0]!;
  } else {
    status = codeToHttpStatus(error.code);
    headers["content-type"] = "application/json";
    body = errorToJsonBytes(error, undefined);
  }
  // Both response types take the same calls; their typings differ only in overloads.
  (res as import("node:http").ServerResponse).writeHead(status, headers);
  (res as import("node:http").ServerResponse).end(body);
}
