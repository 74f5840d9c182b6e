import { randomBytes } from "node:crypto";
import type { AuditLog } from "../audit/audit-log.js";
import { consentAuditEntry } from "../consent/consent-audit.js";
import type { ConsentFlow, StartedConsent } from "../consent/consent-flow.js";
import { ConsentError, type ConsentErrorKind } from "../consent/consent-error.js";
import { errorFields, silentLogger, type Logger } from "../logger.js";
import type { HttpRequest, HttpResponse, HttpRoute } from "../server/http-routes.js";
import { requestTarget } from "../server/request-target.js";
import { renderErrorPage } from "./error-page.js";
import { newNonce, renderPage, sendPage, sendRedirect } from "./page.js";

/** Options for {@link consentRoutes}. */
export interface ConsentRoutesOptions {
  /** The flow; a function so that the server can build it once it knows its own URL. */
  consent: () => ConsentFlow;
  /** The path of the redirect URI, where the issuer sends the browser back. */
  callbackPath: string;
  /** Where the browser goes after a consent (the status page, or a "done" page). */
  donePath: string;
  /** Links on the error page: "Start again" and the status page (none when the CLI serves the callback). */
  links?: { retry: string; status: string };
  /** Where consent outcomes are logged (never a code, token or verifier). */
  logger?: Logger;
  /** Where each stored consent is recorded: the connection, its Xero user and tenants. */
  audit?: AuditLog;
}

/** The path that starts a consent. */
export const CONNECT_PATH = "/connect";

/** The path of the one-time link `tokenbroker connect` prints (`?t=<secret>`): it binds its consent to the browser that opens it. */
export const CLAIM_PATH = "/connect/claim";

/** Titles of the error page by kind. */
const TITLES: Record<ConsentErrorKind, string> = {
  missing_state: "The answer from Xero cannot be checked",
  unknown_state: "This consent was not started here",
  reused_state: "This consent was already completed",
  expired_state: "This consent has expired",
  wrong_browser: "This consent was started in another browser",
  denied: "Xero did not grant access",
  missing_code: "The answer from Xero is incomplete",
  code_rejected: "Xero refused the authorisation",
  unavailable: "Xero could not be reached",
};

/**
 * `GET /connect` sends the browser to the issuer's consent page (binding the
 * consent to this browser with a cookie); `GET /connect/claim?t=…` does the
 * same for a consent `tokenbroker connect` started, once per link;
 * `GET <callback path>` completes it and redirects to the status page, or shows
 * a clear error page (400; 403 for a browser without the consent's cookie,
 * which leaves the consent open; 502 when Xero could not be reached) and
 * stores nothing.
 */
export function consentRoutes(options: ConsentRoutesOptions): HttpRoute[] {
  const logger = options.logger ?? silentLogger;
  return [
    {
      method: "GET",
      path: CONNECT_PATH,
      async handle(req, res) {
        const flow = options.consent();
        const redirect = new URL(flow.redirectUri);
        // The cookie must come back with the callback: start on the redirect URI's host.
        if (requestHost(req) !== redirect.host && !requestTarget(req).query.has("moved")) {
          return sendRedirect(res, new URL(`${CONNECT_PATH}?moved=1`, redirect).href);
        }
        try {
          const secret = randomBytes(32).toString("base64url");
          const started = await flow.begin({ browserSecret: secret });
          logger.info({ event: "consent_started" }, "consent started");
          sendRedirect(res, started.url.href, { "set-cookie": bindingCookie(flow, started, secret, options.callbackPath) });
        } catch (e) {
          notStarted(e, res);
        }
      },
    },
    {
      method: "GET",
      path: CLAIM_PATH,
      async handle(req, res) {
        const flow = options.consent();
        const link = new URL(req.url ?? "/", "http://x").searchParams.get("t") ?? "";
        try {
          const secret = randomBytes(32).toString("base64url");
          const started = /^[\w-]{43}$/.test(link) ? await flow.claim(link, secret) : undefined;
          if (!started) {
            logger.warn({ event: "consent_link_refused" }, "consent link refused: unknown, opened before or expired");
            return sendError(
              res,
              410,
              "This link cannot be used",
              "This link has already been opened (it works once, in one browser), has expired, or is unknown. Run tokenbroker connect again.",
              options,
            );
          }
          logger.info({ event: "consent_started", link: true }, "consent started from a tokenbroker connect link");
          sendRedirect(res, started.url.href, { "set-cookie": bindingCookie(flow, started, secret, options.callbackPath) });
        } catch (e) {
          notStarted(e, res);
        }
      },
    },
    {
      method: "GET",
      path: options.callbackPath,
      async handle(req, res) {
        const params = requestTarget(req).query;
        const state = params.get("state") ?? "";
        const browserSecret = state === "" ? undefined : cookies(req)[cookieName(state)];
        const clear = state === "" ? {} : { "set-cookie": `${cookieName(state)}=; Path=${options.callbackPath}; Max-Age=0` };
        try {
          const stored = await options.consent().complete(params, { browserSecret });
          logger.info(
            {
              event: "consent_stored",
              connectionId: stored.connectionId,
              created: stored.created,
              tenants: stored.tenants.length,
              added: stored.added.length,
              gone: stored.gone.length,
              ...(stored.tenantsError === undefined ? {} : { tenantsError: stored.tenantsError }),
            },
            "consent stored",
          );
          options.audit?.record(consentAuditEntry(stored));
          sendRedirect(res, `${options.donePath}?connected=${encodeURIComponent(stored.connectionId)}`, clear);
        } catch (e) {
          if (e instanceof ConsentError) {
            logger.warn({ event: "consent_refused", kind: e.kind }, `consent refused: ${e.kind}`);
            const status = e.kind === "unavailable" ? 502 : e.kind === "wrong_browser" ? 403 : 400;
            return sendError(res, status, TITLES[e.kind], e.message, options, clear);
          }
          logger.error(errorFields(e), "consent failed");
          sendError(res, 500, "The consent could not be completed", "An unexpected error occurred.", options, clear);
        }
      },
    },
  ];

  function notStarted(e: unknown, res: HttpResponse): void {
    logger.warn(errorFields(e), "consent could not be started");
    const message = e instanceof Error && e.name === "UpstreamError" ? e.message : "unexpected error";
    sendError(res, 502, "Xero could not be reached", `The consent could not be started: ${message}.`, options);
  }
}

/** The cookie that binds a consent to this browser: only the callback sees it, for as long as the consent lives. */
function bindingCookie(flow: ConsentFlow, started: StartedConsent, secret: string, callbackPath: string): string {
  return [
    `${cookieName(started.state)}=${secret}`,
    `Path=${callbackPath}`,
    `Max-Age=${Math.ceil(flow.stateTtlMs / 1000)}`,
    "HttpOnly",
    "SameSite=Lax",
    ...(new URL(flow.redirectUri).protocol === "https:" ? ["Secure"] : []),
  ].join("; ");
}

function sendError(
  res: HttpResponse,
  status: number,
  title: string,
  message: string,
  options: ConsentRoutesOptions,
  headers: Record<string, string> = {},
): void {
  const nonce = newNonce();
  const page = renderErrorPage({
    title,
    message,
    ...(options.links ? { retryPath: options.links.retry, statusPath: options.links.status } : {}),
  });
  sendPage(res, status, renderPage(page, nonce), nonce, headers);
}

/** One cookie per consent, so that two consents started in two tabs do not clash. */
function cookieName(state: string): string {
  return `tokenbroker_consent_${state.replace(/[^A-Za-z0-9_-]/g, "").slice(0, 16)}`;
}

function cookies(req: HttpRequest): Record<string, string> {
  const out: Record<string, string> = {};
  for (const part of (req.headers.cookie ?? "").split(";")) {
    const i = part.indexOf("=");
    if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return out;
}

function requestHost(req: HttpRequest): string | undefined {
  const authority = req.headers[":authority"];
  return (typeof authority === "string" ? authority : undefined) ?? req.headers.host;
}
