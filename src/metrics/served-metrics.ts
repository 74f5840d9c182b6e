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
  const served = new Counter({
    name: "tokenbroker_tokens_served_total",
    help: "Access tokens handed out, by RPC and wire protocol (grpc, grpc-web, connect).",
    labelNames: ["rpc", "protocol"] as const,
    registers: [registry],
  });
  // One child per label pair, found without hashing the labels on every call.
  const children = new Map<string, { inc(): void }>();
  const step: GuardStep = {
    name: "served-metrics",
    sent(call, token) {
      if (!token) return;
      const key = `${call.method} ${call.protocol}`;
      let child = children.get(key);
      if (!child) {
        child = served.labels({ rpc: call.method, protocol: call.protocol });
        children.set(key, child);
      }
      child.inc();
    },
  };
  return { step, interceptor: guardInterceptor(createCallGuard([step])) };
}
