import type * as http from "node:http";
import type { ConnectNodeAdapterOptions } from "@connectrpc/connect-node";
import { failRequest, type RequestFailure } from "./request-guard.js";
import { requestTarget } from "./request-target.js";

/** A handler for plain HTTP requests of either version (connect-node's fallback type). */
export type HttpHandler = NonNullable<ConnectNodeAdapterOptions["fallback"]>;
/** The request type both HTTP versions share. */
export type HttpRequest = Parameters<HttpHandler>[0];
/** The response type both HTTP versions share. */
export type HttpResponse = Parameters<HttpHandler>[1];

/** A plain-HTTP route served beside the RPCs on the same port (health, metrics, pages). */
export interface HttpRoute {
  /** The method served (GET also serves HEAD); `*` serves every method (the Xero API proxy). */
  method: "GET" | "POST" | "HEAD" | "*";
  /** Exact path, or a prefix ending in `/*`. */
  path: string;
  handle: HttpHandler;
}

/**
 * A handler for requests that are not RPCs: dispatches to the first matching
 * route, answers 405 for a known path with another method and 404 otherwise.
 * A route whose promise rejects fails its request alone (see `failRequest`),
 * reported to `onFailure`: Connect, which calls this, drops the promise.
 */
export function routeHttp(routes: HttpRoute[], onFailure: RequestFailure = () => {}): HttpHandler {
  return (req, res) => {
    const { path } = requestTarget(req);
    const matching = routes.filter((r) => (r.path.endsWith("/*") ? path.startsWith(r.path.slice(0, -1)) : r.path === path));
    const route = matching.find((r) => r.method === req.method || r.method === "*" || (req.method === "HEAD" && r.method === "GET"));
    if (route) {
      const result: unknown = route.handle(req, res);
      if (result instanceof Promise) result.catch((e: unknown) => failRequest(req, res, e, onFailure));
      return;
    }
    if (matching.length > 0) {
      res.setHeader("allow", [...new Set(matching.map((r) => r.method))].join(", "));
      return sendJson(res, 405, { code: "method_not_allowed", message: `${req.method} is not allowed on ${path}` });
    }
    sendJson(res, 404, { code: "not_found", message: `no such path: ${path.slice(0, 200)}` });
  };
}

/** Sends a small JSON response. */
export function sendJson(res: HttpResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  (res as http.ServerResponse).writeHead(status, {
    "content-type": "application/json",
    "cache-control": "no-store",
    "content-length": Buffer.byteLength(text),
  });
  res.end(text);
}
