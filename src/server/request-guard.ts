import type * as http from "node:http";
import * as http2 from "node:http2";
import { sendJson, type HttpRequest, type HttpResponse } from "./http-routes.js";
import type { DualHandler } from "./one-port-server.js";
import { BadRequestTargetError, parseRequestTarget } from "./request-target.js";

/** What the port was told of a request that its handler failed (see {@link guardRequests}). */
export type RequestFailure = (error: unknown, request: { method: string | undefined; path: string }) => void;

type Req = HttpRequest;
type Res = HttpResponse;

/**
 * The safety net around the port's request handler: a request whose target
 * is not a path, or whose authority (`Host`, `:authority`) is not a host, is
 * answered 400 before any route sees it; every response carries
 * `responseHeaders`; a handler that throws, or whose
 * promise rejects, fails that request alone (500, or for gRPC an INTERNAL
 * status; a response already under way is cut off) and is reported once to
 * `onFailure`. Nothing a request does reaches the process.
 *
 * A request without an authority at all (HTTP/1.0 without `Host`, HTTP/2
 * without `:authority`, both allowed) is given the port's own address, which
 * Connect needs to build the request's URL.
 */
export function guardRequests(
  handler: DualHandler,
  onFailure: RequestFailure,
  responseHeaders: http.OutgoingHttpHeaders = {},
): DualHandler {
  const headers = Object.entries(responseHeaders).filter((e): e is [string, string | number | string[]] => e[1] !== undefined);
  return (req, res) => {
    let result: unknown;
    try {
      // First, so that every answer carries them, refusals included (a route that sets one itself wins).
      for (const [name, value] of headers) res.setHeader(name, value);
      if (!parseRequestTarget(req.url) || !hasUsableAuthority(req)) return refuse(res);
      result = handler(req, res);
    } catch (e) {
      failRequest(req, res, e, onFailure);
      return;
    }
    if (result instanceof Promise) result.catch((e: unknown) => failRequest(req, res, e, onFailure));
  };
}

/** host[:port] (RFC 3986 §3.2 without user information): what a URL parser reads back as the same authority. */
const AUTHORITY = /^[A-Za-z0-9\-._~%!$&'()*+,;=:[\]]+$/;

/** Whether Connect can make a URL of the request's authority (filling in the port's own when there is none). */
function hasUsableAuthority(req: Req): boolean {
  const h2 = req instanceof http2.Http2ServerRequest;
  const given = h2 ? (req.headers[":authority"] ?? req.headers.host) : req.headers.host;
  if (given === undefined) {
    const { localAddress, localPort } = req.socket;
    if (localAddress === undefined || localPort === undefined) return false;
    const own = `${localAddress.includes(":") ? `[${localAddress}]` : localAddress}:${localPort}`;
    if (h2) req.headers[":authority"] = own;
    else req.headers.host = own;
    return true;
  }
  if (typeof given !== "string") return false;
  if (usableAuthorities.has(given)) return true;
  if (!AUTHORITY.test(given)) return false;
  try {
    if (new URL(`http://${given}`).host === "") return false;
  } catch {
    return false;
  }
  // Clients send the same few authorities over and over: a URL parse per request was a tenth of the port's own cost.
  if (usableAuthorities.size >= 64) usableAuthorities.clear();
  usableAuthorities.add(given);
  return true;
}

/** Authorities found usable lately (see {@link hasUsableAuthority}). */
const usableAuthorities = new Set<string>();

/** A 400 for a request the routes must not see. */
function refuse(res: Res): void {
  try {
    sendJson(res, 400, { code: "bad_request", message: "the request target must be a path (and the host a host)" });
  } catch {
    destroy(res);
  }
}

/**
 * Fails one request whose handler threw or rejected: reports it once, then
 * answers 400 for a bad target, an INTERNAL status for gRPC, 500 otherwise,
 * or cuts off a response already under way. Never throws.
 */
export function failRequest(req: Req, res: Res, e: unknown, onFailure: RequestFailure): void {
  try {
    onFailure(e, { method: req.method, path: parseRequestTarget(req.url)?.path.slice(0, 200) ?? "?" });
  } catch {
    // a failing logger must not fail the request twice
  }
  try {
    if (res.headersSent) return destroy(res);
    if (e instanceof BadRequestTargetError) return sendJson(res, 400, { code: "bad_request", message: e.message });
    if (/^application\/grpc/i.test(String(req.headers["content-type"] ?? ""))) {
      // A trailers-only gRPC answer, which gRPC and gRPC-Web clients read as the call's status.
      (res as http.ServerResponse).writeHead(200, {
        "content-type": String(req.headers["content-type"]),
        "grpc-status": "13",
        "grpc-message": "internal error",
      });
      res.end();
      return;
    }
    sendJson(res, 500, { code: "internal", message: "internal error" });
  } catch {
    destroy(res);
  }
}

/** Cuts a response off so that the client sees it incomplete: HTTP/2 resets the stream (INTERNAL_ERROR), HTTP/1.1 closes the connection. */
function destroy(res: Res): void {
  try {
    if (res instanceof http2.Http2ServerResponse) res.stream.close(http2.constants.NGHTTP2_INTERNAL_ERROR);
    else (res as http.ServerResponse).destroy();
  } catch {
    // already gone
  }
}
