import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";

/**
 * Hop-by-hop headers (RFC 9110 §7.6.1) and the connection-specific ones HTTP/2
 * forbids (RFC 9113 §8.2.2): they describe one connection, not the message,
 * so the proxy never passes them on, in either direction.
 */
const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "http2-settings",
]);

/**
 * Request headers the proxy sets or drops itself: `host` (the API's),
 * `authorization` (the channel's broker key, replaced by the tenant's access
 * token), `xero-tenant-id` (set from the checked value), `cookie` (the
 * broker's admin session must never reach Xero), `expect` (the proxy reads the
 * body before it calls Xero) and `content-length` (set from the body sent).
 */
const SET_BY_PROXY = new Set([
  "host",
  "authorization",
  "xero-tenant-id",
  "cookie",
  "expect",
  "content-length",
  "tokenbroker-connection-id",
]);

/**
 * Response headers not passed back: `set-cookie` (Xero's cookies would land
 * on the broker's origin, beside its admin session) and `alt-svc` (it names
 * Xero's endpoints, not the broker's).
 */
const NOT_RETURNED = new Set(["set-cookie", "alt-svc"]);

/** The header names a `connection` header lists: hop-by-hop for that message too. */
function listedInConnection(headers: IncomingHttpHeaders): Set<string> {
  const value = headers.connection;
  if (typeof value !== "string") return new Set();
  return new Set(value.split(",").map((s) => s.trim().toLowerCase()));
}

/**
 * The channel's request headers as sent to Xero: its end-to-end headers
 * (`accept`, `content-type`, `if-modified-since`, `accept-encoding`…), with
 * `authorization: Bearer <access token>` and `xero-tenant-id` set by the
 * proxy (see {@link SET_BY_PROXY} for what is dropped and why).
 */
export function upstreamRequestHeaders(
  headers: IncomingHttpHeaders,
  set: { accessToken: string; tenantId: string | undefined; contentLength: number | undefined },
): OutgoingHttpHeaders {
  const listed = listedInConnection(headers);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || name.startsWith(":") || HOP_BY_HOP.has(name) || SET_BY_PROXY.has(name) || listed.has(name)) continue;
    out[name] = value;
  }
  out.authorization = `Bearer ${set.accessToken}`;
  if (set.tenantId !== undefined) out["xero-tenant-id"] = set.tenantId;
  if (set.contentLength !== undefined) out["content-length"] = String(set.contentLength);
  return out;
}

/**
 * Xero's response headers as passed back to the channel: all but hop-by-hop
 * and connection-specific ones (which an HTTP/2 response must not carry) and
 * {@link NOT_RETURNED}.
 */
export function downstreamResponseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const listed = listedInConnection(headers);
  const out: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || NOT_RETURNED.has(name) || listed.has(name)) continue;
    out[name] = value;
  }
  return out;
}
