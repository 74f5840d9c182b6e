import { sendJson, type HttpRoute } from "../server/http-routes.js";
import type { HealthMonitor } from "./health-monitor.js";

/**
 * Probes for load balancers and orchestrators, on the RPC port:
 * `GET /healthz` is 200 while the process runs (liveness); `GET /readyz` is
 * 200 while the broker is serving and 503 with the reason otherwise
 * (readiness): `{"status":"not_ready","reason":"database unavailable"}`.
 */
export function healthHttpRoutes(monitor: HealthMonitor): HttpRoute[] {
  return [
    {
      method: "GET",
      path: "/healthz",
      handle: (_req, res) => sendJson(res, 200, { status: "alive" }),
    },
    {
      method: "GET",
      path: "/readyz",
      handle: (_req, res) => {
        monitor
          .check()
          .then((readiness) =>
            readiness.ready
              ? sendJson(res, 200, { status: "ready" })
              : sendJson(res, 503, { status: "not_ready", reason: readiness.reason }),
          )
          .catch(() => res.destroy()); // the prober went away meanwhile
      },
    },
  ];
}
