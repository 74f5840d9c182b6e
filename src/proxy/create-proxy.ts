import type { AgentOptions } from "node:https";
import type { AuditLog } from "../audit/audit-log.js";
import type { Authorizer } from "../auth/authorize.js";
import type { TokenBroker } from "../broker/token-broker.js";
import type { Logger } from "../logger.js";
import { unlimitedBudget, type CallBudget } from "../quota/call-budget.js";
import type { HttpRoute } from "../server/http-routes.js";
import type { ProxyMetrics } from "../metrics/proxy-metrics.js";
import { createTargetResolver } from "./proxy-target.js";
import { createUpstreamClient } from "./upstream-call.js";
import { createXeroProxyRoute } from "./xero-proxy.js";

/** The Xero API proxy's settings (`startBrokerServer`'s `proxy`). */
export interface XeroProxyOptions {
  /** Xero's API (`TOKENBROKER_API_URL`), e.g. `https://api.xero.com`; `/xero/{path}` goes to this + `/{path}`. */
  apiUrl: URL | string;
  /**
   * URLs the proxy never calls, with everything under them: the identity
   * server's endpoints when they share the API's origin (the fake Xero's do).
   */
  refused?: readonly (URL | string)[];
  /** Request bodies up to this many bytes are held for a retry after a 401 (default 1 MiB; `TOKENBROKER_PROXY_REPLAY_KIB` in serve). */
  replayMaxBytes?: number;
  /** No byte from Xero this long ends a call: 504 before its headers, cut off after, ms (default 60 000). */
  timeoutMs?: number;
  /** TLS options of the connections to an `https:` API (e.g. a test's `ca`). */
  tls?: AgentOptions;
}

/** What the proxy needs of the broker's port. */
export interface XeroProxyDependencies {
  broker: Pick<TokenBroker, "getToken" | "reportExpired">;
  callBudget: CallBudget | undefined;
  authorizer: Authorizer | undefined;
  audit: AuditLog | undefined;
  metrics: ProxyMetrics;
  /** Told of a tenant Xero answered 403 for (see `XeroProxyRouteOptions.onForbidden`). */
  onForbidden?: (tenantId: string) => void;
  logger: Logger;
}

/** A running proxy: its route, and the connections to Xero to close at shutdown. */
export interface XeroProxy {
  readonly route: HttpRoute;
  /** Closes the kept-alive connections to Xero. */
  close(): void;
}

/** The default of {@link XeroProxyOptions.replayMaxBytes}. */
export const DEFAULT_REPLAY_MAX_BYTES = 1024 * 1024;

/** Builds the Xero API proxy of a broker's port (see `createXeroProxyRoute`). */
export function createXeroProxy(options: XeroProxyOptions, deps: XeroProxyDependencies): XeroProxy {
  const upstream = createUpstreamClient({ timeoutMs: options.timeoutMs ?? 60_000, ...(options.tls ? { tls: options.tls } : {}) });
  const route = createXeroProxyRoute({
    target: createTargetResolver({ apiUrl: options.apiUrl, ...(options.refused ? { refused: options.refused } : {}) }),
    broker: deps.broker,
    callBudget: deps.callBudget ?? unlimitedBudget,
    authorizer: deps.authorizer,
    upstream,
    replayMaxBytes: options.replayMaxBytes ?? DEFAULT_REPLAY_MAX_BYTES,
    audit: deps.audit,
    metrics: deps.metrics,
    onForbidden: deps.onForbidden,
    logger: deps.logger,
  });
  return { route, close: () => upstream.close() };
}
