import * as http2 from "node:http2";
import { ConnectError } from "@connectrpc/connect";
import { encodeEnvelope } from "@connectrpc/connect/protocol";
import { codeToHttpStatus, createEndStreamSerialization, endStreamFlag, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import type { DualHandler } from "./one-port-server.js";

/** Options for {@link authenticateBeforeBody}. */
export interface AuthenticateBeforeBodyOptions {
  /** The service whose calls need a key (`tokenbroker.v1.TokenService`). */
  service: string;
  /** Checks the call's `authorization` header; throws a `ConnectError` (UNAUTHENTICATED) to refuse it. */
  authenticate(method: string, authorization: string | undefined): Promise<void>;
}

type Request = Parameters<DualHandler>[0];
type Response = Parameters<DualHandler>[1];

/**
 * Checks the API key of a call from its headers before the Connect handler
 * reads its body (connect-node reads the whole body before interceptors
 * run): a refused call is answered at once in its own protocol (gRPC
 * trailers-only, gRPC-Web trailers, Connect streaming end-of-stream, Connect
 * unary 401 JSON), and its body is never buffered. Other paths (health,
 * reflection, pages) go straight to `handler`.
 */
export function authenticateBeforeBody(options: AuthenticateBeforeBodyOptions, handler: DualHandler): DualHandler {
  const prefix = `/${options.service}/`;
  return (req, res) => {
    const url = req.url ?? "";
    if (!url.startsWith(prefix)) {
      handler(req, res);
      return;
    }
    const method = url.slice(prefix.length).split("?", 1)[0] ?? "";
    const authorization = req.headers["authorization"];
    options
      .authenticate(method, typeof authorization === "string" ? authorization : undefined)
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
    trailer.forEach((value, name) => (headers[name] = value));
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
