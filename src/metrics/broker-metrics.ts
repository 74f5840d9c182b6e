import type { GuardStep } from "../server/call-guard.js";
import { Registry } from "prom-client";
import type { RefreshListener, RefreshWaitListener } from "../broker/refresh-events.js";
import type { Clock } from "../clock.js";
import type { HttpRoute } from "../server/http-routes.js";
import type { Store } from "../store/store.js";
import type { IdentityServer } from "../upstream/identity-server.js";
import type { QuotaKeeper } from "../quota/quota-keeper.js";
import { createMetricsRoute } from "./metrics-route.js";
import { processMetricsRegistry } from "./process-metrics.js";
import { createProxyMetrics, type ProxyMetrics } from "./proxy-metrics.js";
import { createRefreshMetrics } from "./refresh-metrics.js";
import { createQuotaMetrics } from "./quota-metrics.js";
import { createServedMetrics } from "./served-metrics.js";
import { createStateMetrics } from "./state-metrics.js";
import { createTenantCheckMetrics } from "./tenant-check-metrics.js";
import type { TenantCheckListener } from "../broker/tenant-refresh.js";
import { createUpstreamMetrics } from "./upstream-metrics.js";

/** Options for {@link createBrokerMetrics}. */
export interface BrokerMetricsOptions {
  store: Pick<Store, "tokens">;
  clock: Clock;
  /** Open WatchToken streams now (read at each scrape). */
  openWatchStreams: () => number;
  /** Include the default process metrics (default true). */
  processMetrics?: boolean;
  /** The quota keeper, whose calls left, queue and 429s are shown too. */
  quota?: QuotaKeeper | undefined;
}

/** One server's metrics and the hooks that feed them. */
export interface BrokerMetrics {
  /** This server's own registry (the process metrics are added at scrape time). */
  readonly registry: Registry;
  /** Feed the broker's refresh events here. */
  readonly onRefresh: RefreshListener;
  /** Feed the broker's wait events here. */
  readonly onWait: RefreshWaitListener;
  /** Feed the re-reads of organisations here. */
  readonly onTenantCheck: TenantCheckListener;
  /** Counts tokens served: a step of the port's guard (see `createCallGuard`). */
  readonly servedStep: GuardStep;
  /** Calls to the Xero API proxy, fed by the proxy. */
  readonly proxy: ProxyMetrics;
  /** `identity`, with each upstream call timed. */
  timeIdentity<T extends IdentityServer>(identity: T): T;
  /** `GET /metrics` on the broker's port. */
  readonly route: HttpRoute;
  /** The Prometheus text exposition, as served at `/metrics`. */
  scrape(): Promise<{ contentType: string; body: string }>;
}

/**
 * The broker's Prometheus metrics, in a registry of its own so that several
 * servers in one process do not clash. The token logic knows nothing of
 * them: it emits events, and the functions here turn them into metrics. No
 * label ever holds a token: only connection ids, RPC names, causes, outcomes.
 */
export function createBrokerMetrics(options: BrokerMetricsOptions): BrokerMetrics {
  const registry = new Registry();
  const refresh = createRefreshMetrics(registry);
  const served = createServedMetrics(registry);
  const timeIdentity = createUpstreamMetrics(registry);
  const proxy = createProxyMetrics(registry);
  const updateState = createStateMetrics(registry, options);
  if (options.quota) createQuotaMetrics(registry, options.quota);
  const exposed = options.processMetrics === false ? registry : Registry.merge([registry, processMetricsRegistry()]);
  const scrape = async () => {
    await updateState();
    return { contentType: exposed.contentType, body: await exposed.metrics() };
  };
  return {
    registry,
    onRefresh: refresh.onRefresh,
    onWait: refresh.onWait,
    onTenantCheck: createTenantCheckMetrics(registry),
    servedStep: served.step,
    proxy,
    timeIdentity,
    route: createMetricsRoute(scrape),
    scrape,
  };
}
