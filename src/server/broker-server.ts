import { setMaxListeners } from "node:events";
import { Code, ConnectError } from "@connectrpc/connect";
import { compressionBrotli, compressionGzip, connectNodeAdapter, type ConnectNodeAdapterOptions } from "@connectrpc/connect-node";
import { systemClock, type Clock } from "../clock.js";
import { whenAborted } from "../broker/abortable.js";
import type { RefresherOptions } from "../broker/refresher.js";
import { Scheduler, type SchedulerOptions } from "../broker/scheduler.js";
import { TenantRefresh, type TenantRefreshOptions } from "../broker/tenant-refresh.js";
import { tenantCheckLog } from "./tenant-check-log.js";
import { TokenBroker } from "../broker/token-broker.js";
import { errorFields, silentLogger, type Logger } from "../logger.js";
import { TokenServiceImpl } from "../service/token-service.js";
import type { Store } from "../store/store.js";
import type { IdentityServer } from "../upstream/identity-server.js";
import { routeHttp, type HttpRoute } from "./http-routes.js";
import type { RequestFailure } from "./request-guard.js";
import { portResponseHeaders } from "./response-headers.js";
import { clampDeadlines, MAX_DEADLINE_MS } from "./deadline-headers.js";
import { drainUnreadBodies } from "./drain-request.js";
import { guardBeforeBody, guardedCallOf } from "./guard-before-body.js";
import { createCallGuard, type CallGuard, type GuardStep } from "./call-guard.js";
import { guardedCallKey, guardInterceptor, TOKEN_SERVICE } from "./guard-interceptor.js";
import { connectFallback, connectUnaryFallback } from "./connect-fallback.js";
import { createConnectUnaryFastPath } from "./connect-unary-fast-path.js";
import type { ConnectionLimits } from "./connection-limits.js";
import type { GuardCounts } from "./connection-guard.js";
import { limitLog } from "./limit-log.js";
import { holdKey, holdOf, holdWatchStream, markHoldable } from "./held-connections.js";
import { createGrpcFastPath } from "./grpc-fast-path.js";
import { tokenServiceFastMethods } from "./token-service-fast-methods.js";
import { listenOnePort, type DualHandler, type OnePortServer, type OnePortTls } from "./one-port-server.js";
import { createServerSecurity, type BrokerAuthOptions } from "./server-security.js";
import type { AuditLog } from "../audit/audit-log.js";
import { createRoutes } from "./routes.js";
import { createConnectRouter, createContextValues } from "@connectrpc/connect";
import { TokenService } from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import type { ConsentFlow } from "../consent/consent-flow.js";
import { createWebRoutes, type ConsentSettings } from "../web/web-routes.js";
import { createHealthMonitor, type HealthMonitor } from "../health/health-monitor.js";
import { healthHttpRoutes } from "../health/health-http-routes.js";
import { createHealthService } from "../health/health-service.js";
import { createBrokerMetrics } from "../metrics/broker-metrics.js";
import { createNotifier, type Notifier, type NotifierOptions } from "../notify/notifier.js";
import type { CallBudget } from "../quota/call-budget.js";
import { createXeroProxy, type XeroProxyOptions } from "../proxy/create-proxy.js";
import type { QuotaKeeper } from "../quota/quota-keeper.js";

/** Options for {@link startBrokerServer}. */
export interface BrokerServerOptions {
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  /** Port (default 50051; 0 picks a free one). */
  port?: number;
  /** Where token sets live. The caller opens it and closes it after {@link BrokerServer.close}. */
  store: Store;
  /** The identity server tokens are refreshed at. */
  identity: IdentityServer;
  clock?: Clock;
  logger?: Logger;
  /** Default minimum validity of a returned token, ms (default 60 000). */
  defaultMinValidForMs?: number;
  refresher?: RefresherOptions;
  scheduler?: SchedulerOptions;
  /** The re-read of each connection's organisations from Xero (default every hour). */
  tenantRefresh?: TenantRefreshOptions;
  /** Largest request message accepted, bytes (default 64 KiB). */
  readMaxBytes?: number;
  /** Plain-HTTP routes served on the same port beside the RPCs (health, metrics, pages). */
  httpRoutes?: HttpRoute[];
  /**
   * The whole shutdown's deadline, ms (default 10 000): a refresh in flight
   * may commit and requests finish until then; then the refresh's request is
   * abandoned and every connection closed.
   */
  shutdownGraceMs?: number;
  /** The consent flow (`/connect`, the redirect URI) and status page (`/`): redirect URI and scopes. */
  consent?: ConsentSettings;
  /** Failure notifications: webhook URL and secret, warning days (default: log warnings only). */
  notifications?: NotifierOptions;
  /** Include the default process metrics at `/metrics` (default true). */
  processMetrics?: boolean;
  /** Require API keys for tokens and admin keys for the pages. Without it the port serves without authentication. */
  auth?: BrokerAuthOptions;
  /** Record tokens handed out, refreshes and admin sign-ins (`tokenbroker audit` shows them). */
  audit?: AuditLog;
  /** Serve HTTP/2 and HTTP/1.1 over TLS (ALPN) instead of cleartext; with `clientCa`, mutual TLS. */
  tls?: OnePortTls;
  /** Streams, request bytes, header and idle timeouts, connections per address (see `ConnectionLimits` for the defaults). */
  limits?: Partial<ConnectionLimits>;
  /**
   * Serve plain gRPC calls and unary Connect calls of the TokenService on
   * the fast paths (default true). False sends every call through
   * connect-node: the same answers, with more CPU per call (the differential
   * tests compare the two).
   */
  fastPaths?: boolean;
  /**
   * More guard steps (tracing, rate limits…), run on every TokenService call
   * after the port's own (debug line, audit, API key and scope, metrics),
   * whatever protocol and path serves it.
   */
  guardSteps?: readonly GuardStep[];
  /**
   * Serve the Xero API proxy at `/xero/*` (see docs/proxy.md): calls with the
   * channel's API key go to `apiUrl` with the tenant's access token. Off
   * without it.
   */
  proxy?: XeroProxyOptions;
  /** The proxy's budget of calls to Xero per organisation and app (default: `quota`, else `unlimitedBudget`: no limit). */
  callBudget?: CallBudget;
  /**
   * The quota keeper (`createCallBudget`): its metrics at `/metrics` and its
   * column on the status page. The caller creates and closes it.
   */
  quota?: QuotaKeeper;
}

/** A running broker; see {@link startBrokerServer}. */
export interface BrokerServer {
  /** Base URL of the port, e.g. `http://127.0.0.1:50051`. */
  readonly url: string;
  readonly port: number;
  readonly broker: TokenBroker;
  readonly scheduler: Scheduler;
  /** Re-reads each connection's organisations; `recheck(connectionId)` is for a 403 from Xero's API. */
  readonly tenants: TenantRefresh;
  /** The authorization-code flow behind `/connect` and the redirect URI. */
  readonly consent: ConsentFlow;
  /** Serving or not, and why: read by `grpc.health.v1.Health` and `/readyz`. */
  readonly health: HealthMonitor;
  /** Failure notifications (log warnings and webhooks); `idle()` waits for deliveries. */
  readonly notifier: Notifier;
  /** What the connection limits refused or closed so far (see `limits`). */
  readonly limitCounts: Readonly<GuardCounts>;
  /**
   * Graceful shutdown, within {@link BrokerServerOptions.shutdownGraceMs}:
   * stops accepting connections and starting upstream attempts, ends watch
   * streams with UNAVAILABLE (clients reconnect elsewhere), lets a refresh in
   * flight commit and unary requests finish until the deadline, then abandons
   * what is left and closes every connection.
   */
  close(): Promise<void>;
}

/**
 * Starts the token service on one port serving gRPC, gRPC-Web and Connect
 * over HTTP/1.1 and HTTP/2, with the proactive-refresh scheduler running.
 */
export async function startBrokerServer(options: BrokerServerOptions): Promise<BrokerServer> {
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? silentLogger;
  // Served at GET /metrics; fed by the broker's events, so the token logic knows nothing of Prometheus.
  const metrics = createBrokerMetrics({
    store: options.store,
    clock,
    openWatchStreams: () => broker.hub.size,
    quota: options.quota,
    ...(options.processMetrics === undefined ? {} : { processMetrics: options.processMetrics }),
  });
  const notifier = createNotifier({ ...options.notifications, store: options.store, logger });
  const security = createServerSecurity({ auth: options.auth, audit: options.audit, store: options.store, tls: !!options.tls, logger });
  const broker = new TokenBroker({
    store: options.store,
    identity: metrics.timeIdentity(options.identity),
    clock,
    ...(options.defaultMinValidForMs === undefined ? {} : { defaultMinValidForMs: options.defaultMinValidForMs }),
    ...(options.refresher ? { refresher: options.refresher } : {}),
    onRefresh: (event) => {
      const level = event.outcome === "ok" || event.outcome === "already_fresh" ? "info" : "warn";
      logger[level]({ event: "refresh", ...event }, `refresh ${event.outcome}`);
      metrics.onRefresh(event);
      security.onRefresh(event);
      notifier.onRefresh(event);
    },
    onWait: metrics.onWait,
    // A revoked key's WatchToken streams end with UNAUTHENTICATED, and get nothing after the revocation.
    ...(security.watchGate ? { watchGate: security.watchGate } : {}),
  });
  const scheduler = new Scheduler(broker, options.store.tokens, clock, {
    ...(options.store.changes ? { changes: options.store.changes } : {}),
    ...options.scheduler,
    onError: (e) => {
      if (!(e instanceof Error && e.name === "BrokerError")) logger.error(errorFields(e), "background refresh failed");
    },
    onPass: (states, now) => {
      notifier.onPass(states, now);
      options.scheduler?.onPass?.(states, now);
    },
  });
  const tenants = new TenantRefresh(options.store, metrics.timeIdentity(options.identity), broker.hub, clock, {
    ...options.tenantRefresh,
    listener: (event) => {
      tenantCheckLog(logger, event);
      metrics.onTenantCheck(event);
      options.tenantRefresh?.listener?.(event);
    },
  });
  const service = new TokenServiceImpl(broker, (e) => logger.error(errorFields(e), "internal error"));
  const health = createHealthMonitor({
    store: options.store,
    misconfiguration: () => broker.refresher.misconfiguration,
  });
  // The status page, /connect and the redirect URI's callback.
  const web = createWebRoutes({
    store: options.store,
    identity: options.identity,
    clock,
    logger,
    ...(options.consent ? { consent: options.consent } : {}),
    ...(options.audit ? { audit: options.audit } : {}),
    quota: options.quota,
  });
  // The Xero API proxy: its own API-key check (the channel's key, not an admin session), so not behind guardRoutes.
  const proxy =
    options.proxy &&
    createXeroProxy(options.proxy, {
      broker,
      callBudget: options.callBudget ?? options.quota,
      authorizer: security.authorizer,
      audit: options.audit,
      metrics: metrics.proxy,
      onForbidden: (tenantId) => void tenants.recheckTenant(tenantId),
      logger,
    });
  // A request whose handler failed: that request alone is answered 500 (or INTERNAL), logged once here.
  const onRequestFailure: RequestFailure = (e, request) =>
    logger.error({ ...errorFields(e), event: "request_failed", ...request }, "request failed");
  const shutdown = new AbortController();
  // Every request's context listens to the shutdown signal while it runs.
  setMaxListeners(0, shutdown.signal);
  // One guard for every TokenService call, whichever path serves it: the Connect handler (its interceptor and,
  // before the body is read, guardBeforeBody) and the gRPC fast path all run these steps, and only these.
  const guard = createCallGuard([...security.steps, metrics.servedStep, ...(options.guardSteps ?? [])]);
  const readMaxBytes = options.readMaxBytes ?? 64 * 1024;
  const connectOptions = {
    routes: createRoutes(service, createHealthService(health)),
    readMaxBytes,
    // Token messages (1–3 KB, mostly a base64 JWT) shrink by a quarter under gzip, but a fresh zlib
    // stream per message cost more CPU than the rest of a cached GetToken, on both ends (npm run bench).
    compressMinBytes: 16 * 1024,
    acceptCompression: [compressionGzip, compressionBrotli],
    shutdownSignal: shutdown.signal,
    // Longer deadlines are cut to this before Connect sees them (clampDeadlines); anything else longer is refused.
    maxTimeoutMs: MAX_DEADLINE_MS,
    // One interceptor: Connect builds the chain of interceptors again for every call.
    interceptors: [guardInterceptor(guard, [TOKEN_SERVICE], holdWatchStream)],
  } satisfies ConnectNodeAdapterOptions;
  const rpcHandler = connectNodeAdapter({
    ...connectOptions,
    contextValues: (req) => createContextValues().set(holdKey, holdOf(req)).set(guardedCallKey, guardedCallOf(req)),
    // Anything that is not an RPC: health, metrics, pages.
    fallback: routeHttp(
      [
        ...(proxy ? [proxy.route] : []),
        ...security.guardRoutes([...healthHttpRoutes(health), metrics.route, ...(options.httpRoutes ?? []), ...web.routes]),
      ],
      onRequestFailure,
    ),
  });

  // Plain gRPC calls and unary Connect calls of the TokenService skip connect-node's per-call machinery (cached
  // GetToken, refresh storms, fan-out to thousands of WatchToken streams) but not the guard; a body that is not
  // one well-formed message is answered by Connect's own handler of the method.
  const onInternalError = (e: unknown) => logger.error(errorFields(e), "internal error");
  const router = createConnectRouter(connectOptions);
  connectOptions.routes(router);
  const methods = tokenServiceFastMethods({ broker, onInternalError });
  const fallbackOptions = { handlers: router.handlers, responseHeaders: portResponseHeaders(!!options.tls) };
  const grpcFastPath = createGrpcFastPath({
    methods,
    guard,
    readMaxBytes,
    fallback: connectFallback(fallbackOptions),
    onInternalError,
    responseHeaders: portResponseHeaders(!!options.tls),
  });
  const connectFastPath = createConnectUnaryFastPath({
    service: TokenService,
    methods,
    guard,
    readMaxBytes,
    compressMinBytes: connectOptions.compressMinBytes,
    acceptCompression: connectOptions.acceptCompression,
    fallback: connectUnaryFallback(fallbackOptions),
    onInternalError,
    responseHeaders: portResponseHeaders(!!options.tls),
  });
  const fast = options.fastPaths ?? true;
  const connectPath = drainUnreadBodies(withGuard(guard, clampDeadlines(rpcHandler)));
  const server: OnePortServer = await listenOnePort({
    host: options.host ?? "127.0.0.1",
    port: options.port ?? 50051,
    handler: fast ? connectFastPath.requests(connectPath) : connectPath,
    responseHeaders: portResponseHeaders(!!options.tls),
    ...(fast ? { streamHandler: (stream, headers) => grpcFastPath(stream, headers) || connectFastPath.stream(stream, headers) } : {}),
    onRequestFailure,
    ...(options.tls ? { tls: options.tls } : {}),
    ...(options.limits ? { limits: options.limits } : {}),
    onLimit: limitLog(logger),
  });
  scheduler.start();
  tenants.start();
  const host = server.host.includes(":") ? `[${server.host}]` : server.host;
  const url = `${options.tls ? "https" : "http"}://${host}:${server.port}`;
  logger.info({ event: "listening", url }, `tokenbroker listening on ${url}`);
  const consent = web.listening(url);

  let closing: Promise<void> | undefined;
  return {
    url,
    port: server.port,
    broker,
    scheduler,
    tenants,
    consent,
    health,
    notifier,
    limitCounts: server.limitCounts,
    close() {
      closing ??= (async () => {
        // One deadline for the whole shutdown, shared by the refresh in flight and the connections. A refresh
        // still unanswered is abandoned a little before it, so that its callers get their UNAVAILABLE in time.
        const graceMs = options.shutdownGraceMs ?? 10_000;
        const deadline = new AbortController();
        const refreshDeadline = new AbortController();
        const timers = [
          setTimeout(() => refreshDeadline.abort(), graceMs - Math.min(500, graceMs / 4)),
          setTimeout(() => deadline.abort(), graceMs),
        ];
        health.shutdown(); // first: load balancers stop sending before anything else stops
        server.stopAccepting();
        broker.refresher.stop(); // no upstream attempt starts from now on
        await scheduler.stop();
        await tenants.stop();
        await notifier.close();
        await broker.close(refreshDeadline.signal);
        server.closeGracefully();
        await Promise.race([server.idle().then(() => deadline.abort()), whenAborted(deadline.signal)]);
        timers.forEach(clearTimeout);
        shutdown.abort(new ConnectError("tokenbroker is shutting down", Code.Unavailable));
        server.destroyAll();
        proxy?.close();
        logger.info({ event: "stopped" }, "tokenbroker stopped");
      })();
      return closing;
    },
  };
}

/**
 * The RPC handler behind the guard's header checks of TokenService calls
 * (the API key), before their bodies are read, with each request marked so
 * that an authenticated WatchToken call can hold its connection past the
 * idle timeout.
 */
function withGuard(guard: CallGuard, rpcHandler: DualHandler): DualHandler {
  const guarded = guardBeforeBody({ service: TOKEN_SERVICE, guard }, rpcHandler);
  return (req, res) => {
    markHoldable(req, res);
    guarded(req, res);
  };
}
