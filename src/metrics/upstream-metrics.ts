import { Histogram, type Registry } from "prom-client";
import { UpstreamError, type IdentityServer } from "../upstream/identity-server.js";

/**
 * Registers `tokenbroker_upstream_request_seconds{operation,outcome}` and
 * returns a decorator: it wraps an identity server so that each of its
 * asynchronous calls is timed. The operation is the method's name in
 * snake_case (`refresh` is the token endpoint, `list_connections` the
 * connections endpoint); outcomes: `ok`, `invalid_grant`, `invalid_client`,
 * `transient`, `error`.
 */
export function createUpstreamMetrics(registry: Registry): <T extends IdentityServer>(identity: T) => T {
  const latency = new Histogram({
    name: "tokenbroker_upstream_request_seconds",
    help: "Calls to the identity server (token endpoint, connections endpoint), by operation and outcome; each retry attempt counts.",
    labelNames: ["operation", "outcome"] as const,
    buckets: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const outcomeOf = (e: unknown) => (e instanceof UpstreamError ? e.kind : "error");

  return (identity) =>
    new Proxy(identity, {
      get(target, property, receiver) {
        const value: unknown = Reflect.get(target, property, receiver);
        if (typeof value !== "function" || typeof property !== "string") return value;
        const operation = property.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
        return (...args: unknown[]) => {
          const end = latency.startTimer({ operation });
          const result: unknown = Reflect.apply(value, target, args);
          if (!(result instanceof Promise)) return result; // synchronous (e.g. building a URL): nothing upstream
          return result.then(
            (v: unknown) => {
              end({ outcome: "ok" });
              return v;
            },
            (e: unknown) => {
              end({ outcome: outcomeOf(e) });
              throw e;
            },
          );
        };
      },
    });
}
