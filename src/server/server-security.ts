import { Code, ConnectError } from "@connectrpc/connect";
import type { AuditLog } from "../audit/audit-log.js";
import { createAuditStep } from "../audit/audit-step.js";
import { createAuthStep } from "../auth/auth-step.js";
import type { Authenticator } from "../auth/authenticator.js";
import { createAuthorizer, type Authorizer } from "../auth/authorize.js";
import { adminOf, createAdminGate } from "../auth/require-admin.js";
import type { RefreshEvent } from "../broker/refresh-events.js";
import type { WatchGate } from "../broker/watch-hub.js";
import { errorFields, type Logger } from "../logger.js";
import type { Store } from "../store/store.js";
import type { HttpRoute } from "./http-routes.js";
import type { GuardStep } from "./call-guard.js";
import { requestTarget } from "./request-target.js";
import { createDebugLineStep } from "./rpc-debug-line.js";

/** Authentication of the broker's port (see `startBrokerServer`'s `auth`). */
export interface BrokerAuthOptions {
  /** Resolves `authorization: Bearer` keys. */
  authenticator: Authenticator;
  /**
   * How often the keys behind open WatchToken streams are checked for
   * revocation, ms (default 500). They are also checked, past every cache,
   * before each new token is pushed to them.
   */
  revocationCheckMs?: number;
  /**
   * Plain-HTTP paths served without an admin key. Default: the probes and
   * metrics (`/healthz`, `/readyz`, `/livez`, `/metrics`), `/login`, `/logout`
   * and OAuth redirects (paths ending in `/callback`, which their one-time
   * `state` and the consent's browser cookie protect: a `SameSite=Strict`
   * cookie is not sent on the redirect back from Xero), and `/connect/claim`
   * (the one-time link `tokenbroker connect` prints, its own credential).
   * Every other route needs an admin key or session.
   */
  publicPaths?: readonly string[];
}

const DEFAULT_PUBLIC = ["/healthz", "/readyz", "/livez", "/metrics", "/login", "/logout", "/connect/claim"];
const REVOKED = "this API key was revoked; the stream is closed";

/** What `startBrokerServer` adds to its port for authentication, scopes and audit. */
export interface ServerSecurity {
  /**
   * The guard steps of TokenService calls, outermost first: debug line,
   * audit, then API key and scope (those configured). The port runs them
   * on every path (see `createCallGuard`).
   */
  steps: GuardStep[];
  /** The plain-HTTP routes with admin-only ones wrapped in `requireAdmin`, plus `/login` and `/logout`. */
  guardRoutes(routes: HttpRoute[]): HttpRoute[];
  /** Records a refresh in the audit log. */
  onRefresh(event: RefreshEvent): void;
  /**
   * Ends the WatchToken streams of a revoked key with UNAUTHENTICATED (the
   * broker's `watchGate`; streams are owned by their key's hash). Undefined
   * without API keys.
   */
  watchGate: WatchGate | undefined;
  /** The API-key and scope decisions of the port, for the routes that are not RPCs (the Xero API proxy); undefined without API keys. */
  authorizer: Authorizer | undefined;
}

/** Options for {@link createServerSecurity}. */
export interface ServerSecurityOptions {
  auth: BrokerAuthOptions | undefined;
  audit: AuditLog | undefined;
  store: Pick<Store, "tokens">;
  /** Served over TLS (cookies get `Secure`). */
  tls: boolean;
  /** Gets one debug line per call: method, key name, tenant or connection, status, duration. */
  logger?: Logger;
}

/** Wires API keys, tenant scopes, admin pages and the audit log into the broker's port. */
export function createServerSecurity(options: ServerSecurityOptions): ServerSecurity {
  const { auth, audit } = options;
  const steps: GuardStep[] = [];
  if (options.logger) steps.push(createDebugLineStep(options.logger));
  if (audit) steps.push(createAuditStep(audit));
  const authorizerOptions = auth && {
    authenticator: auth.authenticator,
    tenantsOfConnection: async (id: string) => (await options.store.tokens.getToken(id))?.tenantIds,
  };
  if (authorizerOptions) steps.push(createAuthStep(authorizerOptions));
  const gate =
    auth &&
    createAdminGate({
      authenticator: auth.authenticator,
      secureCookies: options.tls,
      onSession: ({ action, principal }) => audit?.record({ actor: principal.name, action, outcome: "ok" }),
      onSignInFailed: ({ client, principal, lockedForMs }) => {
        audit?.record({ actor: principal?.name, action: "login", outcome: principal ? "not_admin" : "failed", detail: `client=${client}` });
        if (lockedForMs === 0) return;
        audit?.record({ actor: undefined, action: "login", outcome: "locked", detail: `client=${client} for=${lockedForMs / 1000}s` });
        options.logger?.warn(
          { event: "sign_in_locked", client, lockedForMs },
          `too many failed sign-ins from ${client}: locked for ${lockedForMs / 1000} s`,
        );
      },
    });
  const publicPaths = new Set(auth?.publicPaths ?? DEFAULT_PUBLIC);
  const isPublic = (path: string) => publicPaths.has(path) || (auth?.publicPaths === undefined && path.endsWith("/callback"));
  /** An admin page's handler that records who used it (viewing the status page is not an action). */
  const audited =
    (route: HttpRoute): HttpRoute["handle"] =>
    (req, res) => {
      const { path } = requestTarget(req);
      if (audit && !(path === "/" && (req.method === "GET" || req.method === "HEAD"))) {
        audit.record({
          actor: adminOf(req)?.name,
          action: path === "/connect" ? "connect" : `${(req.method ?? "GET").toLowerCase()} ${path.slice(0, 200)}`,
          outcome: "ok",
        });
      }
      return route.handle(req, res);
    };
  return {
    steps,
    authorizer: authorizerOptions && createAuthorizer(authorizerOptions),
    guardRoutes(routes) {
      if (!gate) return routes;
      return [...routes.map((r) => (isPublic(r.path) ? r : { ...r, handle: gate.requireAdmin(audited(r)) })), ...gate.routes];
    },
    watchGate: auth && {
      everyMs: auth.revocationCheckMs ?? 500,
      refuse(keyHash) {
        try {
          return auth.authenticator.stillActive(keyHash) ? undefined : new ConnectError(REVOKED, Code.Unauthenticated);
        } catch (e) {
          options.logger?.error(errorFields(e), "cannot check the API key of open WatchToken streams");
          return new ConnectError("tokenbroker cannot check this API key now; reconnect", Code.Unavailable);
        }
      },
    },
    onRefresh(event) {
      if (event.outcome === "already_fresh") return; // nothing was refreshed
      audit?.record({
        actor: "broker",
        action: "refresh",
        connectionId: event.connectionId,
        outcome: event.outcome,
        detail: event.cause,
      });
    },
  };
}
