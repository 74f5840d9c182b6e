import { systemClock, type Clock } from "../clock.js";
import { errorFields, silentLogger, type Logger } from "../logger.js";
import type { QuotaKeeper } from "../quota/quota-keeper.js";
import type { Store } from "../store/store.js";
import type { HttpRoute } from "../server/http-routes.js";
import { requestTarget } from "../server/request-target.js";
import { CONNECT_PATH } from "./consent-routes.js";
import { renderErrorPage } from "./error-page.js";
import { newNonce, type PageParts, renderPage, sendPage } from "./page.js";
import { renderStatusPage } from "./status-page.js";

/** Options for {@link statusRoutes}. */
export interface StatusRoutesOptions {
  /** Where the connections are read from. */
  store: Pick<Store, "connections">;
  /** The broker's clock (countdowns and ages are computed with it). */
  clock?: Clock;
  /** Where a failure to read the store is logged. */
  logger?: Logger;
  /** The quota keeper: each organisation's calls in the last hour and calls left (a column of the tenant tables). */
  quota?: Pick<QuotaKeeper, "limits" | "usage"> | undefined;
}

/** The status page, `GET /`. */
export const STATUS_PATH = "/";

/** `GET /`: the status page, rendered from the store on every request. */
export function statusRoutes(options: StatusRoutesOptions): HttpRoute[] {
  const clock = options.clock ?? systemClock;
  return [
    {
      method: "GET",
      path: STATUS_PATH,
      async handle(req, res) {
        const connected = requestTarget(req).query.get("connected") ?? undefined;
        const nonce = newNonce();
        let page: PageParts;
        try {
          const [connections, usage] = await Promise.all([options.store.connections.listConnections(), options.quota?.usage()]);
          const quota = options.quota &&
            usage && { limits: options.quota.limits, tenants: new Map(usage.tenants.map((t) => [t.tenantId, t])) };
          page = renderStatusPage({ connections, now: clock.now(), connectPath: CONNECT_PATH, connected, quota });
        } catch (e) {
          (options.logger ?? silentLogger).error(errorFields(e), "status page failed");
          const failed = renderErrorPage({
            title: "The status cannot be read",
            message: "The database could not be read.",
            statusPath: STATUS_PATH,
            nothingStored: false,
          });
          return sendPage(res, 500, renderPage(failed, nonce), nonce);
        }
        sendPage(res, 200, renderPage(page, nonce), nonce);
      },
    },
  ];
}
