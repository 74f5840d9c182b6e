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
import type { WatchGate } from "../broker/watch-hub.js";
import { errorFields, type Logger } from "../logger.js";
import type { Store } from "../store/store.js";
import type { HttpRoute } from "./http-routes.js";
import { requestTarget } from "./request-target.js";
import { startRpcDebugLine } from "./rpc-debug-line.js";

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
  /** Connect interceptors, outermost first: audit, then authentication and scope. */
  interceptors: Interceptor[];
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
  /**
   * The same checks and records as {@link ServerSecurity.interceptors}, for a
   * TokenService call served outside Connect (the gRPC fast path).
   */
  guardCall(method: string, authorization: string | undefined, message: unknown): GuardedCall;
  /**
   * Checks a TokenService call's API key from its headers alone, before its
   * body is read: throws UNAUTHENTICATED (logged as `guardCall` logs it) for
   * no, unknown or revoked key. Undefined when the port needs no key. The
   * scope is checked later, from the request.
   */
  authenticate: ((method: string, authorization: string | undefined) => Promise<void>) | undefined;
}

/** One TokenService call served outside Connect, checked and recorded as the interceptors do (see `guardCall`). */
export interface GuardedCall {
  /**
   * Checks the API key and its scope: throws the auth interceptor's
   * ConnectErrors, and audits and logs a refusal. Resolves with the hash of
   * the caller's key (undefined without API keys), which owns its streams.
   */
  authorize(): Promise<string | undefined>;
  /** Audits a message sent (one entry if it carries a token). */
  sent(token: { connectionId: string } | undefined): void;
  /** Logs the call's debug line once it ended (after `authorize` succeeded), with its error if any. */
  ended(error?: unknown): void;
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
  const interceptors: Interceptor[] = [];
  const authorizer =
    auth &&
    createAuthorizer({
      authenticator: auth.authenticator,
      tenantsOfConnection: async (id) => (await options.store.tokens.getToken(id))?.tenantIds,
    });
  if (options.logger) interceptors.push(debugLog(options.logger));
  if (audit) interceptors.push(createAuditInterceptor({ audit }));
  if (auth) {
    interceptors.push(
      createAuthInterceptor({
        authenticator: auth.authenticator,
        tenantsOfConnection: async (id) => (await options.store.tokens.getToken(id))?.tenantIds,
      }),
    );
  }
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
        options.logger?.warn({ event: "sign_in_locked", client, lockedForMs }, `too many failed sign-ins from ${client}: locked for ${lockedForMs / 1000} s`);
      },
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
  const security: ServerSecurity = {
    interceptors,
    authenticate: undefined,
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
          if (!authorizer) return undefined;
          try {
            principal = await authorizer.authenticate(authorization);
            await authorizer.checkScope(principal, selector);
            return principal.keyHash;
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
  if (authorizer) {
    // The key alone, with the debug line of a refusal as guardCall writes it (no request read yet: no tenant in it).
    security.authenticate = async (method, authorization) => {
      const started = performance.now();
      try {
        await authorizer.authenticate(authorization);
      } catch (e) {
        if (options.logger?.isLevelEnabled("debug")) {
          startRpcDebugLine(options.logger, method, { case: undefined }, () => undefined, started)(Code[ConnectError.from(e).code] ?? "unknown");
        }
        throw e;
      }
    };
  }
  return security;
}

/** The guard of a call on a port without keys, audit or debug logging. */
const UNGUARDED: GuardedCall = {
  authorize: async () => undefined,
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
