import type * as http from "node:http";
import type { HttpRoute } from "../server/http-routes.js";

/** What a scrape returns. */
export interface Scrape {
  contentType: string;
  body: string;
}

/** `GET /metrics`: the Prometheus text exposition of `scrape()`. */
export function createMetricsRoute(scrape: () => Promise<Scrape>, path = "/metrics"): HttpRoute {
  return {
    method: "GET",
    path,
    handle(req, res) {
      const response = res as http.ServerResponse;
      return scrape().then(
        ({ contentType, body }) => {
          response.writeHead(200, {
            "content-type": contentType,
            "cache-control": "no-store",
            "content-length": Buffer.byteLength(body),
          });
          response.end(req.method === "HEAD" ? undefined : body);
        },
        () => {
          const body = "metrics collection failed\n";
          response.writeHead(500, { "content-type": "text/plain; charset=utf-8", "content-length": Buffer.byteLength(body) });
          response.end(req.method === "HEAD" ? undefined : body);
        },
      );
    },
  };
}
