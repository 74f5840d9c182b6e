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
  const served = new Counter({
    name: "tokenbroker_tokens_served_total",
    help: "Access tokens handed out, by RPC and wire protocol (grpc, grpc-web, connect).",
    labelNames: ["rpc", "protocol"] as const,
    registers: [registry],
  });
  return (next) => async (req) => {
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
}

function carriesToken(message: unknown): boolean {
  return typeof message === "object" && message !== null && (message as { token?: unknown }).token !== undefined;
}
