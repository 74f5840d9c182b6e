import { Code, ConnectError } from "@connectrpc/connect";
import { BrokerError } from "../errors.js";
import { QuotaExceededError } from "../quota/call-budget.js";
import { StoreUnavailableError } from "../store/store.js";
import { UpstreamCallError } from "./upstream-call.js";

/** The broker's own answer to a proxied call it does not forward (or whose forwarding failed): status, code and message. */
export interface ProxyRefusal {
  status: number;
  /** A word for programs, e.g. `tenant_required`. */
  code: string;
  /** For people: what went wrong and what to do; never a token or a key. */
  message: string;
  /** Extra response headers (`Retry-After`, `X-Rate-Limit-Problem`). */
  headers?: Record<string, string>;
}

/** Xero's spelling of each limit in `X-Rate-Limit-Problem`. */
const XERO_LIMIT_NAMES = { concurrent: "concurrent", minute: "minute", day: "day", app_minute: "appminute" } as const;

/**
 * The answer for an error met while handling a proxied call:
 * - API key: 401 (none, unknown or revoked), 403 (outside its tenants);
 * - the tenant: 404 (not connected), 409 (its grant needs re-authorisation:
 *   a person must act, so retrying is pointless until then), 503 (the
 *   identity server, the store, or the broker's configuration failed: worth
 *   a retry later);
 * - the budget: 429 with `Retry-After` (seconds) and `X-Rate-Limit-Problem`;
 * - Xero: 502 (unreachable), 504 (no answer within the timeout).
 * Anything else is rethrown (the port answers 500 and logs it).
 */
export function refusalOf(e: unknown): ProxyRefusal {
  if (e instanceof ConnectError) {
    if (e.code === Code.Unauthenticated) return { status: 401, code: "unauthenticated", message: e.rawMessage };
    if (e.code === Code.PermissionDenied) return { status: 403, code: "permission_denied", message: e.rawMessage };
    if (e.code === Code.Unavailable) return { status: 503, code: "unavailable", message: e.rawMessage };
    if (e.code === Code.InvalidArgument) return { status: 400, code: "bad_request", message: e.rawMessage };
  }
  if (e instanceof StoreUnavailableError) {
    return { status: 503, code: "unavailable", message: "tokenbroker cannot reach its store now; try again later" };
  }
  if (e instanceof BrokerError) {
    switch (e.kind) {
      case "not_found":
        return { status: 404, code: "not_found", message: e.message };
      case "invalid_argument":
        return { status: 400, code: "bad_request", message: e.message };
      case "needs_reauthorization":
        return { status: 409, code: "needs_reauthorization", message: e.message };
      case "unavailable":
      case "misconfigured":
      case "unreadable":
      case "cancelled":
        return { status: 503, code: e.kind === "cancelled" ? "unavailable" : e.kind, message: e.message };
    }
  }
  if (e instanceof QuotaExceededError) {
    return {
      status: 429,
      code: "quota_exceeded",
      message: e.message,
      headers: { "retry-after": String(Math.ceil(e.retryAfterMs / 1000)), "x-rate-limit-problem": XERO_LIMIT_NAMES[e.limit] },
    };
  }
  if (e instanceof UpstreamCallError) {
    if (e.kind === "timeout") return { status: 504, code: "upstream_timeout", message: e.message };
    return { status: 502, code: "upstream_unreachable", message: e.message };
  }
  throw e;
}
