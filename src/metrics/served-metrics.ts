import type { Interceptor } from "@connectrpc/connect";
import { Counter, type Registry } from "prom-client";

/** The wire protocol of a request, from its content type. */
export type WireProtocol = "grpc" | "grpc-web" | "connect";

/** `application/grpc…` is gRPC, `application/grpc-web…` gRPC-Web, anything else (JSON, proto, GET) Connect. */
export function protocolOf(contentType: string | null): WireProtocol {
  const type = (contentType ?? "").toLowerCase();
  if (type.startsWith("application/grpc-web")) return "grpc-web";
  if (type.startsWith("application/grpc")) return "grpc";
  return "connect";
}

/**
 * Registers `tokenbroker_tokens_served_total{rpc,protocol}` and returns a
 * Connect interceptor that counts every response message carrying a token:
 * one per successful GetToken or ReportExpired, one per token a WatchToken
 * stream delivers.
 */
export function createServedInterceptor(registry: Registry): Interceptor {
  return createServedMetrics(registry).interceptor;
}

/** The served-tokens counter: the Connect interceptor, and a hook for handlers outside Connect. */
export interface ServedMetrics {
  /** Counts token-carrying response messages of Connect calls. */
  interceptor: Interceptor;
  /** Counts one token handed out by `rpc` over `protocol` (for handlers that do not go through Connect). */
  count(rpc: string, protocol: WireProtocol): void;
}

/** Registers `tokenbroker_tokens_served_total{rpc,protocol}`; see {@link createServedInterceptor}. */
export function createServedMetrics(registry: Registry): ServedMetrics {
  const served = new Counter({
    name: "tokenbroker_tokens_served_total",
    help: "Access tokens handed out, by RPC and wire protocol (grpc, grpc-web, connect).",
    labelNames: ["rpc", "protocol"] as const,
    registers: [registry],
  });
  const interceptor: Interceptor = (next) => async (req) => {
    const labels = { rpc: req.method.name, protocol: protocolOf(req.header.get("content-type")) };
    const res = await next(req);
    if (!res.stream) {
      if (carriesToken(res.message)) served.inc(labels);
      return res;
    }
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        for await (const message of messages) {
          if (carriesToken(message)) served.inc(labels);
          yield message;
        }
      })(),
    };
  };
  return { interceptor, count: (rpc, protocol) => served.inc({ rpc, protocol }) };
}

function carriesToken(message: unknown): boolean {
  return typeof message === "object" && message !== null && (message as { token?: unknown }).token !== undefined;
}
