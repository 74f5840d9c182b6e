import type * as http from "node:http";
import { pipeline } from "node:stream";
import type { AuditLog } from "../audit/audit-log.js";
import type { Principal } from "../auth/api-key.js";
import type { Authorizer } from "../auth/authorize.js";
import type { Selector, TokenBroker } from "../broker/token-broker.js";
import { errorFields, type Logger } from "../logger.js";
import type { CallBudget, CallPermit } from "../quota/call-budget.js";
import { sendJson, type HttpRequest, type HttpResponse, type HttpRoute } from "../server/http-routes.js";
import { downstreamResponseHeaders, upstreamRequestHeaders } from "./forward-headers.js";
import { refusalOf, type ProxyRefusal } from "./proxy-answers.js";
import type { ProxyMetrics } from "../metrics/proxy-metrics.js";
import { isConnectionsPath, PROXY_PREFIX, type TargetResolver } from "./proxy-target.js";
import { readReplayableBody, type ProxyBody } from "./replayable-body.js";
import { UpstreamCallError, type UpstreamClient } from "./upstream-call.js";

/** Options for {@link createXeroProxyRoute}. */
export interface XeroProxyRouteOptions {
  /** Where a `/xero/…` target may go (see `createTargetResolver`). */
  target: TargetResolver;
  /** The tenants' access tokens: `getToken`, and `reportExpired` after Xero's 401. */
  broker: Pick<TokenBroker, "getToken" | "reportExpired">;
  /** Asked before each call to Xero (see `CallBudget`). */
  callBudget: CallBudget;
  /** The port's API keys and scopes; undefined when the port serves without keys (loopback only). */
  authorizer: Authorizer | undefined;
  /** Sends the calls to Xero. */
  upstream: UpstreamClient;
  /** Request bodies up to this many bytes are held, so that a call can be retried after a 401. */
  replayMaxBytes: number;
  /** One `xero_call` entry per call. */
  audit?: AuditLog | undefined;
  metrics?: ProxyMetrics | undefined;
  /**
   * Told of a tenant Xero answered 403 for (the organisation may have been
   * disconnected at Xero or reset): re-reads its grant's organisations at once
   * (`TenantRefresh.recheckTenant`, at most once a minute per connection).
   */
  onForbidden?: ((tenantId: string) => void) | undefined;
  logger: Logger;
}

/** Methods forwarded; others are answered 405. */
const FORWARDED_METHODS = new Set(["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]);
/** A tenant id as a header: what `xero-tenant-id` carries (Xero's are UUIDs). */
const TENANT_ID = /^[\x21-\x7e]{1,128}$/;

/** What is known of one proxied call, for its audit entry, metrics and debug line. */
interface CallRecord {
  method: string;
  principal: Principal | undefined;
  tenantId: string | undefined;
  /** `METHOD /path` with the query's parameter names only. */
  detail: string;
}

/**
 * `/xero/*` on the broker's port: the Xero API proxy. Each call, any method,
 * over HTTP/1.1 or HTTP/2:
 *
 * 1. is refused 403 when it comes from a browser (`Origin` or
 *    `Sec-Fetch-Site`, which every browser sends and Node's `fetch` does not): channels are programs, and a web page must not reach
 *    Xero through a broker on a developer's loopback;
 * 2. is checked for where it goes (400: see `createTargetResolver`);
 * 3. is authenticated by the channel's own API key, `authorization: Bearer
 *    tbk_…` (401), whose tenant scope must hold the `xero-tenant-id` it sends
 *    (403; the header is required, 400, except for `/xero/connections…`,
 *    which names the grant by `xero-tenant-id` or `tokenbroker-connection-id`);
 * 4. reads its body, holding up to `replayMaxBytes` of it;
 * 5. takes the tenant's current access token (404 not connected, 409 needs
 *    re-authorisation, 503 unavailable) and a permit of the call budget (429
 *    with `Retry-After` and `X-Rate-Limit-Problem`, without calling Xero);
 * 6. is sent to Xero with its method, query, body and end-to-end headers,
 *    `authorization: Bearer <access token>` and `xero-tenant-id`;
 * 7. after a 401 from Xero, reports the token expired (one refresh however
 *    many calls report it at once) and, if its body was held whole, is sent
 *    again once with the new token; otherwise Xero's 401 passes through;
 * 8. gets Xero's status, headers and body streamed back as they come
 *    (without hop-by-hop headers, `Set-Cookie` or `Alt-Svc`);
 *    Xero unreachable is 502, no answer within the timeout 504.
 *
 * The broker's own refusals are JSON `{code, message}`. The caller going away
 * aborts the call to Xero and frees its permit.
 */
export function createXeroProxyRoute(options: XeroProxyRouteOptions): HttpRoute {
  return {
    method: "*",
    path: `${PROXY_PREFIX}*`,
    handle: (req, res) => handle(options, req, res),
  };
}

async function handle(options: XeroProxyRouteOptions, req: HttpRequest, res: HttpResponse): Promise<void> {
  const method = req.method ?? "GET";
  const call: CallRecord = { method, principal: undefined, tenantId: undefined, detail: method };
  const abort = new AbortController();
  const onClose = () => {
    // writableEnded, not writableFinished: HTTP/2's compatibility layer reports a reset stream as finished.
    if (!res.writableEnded) abort.abort(new UpstreamCallError("aborted", "the caller went away"));
  };
  res.once("close", onClose);
  try {
    if (req.headers.origin !== undefined || req.headers["sec-fetch-site"] !== undefined) {
      return refuse(options, res, call, {
        status: 403,
        code: "browser_refused",
        message: "the Xero API proxy serves programs, not browsers (the request carries Origin or Sec-Fetch-Site)",
      });
    }
    const target = options.target(req.url ?? "");
    if (!target.ok) return refuse(options, res, call, { status: 400, code: "bad_target", message: target.reason });
    call.detail = detailOf(method, target.path, target.url);
    if (!FORWARDED_METHODS.has(method)) {
      res.setHeader("allow", [...FORWARDED_METHODS].join(", "));
      return refuse(options, res, call, { status: 405, code: "method_not_allowed", message: `${method} is not forwarded to Xero` });
    }
    const principal = options.authorizer ? await options.authorizer.authenticate(single(req.headers.authorization)) : undefined;
    call.principal = principal;
    const tenantHeader = single(req.headers["xero-tenant-id"]);
    const connectionHeader = single(req.headers["tokenbroker-connection-id"]);
    const appLevel = isConnectionsPath(target.path);
    let selector: Selector;
    if (tenantHeader !== undefined) {
      if (!TENANT_ID.test(tenantHeader))
        return refuse(options, res, call, { status: 400, code: "bad_tenant", message: "xero-tenant-id is malformed" });
      selector = { tenantId: tenantHeader };
      call.tenantId = tenantHeader;
    } else if (appLevel && connectionHeader !== undefined) {
      selector = { connectionId: connectionHeader };
    } else {
      return refuse(options, res, call, {
        status: 400,
        code: "tenant_required",
        message: appLevel
          ? "send xero-tenant-id (a tenant of the grant) or tokenbroker-connection-id to name whose grant lists its connections"
          : "send the organisation's xero-tenant-id header",
      });
    }
    if (principal && options.authorizer) {
      await options.authorizer.checkScope(
        principal,
        "tenantId" in selector ? { case: "tenantId", value: selector.tenantId } : { case: "connectionId", value: selector.connectionId },
      );
    }
    const body = await readReplayableBody(req, options.replayMaxBytes, abort.signal);
    const token = await options.broker.getToken(selector, { signal: abort.signal });
    const budgetTenant = appLevel ? undefined : call.tenantId;
    const send = (accessToken: string) =>
      attempt(options, {
        method,
        url: target.url,
        req,
        body,
        accessToken,
        // /connections is the grant's, not an organisation's: Xero does not want a tenant there.
        tenantId: appLevel ? undefined : call.tenantId,
        budgetTenant,
        signal: abort.signal,
      });
    let upstream = await send(token.accessToken);
    if (upstream.statusCode === 401) {
      if (body.replayable) {
        const renewed = await options.broker.reportExpired(selector, token.accessToken, { signal: abort.signal }).catch((e: unknown) => {
          options.logger.warn(
            { ...errorFields(e), event: "xero_call_refresh_failed" },
            "Xero answered 401 and the token could not be renewed",
          );
          return undefined;
        });
        // The same token back (it was not the one stored, and the stored one is as old): sending again would get 401 again.
        if (renewed && renewed.token.accessToken !== token.accessToken) {
          await discard(upstream);
          upstream = await send(renewed.token.accessToken);
        }
      } else {
        // The body was streamed: it cannot be sent again, but the next call gets a fresh token.
        options.broker.reportExpired(selector, token.accessToken).catch(() => {});
      }
    }
    if (upstream.statusCode === 403 && call.tenantId !== undefined && !appLevel) options.onForbidden?.(call.tenantId);
    await respond(options, req, res, call, upstream);
  } catch (e) {
    // The caller went away (while the body was read, a token or permit awaited, or Xero called): nobody to answer.
    if (abort.signal.aborted) return finish(options, call, 499);
    const refusal = refusalOf(e);
    if (refusal.status >= 500)
      options.logger.warn({ ...errorFields(e), event: "xero_call_failed", status: refusal.status }, refusal.message);
    refuse(options, res, call, refusal);
  } finally {
    res.off("close", onClose);
  }
}

interface Attempt {
  method: string;
  url: URL;
  req: HttpRequest;
  body: ProxyBody;
  accessToken: string;
  tenantId: string | undefined;
  budgetTenant: string | undefined;
  signal: AbortSignal;
}

/** One call to Xero under one permit, released as soon as the response headers arrive. */
async function attempt(options: XeroProxyRouteOptions, a: Attempt): Promise<http.IncomingMessage> {
  const permit: CallPermit = await options.callBudget.acquire(a.budgetTenant, a.signal);
  const started = performance.now();
  try {
    const contentLength = a.body.replayable
      ? a.body.bytes.length === 0 && a.req.headers["content-length"] === undefined
        ? undefined
        : a.body.bytes.length
      : lengthOf(a.req.headers["content-length"]);
    const res = await options.upstream.send({
      method: a.method,
      url: a.url,
      headers: upstreamRequestHeaders(a.req.headers, { accessToken: a.accessToken, tenantId: a.tenantId, contentLength }),
      body: a.body.replayable ? (a.body.bytes.length === 0 ? undefined : a.body.bytes) : a.body.stream,
      signal: a.signal,
    });
    const status = res.statusCode ?? 502;
    options.metrics?.upstreamLatency(a.method, status, (performance.now() - started) / 1000);
    permit.release({ status, header: (name) => headerText(res.headers[name]) });
    return res;
  } catch (e) {
    permit.release();
    throw e;
  }
}

/** Streams Xero's answer back to the caller. */
function respond(
  options: XeroProxyRouteOptions,
  req: HttpRequest,
  res: HttpResponse,
  call: CallRecord,
  upstream: http.IncomingMessage,
): Promise<void> {
  const status = upstream.statusCode ?? 502;
  (res as http.ServerResponse).writeHead(status, downstreamResponseHeaders(upstream.headers));
  finish(options, call, status);
  if (req.method === "HEAD") {
    upstream.resume();
    res.end();
    return Promise.resolve();
  }
  return new Promise((resolve) => {
    pipeline(upstream, res as NodeJS.WritableStream, (e) => {
      if (e && !(e instanceof UpstreamCallError && e.kind === "aborted")) {
        options.logger.debug({ event: "xero_call_cut", status, reason: e.message }, "a proxied response was cut off");
      }
      resolve();
    });
  });
}

/** Answers with the broker's own refusal and records the call. */
function refuse(options: XeroProxyRouteOptions, res: HttpResponse, call: CallRecord, refusal: ProxyRefusal): void {
  finish(options, call, refusal.status);
  if (res.headersSent || res.writableEnded || res.destroyed) {
    if (!res.writableEnded) res.destroy();
    return;
  }
  for (const [name, value] of Object.entries(refusal.headers ?? {})) res.setHeader(name, value);
  sendJson(res, refusal.status, { code: refusal.code, message: refusal.message });
}

/** The call's audit entry, metrics and debug line (499: the caller went away). */
function finish(options: XeroProxyRouteOptions, call: CallRecord, status: number): void {
  options.metrics?.answered(call.method, status);
  options.audit?.record({
    actor: call.principal?.name,
    action: "xero_call",
    tenantId: call.tenantId,
    outcome: String(status),
    detail: call.detail,
  });
  options.logger.debug({ event: "xero_call", key: call.principal?.name, tenantId: call.tenantId, call: call.detail, status }, "xero call");
}

/** `GET /api.xro/2.0/Invoices?page&where`: the path, and of the query only its parameter names (values may be secret). */
function detailOf(method: string, path: string, url: URL): string {
  const names = [...new Set(url.searchParams.keys())].map((k) => k.replace(/[^\x21-\x7e]/g, "?").slice(0, 40));
  const text = `${method} /${path}${names.length > 0 ? `?${names.join("&")}` : ""}`;
  return text.length > 200 ? `${text.slice(0, 199)}…` : text;
}

/** Reads and drops a response's body (Xero's 401 before the retry), so its connection can be used again. */
function discard(res: http.IncomingMessage): Promise<void> {
  return new Promise((resolve) => {
    if (res.readableEnded) return resolve();
    res.once("end", resolve);
    res.once("close", resolve);
    res.once("error", () => resolve());
    res.resume();
  });
}

function single(value: string | string[] | undefined): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function headerText(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(", ") : value;
}

function lengthOf(value: string | undefined): number | undefined {
  return value !== undefined && /^\d{1,15}$/.test(value) ? Number(value) : undefined;
}
