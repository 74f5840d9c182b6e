import type { Interceptor } from "@connectrpc/connect";
import { Counter, type Registry } from "prom-client";
import { createCallGuard, type GuardStep } from "../server/call-guard.js";
import { guardInterceptor } from "../server/guard-interceptor.js";

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

/** The served-tokens counter: its guard step, and the same as a Connect interceptor. */
export interface ServedMetrics {
  /** Counts each response message carrying a token, by RPC and wire protocol. */
  step: GuardStep;
  /** The step alone as a Connect interceptor (the broker's port runs it with its other steps). */
  interceptor: Interceptor;
}

/** Registers `tokenbroker_tokens_served_total{rpc,protocol}`; see {@link createServedInterceptor}. */
export function createServedMetrics(registry: Registry): ServedMetrics {
  // Counted in plain numbers on the request path (a prom-client `inc` builds its label key on every call:
  // about a microsecond), added to the counter whenever it is read (a scrape).
  const counts = new Map<string, Map<WireProtocol, { readonly labels: { rpc: string; protocol: WireProtocol }; n: number }>>();
  new Counter({
    name: "tokenbroker_tokens_served_total",
    help: "Access tokens handed out, by RPC and wire protocol (grpc, grpc-web, connect).",
    labelNames: ["rpc", "protocol"] as const,
    registers: [registry],
    collect() {
      for (const byProtocol of counts.values())
        for (const count of byProtocol.values()) {
          if (count.n === 0) continue;
          this.inc(count.labels, count.n);
          count.n = 0;
        }
    },
  });
  const step: GuardStep = {
    name: "served-metrics",
    sent(call, token) {
      if (!token) return;
      let byProtocol = counts.get(call.method);
      if (!byProtocol) {
        byProtocol = new Map();
        counts.set(call.method, byProtocol);
      }
      const count = byProtocol.get(call.protocol);
      if (count) count.n++;
      else byProtocol.set(call.protocol, { labels: { rpc: call.method, protocol: call.protocol }, n: 1 });
    },
  };
  return { step, interceptor: guardInterceptor(createCallGuard([step])) };
}
