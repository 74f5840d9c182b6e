import type * as http from "node:http";
import type * as http2 from "node:http2";
import { createContextValues, type ContextValues } from "@connectrpc/connect";
import { universalResponseToNodeResponse } from "@connectrpc/connect-node";
import { createAsyncIterable, type UniversalHandler } from "@connectrpc/connect/protocol";
import type { GuardedCall } from "./call-guard.js";
import type { ConnectUnaryFallback } from "./connect-unary-fast-path.js";
import type { FastPathFallback } from "./grpc-fast-path.js";
import { guardedCallKey } from "./guard-interceptor.js";

/** Options for {@link connectFallback}. */
export interface ConnectFallbackOptions {
  /** The Connect router's handlers (`ConnectRouter.handlers`), built with the port's options and interceptors. */
  handlers: readonly UniversalHandler[];
  /** Added to every response's headers, as on every other response of the port. */
  responseHeaders?: http2.OutgoingHttpHeaders;
  /** The context values of a call (as `connectNodeAdapter`'s `contextValues`); the guarded call is added to them. */
  contextValues?: (stream: http2.ServerHttp2Stream) => ContextValues;
}

/**
 * The gRPC fast path's fallback: a call whose body is not one well-formed
 * message is served by Connect's own handler of its method, from the bytes
 * read so far, and Connect's response is written to the HTTP/2 stream. So
 * every malformed body gets Connect's answer (code and message), not a copy
 * of it.
 */
export function connectFallback(options: ConnectFallbackOptions): FastPathFallback {
  const handlers = new Map(options.handlers.map((h) => [h.requestPath, h]));
  return (stream, headers, body, call) => {
    const path = String(headers[":path"]);
    const handler = handlers.get(path);
    const controller = new AbortController();
    stream.once("close", () => controller.abort());
    // What the client still sends is not read.
    stream.on("data", () => {});
    stream.resume();
    if (!handler) {
      stream.close();
      return;
    }
    const header = webHeaders(headers);
    handler({
      httpVersion: "2.0",
      method: "POST",
      url: urlOf(headers[":authority"], path),
      header,
      body: createAsyncIterable([body]),
      signal: controller.signal,
      contextValues: contextValuesOf(options, stream, call),
    })
      .then(async (res) => {
        if (stream.destroyed) return;
        const out: http2.OutgoingHttpHeaders = { ":status": res.status, ...options.responseHeaders };
        res.header?.forEach((value, name) => {
          out[name] = value;
        });
        const trailer: Record<string, string> = {};
        res.trailer?.forEach((value, name) => {
          trailer[name] = value;
        });
        const hasTrailer = Object.keys(trailer).length > 0;
        stream.respond(out, { waitForTrailers: hasTrailer });
        if (hasTrailer) stream.once("wantTrailers", () => stream.sendTrailers(trailer));
        if (res.body) for await (const chunk of res.body) stream.write(chunk);
        stream.end();
      })
      .catch(() => {
        if (!stream.destroyed) stream.destroy();
      });
  };
}

function contextValuesOf(options: ConnectFallbackOptions, stream: http2.ServerHttp2Stream, call: GuardedCall): ContextValues {
  return (options.contextValues?.(stream) ?? createContextValues()).set(guardedCallKey, call);
}

/**
 * The Connect unary fast path's fallback (see `ConnectUnaryFallback`): a
 * call whose body it does not answer is served by Connect's own handler of
 * its method from the bytes read so far, over HTTP/1.1 written as
 * connect-node writes it (`universalResponseToNodeResponse`), over HTTP/2 as
 * {@link connectFallback} writes it.
 */
export function connectUnaryFallback(options: ConnectFallbackOptions): ConnectUnaryFallback {
  const handlers = new Map(options.handlers.map((h) => [h.requestPath, h]));
  return {
    h2: connectFallback(options),
    h1(req, res, body, call) {
      const path = req.url ?? "";
      const handler = handlers.get(path);
      if (!handler) {
        res.destroy();
        return;
      }
      const controller = new AbortController();
      res.once("close", () => controller.abort());
      handler({
        httpVersion: req.httpVersion,
        method: "POST",
        url: urlOf(req.headers.host, path),
        header: webHeaders(req.headers),
        body: createAsyncIterable([body]),
        signal: controller.signal,
        contextValues: createContextValues().set(guardedCallKey, call),
      })
        .then((res2) => universalResponseToNodeResponse(res2, res))
        .catch(() => {
          if (!res.destroyed) res.destroy();
        });
    },
  };
}

/** A request's headers as a `Headers` object, without HTTP/2's pseudo-headers. */
function webHeaders(headers: http.IncomingHttpHeaders): Headers {
  const header = new Headers();
  for (const [name, value] of Object.entries(headers)) {
    if (name.startsWith(":") || value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) header.append(name, v);
  }
  return header;
}

/** The URL Connect is given for a request (it parses it): its authority when that is one, else `localhost`. */
function urlOf(authority: string | undefined, path: string): string {
  try {
    return new URL(path, `http://${authority ?? "localhost"}`).toString();
  } catch {
    return `http://localhost${path}`;
  }
}
