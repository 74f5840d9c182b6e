import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { RefreshCause, RefreshListener, RefreshOutcome, RefreshWaitListener } from "../broker/refresh-events.js";
import { RefreshesPerExpiry } from "./refreshes-per-expiry.js";

const causes: RefreshCause[] = ["caller", "report", "proactive", "keepalive", "recovery"];
const outcomes: RefreshOutcome[] = ["ok", "already_fresh", "invalid_grant", "invalid_client", "transient_error"];

/** Listeners that turn the broker's refresh and wait events into metrics. */
export interface RefreshMetrics {
  onRefresh: RefreshListener;
  onWait: RefreshWaitListener;
}

/**
 * Registers the refresh metrics: refreshes by cause and outcome, refreshes
 * per expiry of each token set, and how long callers waited for a refresh.
 */
export function createRefreshMetrics(registry: Registry): RefreshMetrics {
  const refreshes = new Counter({
    name: "tokenbroker_refreshes_total",
    help: "Refreshes finished, by why they started (caller, report, proactive, keepalive, recovery) and how they ended.",
    labelNames: ["cause", "outcome"] as const,
    registers: [registry],
  });
  // Every combination starts at 0, so that increase() works from the first scrape.
  for (const cause of causes) for (const outcome of outcomes) refreshes.inc({ cause, outcome }, 0);

  const perExpiry = new Gauge({
    name: "tokenbroker_refreshes_per_expiry",
    help: "Times the refresh token was spent for the latest expiry of each token set, as seen by this process: 1 is right, 2 or more is a double refresh.",
    labelNames: ["connection_id"] as const,
    registers: [registry],
  });
  const waits = new Histogram({
    name: "tokenbroker_refresh_wait_seconds",
    help: "How long callers waited for a refresh before they got a token (only callers that had to wait).",
    labelNames: ["cause", "outcome"] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });

  const spentByAnotherClient = new Counter({
    name: "tokenbroker_refresh_token_spent_elsewhere_total",
    help: "Refresh tokens Xero refused although tokenbroker never used them while their grant was still alive: another client holding a copy spent them (each needs re-authorisation).",
    registers: [registry],
  });

  const tracker = new RefreshesPerExpiry();
  return {
    onRefresh(event) {
      refreshes.inc({ cause: event.cause, outcome: event.outcome });
      if (event.spentByAnotherClient) spentByAnotherClient.inc();
      const count = tracker.record(event);
      if (count !== undefined) perExpiry.set({ connection_id: event.connectionId }, count);
    },
    onWait(event) {
      waits.observe({ cause: event.cause, outcome: event.outcome }, event.waitedMs / 1000);
    },
  };
}
