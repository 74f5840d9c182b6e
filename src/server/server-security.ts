import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { createAuditInterceptor } from "../audit/audit-interceptor.js";
import type { AuditLog } from "../audit/audit-log.js";
import { auditCall } from "../audit/audit-call.js";
import type { Principal } from "../auth/api-key.js";
import { createAuthInterceptor, principalKey } from "../auth/auth-interceptor.js";
import { createAuthorizer } from "../auth/authorize.js";
import { firstMessage, selectorOf } from "../auth/first-message.js";
import type { Authenticator } from "../auth/authenticator.js";
import { adminOf, createAdminGate } from "../auth/require-admin.js";
import type { RefreshEvent } from "../broker/refresh-events.js";
import type { Logger } from "../logger.js";
import type { TokenStore } from "../store/token-store.js";
import type { HttpRoute } from "./http-routes.js";
import { requestTarget } from "./request-target.js";
import { startRpcDebugLine } from "./rpc-debug-line.js";

/** Authentication of the broker's port (see `startBrokerServer`'s `auth`). */
export interface BrokerAuthOptions {
  /** Resolves `authorization: Bearer` keys. */
  authenticator: Authenticator;
  /**
   * Plain-HTTP paths served without an admin key. Default: the probes and
   * metrics (`/healthz`, `/readyz`, `/livez`, `/metrics`), `/login`, `/logout`
   * and OAuth redirects (paths ending in `/callback`, which their one-time
   * `state` protects: a `SameSite=Strict` cookie is not sent on the redirect
   * back from Xero). Every other route needs an admin key or session.
   */
  publicPaths?: readonly string[];
}

const DEFAULT_PUBLIC = ["/healthz", "/readyz", "/livez", "/metrics", "/login", "/logout"];

/** What `startBrokerServer` adds to its port for authentication, scopes and audit. */
export interface ServerSecurity {
  /** Connect interceptors, outermost first: audit, then authentication and scope. */
  interceptors: Interceptor[];
  /** The plain-HTTP routes with admin-only ones wrapped in `requireAdmin`, plus `/login` and `/logout`. */
  guardRoutes(routes: HttpRoute[]): HttpRoute[];
  /** Records a refresh in the audit log. */
  onRefresh(event: RefreshEvent): void;
  /**
   * The same checks and records as {@link ServerSecurity.interceptors}, for a
   * TokenService call served outside Connect (the gRPC fast path).
   */
  guardCall(method: string, authorization: string | undefined, message: unknown): GuardedCall;
}

/** One TokenService call served outside Connect, checked and recorded as the interceptors do (see `guardCall`). */
export interface GuardedCall {
  /** Checks the API key and its scope: throws the auth interceptor's ConnectErrors, and audits and logs a refusal. */
  authorize(): Promise<void>;
  /** Audits a message sent (one entry if it carries a token). */
  sent(token: { connectionId: string } | undefined): void;
  /** Logs the call's debug line once it ended (after `authorize` succeeded), with its error if any. */
  ended(error?: unknown): void;
}

/** Options for {@link createServerSecurity}. */
export interface ServerSecurityOptions {
  auth: BrokerAuthOptions | undefined;
  audit: AuditLog | undefined;
  store: TokenStore;
  /** Served over TLS (cookies get `Secure`). */
  tls: boolean;
  /** Gets one debug line per call: method, key name, tenant or connection, status, duration. */
  logger?: Logger;
}

/** Wires API keys, tenant scopes, admin pages and the audit log into the broker's port. */
export function createServerSecurity(options: ServerSecurityOptions): ServerSecurity {
  const { auth, audit } = options;
  const interceptors: Interceptor[] = [];
  const authorizer =
    auth &&
    createAuthorizer({
      authenticator: auth.authenticator,
      tenantsOfConnection: async (id) => (await options.store.getToken(id))?.tenantIds,
    });
  if (options.logger) interceptors.push(debugLog(options.logger));
  if (audit) interceptors.push(createAuditInterceptor({ audit }));
  if (auth) {
    interceptors.push(
      createAuthInterceptor({
        authenticator: auth.authenticator,
        tenantsOfConnection: async (id) => (await options.store.getToken(id))?.tenantIds,
      }),
    );
  }
  const gate =
    auth &&
    createAdminGate({
      authenticator: auth.authenticator,
      secureCookies: options.tls,
      onSession: ({ action, principal }) => audit?.record({ actor: principal.name, action, outcome: "ok" }),
    });
  const publicPaths = new Set(auth?.publicPaths ?? DEFAULT_PUBLIC);
  const isPublic = (path: string) => publicPaths.has(path) || (auth?.publicPaths === undefined && path.endsWith("/callback"));
  /** An admin page's handler that records who used it (viewing the status page is not an action). */
  const audited = (route: HttpRoute): HttpRoute["handle"] => (req, res) => {
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
    interceptors,
    guardRoutes(routes) {
      if (!gate) return routes;
      return [
        ...routes.map((r) => (isPublic(r.path) ? r : { ...r, handle: gate.requireAdmin(audited(r)) })),
        ...gate.routes,
      ];
    },
    guardCall(method, authorization, message) {
      // As the interceptors, outermost first: debug line, audit, then key and scope.
      const logger = options.logger?.isLevelEnabled("debug") ? options.logger : undefined;
      if (!authorizer && !audit && !logger) return UNGUARDED; // nothing to check or record: nothing held per call
      const selector = selectorOf(message);
      let principal: Principal | undefined;
      const key = () => principal?.name;
      const line = logger && startRpcDebugLine(logger, method, selector, key);
      const calls = audit && auditCall(audit, method, selector, key);
      const codeOf = (e: unknown) => Code[ConnectError.from(e).code] ?? "unknown";
      return {
        async authorize() {
          if (!authorizer) return;
          try {
            principal = await authorizer.authenticate(authorization);
            await authorizer.checkScope(principal, selector);
          } catch (e) {
            calls?.failed(e);
            line?.(codeOf(e));
            throw e;
          }
        },
        sent(token) {
          calls?.handedOut(token);
        },
        ended(error) {
          line?.(error === undefined ? "ok" : codeOf(error));
        },
      };
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

/** The guard of a call on a port without keys, audit or debug logging. */
const UNGUARDED: GuardedCall = {
  authorize: async () => {},
  sent: () => {},
  ended: () => {},
};

/** One debug line per TokenService call, after it ended (streams: when they end): never a header or a token. */
function debugLog(logger: Logger): Interceptor {
  return (next) => async (req) => {
    if (!logger.isLevelEnabled("debug") || req.service.typeName !== "tokenbroker.v1.TokenService") return next(req);
    const started = performance.now();
    const { message, request } = await firstMessage(req);
    const line = startRpcDebugLine(logger, req.method.name, selectorOf(message), () => request.contextValues.get(principalKey)?.name, started);
    try {
      const res = await next(request);
      if (!res.stream) {
        line("ok");
        return res;
      }
      const messages = res.message;
      return {
        ...res,
        message: (async function* () {
          let code = "ok";
          try {
            yield* messages;
          } catch (e) {
            code = Code[ConnectError.from(e).code] ?? "unknown";
            throw e;
          } finally {
            line(code);
          }
        })(),
      };
    } catch (e) {
      line(Code[ConnectError.from(e).code] ?? "unknown");
      throw e;
    }
  };
}
