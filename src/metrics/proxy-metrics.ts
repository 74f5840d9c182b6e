import { Counter, Histogram, type Registry } from "prom-client";

/** What the proxy reports per call. */
export interface ProxyMetrics {
  /** A call answered: by whom (Xero, or the broker itself), its method and status. */
  answered(method: string, status: number): void;
  /** Xero's response headers arrived this many seconds after the request was sent. */
  upstreamLatency(method: string, status: number, seconds: number): void;
}

/** Methods kept as labels; any other is `other`, so a caller cannot grow the label set. */
const METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);

/** `GET`…, or `other`. */
export function methodLabel(method: string): string {
  return METHODS.has(method) ? method : "other";
}

/** `2xx`, `4xx`…, from a status. */
export function statusClass(status: number): string {
  return `${Math.floor(status / 100)}xx`;
}

/**
 * Registers `tokenbroker_proxy_calls_total{method,status_class,status}` (every
 * call to `/xero/*`, answered by Xero or refused by the broker; `status` only
 * for the few statuses worth an alert: 401, 403, 429, 502, 503, 504) and
 * `tokenbroker_proxy_upstream_seconds{method,status_class}` (time from
 * sending a call to Xero's response headers, each attempt).
 */
export function createProxyMetrics(registry: Registry): ProxyMetrics {
  const calls = new Counter({
    name: "tokenbroker_proxy_calls_total",
    help: "Calls to the Xero API proxy (/xero/*), by method and status class of the answer (Xero's or the broker's own); status is set for 401, 403, 429, 502, 503 and 504, else empty.",
    labelNames: ["method", "status_class", "status"] as const,
    registers: [registry],
  });
  const latency = new Histogram({
    name: "tokenbroker_proxy_upstream_seconds",
    help: "Time from sending a proxied call to Xero to its response headers, by method and status class; each attempt counts.",
    labelNames: ["method", "status_class"] as const,
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const noted = new Set([401, 403, 429, 502, 503, 504]);
  return {
    answered(method, status) {
      calls.inc({ method: methodLabel(method), status_class: statusClass(status), status: noted.has(status) ? String(status) : "" });
    },
    upstreamLatency(method, status, seconds) {
      latency.observe({ method: methodLabel(method), status_class: statusClass(status) }, seconds);
    },
  };
}
