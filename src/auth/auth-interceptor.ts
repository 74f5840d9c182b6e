import { createContextKey, type Interceptor } from "@connectrpc/connect";
import type { Principal } from "./api-key.js";
import type { Authenticator } from "./authenticator.js";
import { createAuthorizer } from "./authorize.js";
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
  const authorizer = createAuthorizer(options);
  return (next) => async (req) => {
    if (!services.has(req.service.typeName)) return next(req);
    const principal = await authorizer.authenticate(req.header.get("authorization"));
    req.contextValues.set(principalKey, principal);
    if (principal.tenants === "*") return next(req);

    const { message, request } = await firstMessage(req);
    await authorizer.checkScope(principal, selectorOf(message));
    return next(request);
  };
}
