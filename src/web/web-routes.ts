import type { AuditLog } from "../audit/audit-log.js";
import type { Clock } from "../clock.js";
import { DEFAULT_CONSENT_SCOPES } from "../consent/consent-config.js";
import { createConsentFlow, type ConsentFlow } from "../consent/consent-flow.js";
import type { Logger } from "../logger.js";
import type { HttpRoute } from "../server/http-routes.js";
import type { Store } from "../store/store.js";
import type { IdentityServer } from "../upstream/identity-server.js";
import { CONNECT_PATH, consentRoutes } from "./consent-routes.js";
import { STATUS_PATH, statusRoutes, type StatusRoutesOptions } from "./status-routes.js";

/** How the broker asks for consent. */
export interface ConsentSettings {
  /** Registered with the Xero app; default this server's own `/oauth/callback` (its real port). */
  redirectUri?: string;
  /** Default `openid profile email accounting.transactions accounting.settings offline_access`. */
  scopes?: readonly string[];
  /** How long a consent may take, ms (default 10 minutes). */
  stateTtlMs?: number;
}

/** Options for {@link createWebRoutes}. */
export interface WebRoutesOptions {
  /** What the status page lists and the consent flow stores into. */
  store: Pick<Store, "connections" | "consents">;
  /** The issuer the consent flow talks to. */
  identity: IdentityServer;
  /** Time source for expiry countdowns and state expiry. */
  clock: Clock;
  /** Where consent outcomes are logged (never a code, token or verifier). */
  logger?: Logger;
  /** Redirect URI, scopes, state lifetime. */
  consent?: ConsentSettings;
  /** Where each stored consent is recorded (the connection and its tenants). */
  audit?: AuditLog;
  /** The quota keeper, whose counts the status page shows per organisation. */
  quota?: StatusRoutesOptions["quota"];
}

/** The pages of the broker's port, and the consent flow they use once the server listens. */
export interface WebRoutes {
  /** `GET /` (status page), `GET /connect`, `GET <redirect URI path>`. */
  routes: HttpRoute[];
  /** Builds the consent flow once the server's URL is known (the default redirect URI uses its port). */
  listening(serverUrl: string): ConsentFlow;
}

/** The status page and the consent flow's routes, to serve beside the RPCs. */
export function createWebRoutes(options: WebRoutesOptions): WebRoutes {
  const settings = options.consent ?? {};
  let flow: ConsentFlow | undefined;
  const callbackPath = settings.redirectUri === undefined ? "/oauth/callback" : new URL(settings.redirectUri).pathname;
  const consent = (): ConsentFlow => {
    if (!flow) throw new Error("the consent flow is used before the server listens");
    return flow;
  };
  return {
    routes: [
      ...statusRoutes({
        store: options.store,
        clock: options.clock,
        quota: options.quota,
        ...(options.logger ? { logger: options.logger } : {}),
      }),
      ...consentRoutes({
        consent,
        callbackPath,
        donePath: STATUS_PATH,
        links: { retry: CONNECT_PATH, status: STATUS_PATH },
        ...(options.logger ? { logger: options.logger } : {}),
        ...(options.audit ? { audit: options.audit } : {}),
      }),
    ],
    listening(serverUrl) {
      flow = createConsentFlow({
        store: options.store,
        identity: options.identity,
        clock: options.clock,
        redirectUri: settings.redirectUri ?? `${serverUrl}${callbackPath}`,
        scopes: settings.scopes ?? DEFAULT_CONSENT_SCOPES,
        ...(settings.stateTtlMs === undefined ? {} : { stateTtlMs: settings.stateTtlMs }),
      });
      return flow;
    },
  };
}
