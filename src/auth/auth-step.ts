import type { GuardStep } from "../server/call-guard.js";
import { createAuthorizer, type AuthorizerOptions } from "./authorize.js";

/**
 * The guard step of API keys and tenant scopes: from the headers, the
 * caller behind the `authorization` key (UNAUTHENTICATED for no, unknown or
 * revoked key), set as the call's principal; from the request, the tenant or
 * connection it names, which must be in the key's scope (PERMISSION_DENIED,
 * whether or not it exists, so that a key cannot probe for other tenants).
 * A request naming no token set, or a malformed id, goes on to the handler,
 * which answers INVALID_ARGUMENT (the same for every key).
 */
export function createAuthStep(options: AuthorizerOptions): GuardStep {
  const authorizer = createAuthorizer(options);
  return {
    name: "api-key",
    authenticate(call) {
      // A key seen within the cache's life: no promise to wait for (the hot path of a cached GetToken).
      const cached = options.authenticator.cached?.(call.authorization);
      if (cached) {
        call.principal = cached;
        return;
      }
      return authorizer.authenticate(call.authorization).then((principal) => {
        call.principal = principal;
      });
    },
    authorize(call) {
      const principal = call.principal;
      // Set by authenticate, which ran first or refused the call.
      if (principal === undefined || principal.tenants === "*") return;
      return authorizer.checkScope(principal, call.selector);
    },
  };
}
