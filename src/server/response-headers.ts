import type { OutgoingHttpHeaders } from "node:http";

/** How long a browser that saw the broker over TLS keeps to TLS for its host (one year, in seconds). */
export const HSTS_MAX_AGE_SECONDS = 31_536_000;

/**
 * The headers every response of the port carries: `Cache-Control: no-store`
 * (tokens, statuses and pages are never to be kept by a cache or browser)
 * and, over TLS only (RFC 6797 §7.2), `Strict-Transport-Security`, without
 * `includeSubDomains`: the broker speaks for its own host, not its siblings.
 */
export function portResponseHeaders(tls: boolean): OutgoingHttpHeaders {
  return {
    "cache-control": "no-store",
    ...(tls ? { "strict-transport-security": `max-age=${HSTS_MAX_AGE_SECONDS}` } : {}),
  };
}
