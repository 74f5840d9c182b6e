import { Gauge, type Registry } from "prom-client";
import type { Clock } from "../clock.js";
import type { Store } from "../store/store.js";
import { REFRESH_TOKEN_LIFETIME_MS, type ConnectionState } from "../token-set.js";

const states: ConnectionState[] = ["active", "needs_reauthorization"];

/** Options for {@link createStateMetrics}. */
export interface StateMetricsOptions {
  store: Pick<Store, "tokens">;
  clock: Clock;
  /** Open WatchToken streams (and waiting long polls: both are subscriptions of the hub) now. */
  openWatchStreams: () => number;
}

/**
 * Registers the gauges read from the broker's state at each scrape: open
 * WatchToken streams, connections by state, and for each token set the
 * seconds until its access token and refresh token expire. Returns the
 * function that updates them from the store; call it before each scrape.
 */
export function createStateMetrics(registry: Registry, options: StateMetricsOptions): () => Promise<void> {
  new Gauge({
    name: "tokenbroker_watch_streams",
    help: "Open WatchToken streams, and GetToken long polls waiting for a newer token.",
    registers: [registry],
    collect() {
      this.set(options.openWatchStreams());
    },
  });
  const connections = new Gauge({
    name: "tokenbroker_connections",
    help: "Connections (token sets) by state: active, or needs_reauthorization (a person must re-authorise).",
    labelNames: ["state"] as const,
    registers: [registry],
  });
  const needsReauth = new Gauge({
    name: "tokenbroker_connection_needs_reauthorization",
    help: "1 when the connection's refresh token was rejected and a person must re-authorise it, else 0.",
    labelNames: ["connection_id"] as const,
    registers: [registry],
  });
  const accessExpiry = new Gauge({
    name: "tokenbroker_access_token_expires_in_seconds",
    help: "Seconds until the token set's access token expires (negative once expired).",
    labelNames: ["connection_id"] as const,
    registers: [registry],
  });
  const refreshExpiry = new Gauge({
    name: "tokenbroker_refresh_token_expires_in_seconds",
    help: "Seconds until the token set's refresh token dies unused (60 days after it was issued).",
    labelNames: ["connection_id"] as const,
    registers: [registry],
  });

  return async () => {
    const all = await options.store.tokens.listTokenStates();
    const now = options.clock.now();
    for (const g of [connections, needsReauth, accessExpiry, refreshExpiry]) g.reset();
    for (const state of states) connections.set({ state }, all.filter((t) => t.state === state).length);
    for (const t of all) {
      const labels = { connection_id: t.connectionId };
      needsReauth.set(labels, t.state === "needs_reauthorization" ? 1 : 0);
      accessExpiry.set(labels, (t.expiresAt - now) / 1000);
      refreshExpiry.set(labels, (t.refreshTokenIssuedAt + REFRESH_TOKEN_LIFETIME_MS - now) / 1000);
    }
  };
}
