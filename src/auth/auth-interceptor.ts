import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import type { Selector } from "../broker/token-broker.js";
import { parseSelector } from "../service/parse-request.js";
import { allowsConnection, allowsTenant, type Principal } from "./api-key.js";
import type { Authenticator } from "./authenticator.js";
import { firstMessage, selectorOf } from "./first-message.js";

/** The authenticated caller of an RPC, for handlers and other interceptors (`ctx.values.get(principalKey)`). */
export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "tokenbroker principal" });

/** Options for {@link createAuthInterceptor}. */
export interface AuthInterceptorOptions {
  authenticator: Authenticator;
  /** The tenant ids served by a connection, or undefined if there is no such connection. */
  tenantsOfConnection(connectionId: string): Promise<readonly string[] | undefined>;
  /** Fully-qualified names of the services that need a key (default `tokenbroker.v1.TokenService`); others (health, reflection) stay open. */
  services?: readonly string[];
}

const UNAUTHENTICATED = "a valid API key is required: send `authorization: Bearer <key>`";
const DENIED = "this API key may not use that tenant or connection";

/**
 * A Connect interceptor that lets through only callers with a valid key,
 * asking only for token sets within the key's scope. No, unknown or revoked
 * key: UNAUTHENTICATED. A tenant or connection outside the scope:
 * PERMISSION_DENIED, whether or not it exists, so that a key cannot probe for
 * other tenants. A request naming no token set, or a malformed id, goes on to
 * the handler, which answers INVALID_ARGUMENT (the same for every key).
 */
export function createAuthInterceptor(options: AuthInterceptorOptions): Interceptor {
  const services = new Set(options.services ?? ["tokenbroker.v1.TokenService"]);
  return (next) => async (req) => {
    if (!services.has(req.service.typeName)) return next(req);
    const principal = await options.authenticator.authenticate(req.header.get("authorization"));
    if (!principal) throw new ConnectError(UNAUTHENTICATED, Code.Unauthenticated);
    req.contextValues.set(principalKey, principal);
    if (principal.tenants === "*") return next(req);

    const { message, request } = await firstMessage(req);
    let selector: Selector;
    try {
      selector = parseSelector(selectorOf(message));
    } catch {
      return next(request); // malformed: the handler answers INVALID_ARGUMENT, the same for every key
    }
    const allowed =
      "tenantId" in selector
        ? allowsTenant(principal, selector.tenantId)
        : allowsConnection(principal, await options.tenantsOfConnection(selector.connectionId));
    if (!allowed) throw new ConnectError(DENIED, Code.PermissionDenied);
    return next(request);
  };
}
