import { Code, ConnectError } from "@connectrpc/connect";
import type { Selector } from "../broker/token-broker.js";
import { StoreUnavailableError } from "../store/store.js";
import { UnreadableTokenSetError } from "../store/token-set-store.js";
import { toConnectError } from "../service/to-connect-error.js";
import { parseSelector } from "../service/parse-request.js";
import { allowsConnection, allowsTenant, type Principal } from "./api-key.js";
import type { Authenticator } from "./authenticator.js";
import type { RequestSelector } from "./first-message.js";

/** Options for {@link createAuthorizer}. */
export interface AuthorizerOptions {
  authenticator: Authenticator;
  /** The tenant ids served by a connection, or undefined if there is no such connection. */
  tenantsOfConnection(connectionId: string): Promise<readonly string[] | undefined>;
}

/** The API-key decisions of a TokenService call, shared by the Connect interceptor and the gRPC fast path. */
export interface Authorizer {
  /** The caller of an `authorization` header's value; UNAUTHENTICATED for no, unknown or revoked key. */
  authenticate(authorization: string | null | undefined): Promise<Principal>;
  /**
   * Throws PERMISSION_DENIED if the request's tenant or connection is outside
   * the principal's scope, whether or not it exists. A request naming no
   * token set, or a malformed id, passes: the handler answers INVALID_ARGUMENT
   * (the same for every key).
   */
  checkScope(principal: Principal, selector: RequestSelector): Promise<void>;
}

/** The connection's tenants, also of a token set the store refused (the handler then says why, to a key in scope only). */
function tenantsOf(options: AuthorizerOptions, connectionId: string): Promise<readonly string[] | undefined> {
  return options.tenantsOfConnection(connectionId).catch((e: unknown) => {
    if (e instanceof UnreadableTokenSetError) return e.tenantIds;
    throw e;
  });
}

const UNAUTHENTICATED = "a valid API key is required: send `authorization: Bearer <key>`";
const DENIED = "this API key may not use that tenant or connection";

/** A store out of reach is UNAVAILABLE (worth a retry), as the handler says it; anything else goes on as it is. */
function unavailable(e: unknown): never {
  if (e instanceof StoreUnavailableError) throw toConnectError(e, () => {});
  throw e;
}

/** Creates the {@link Authorizer} of a broker's API keys and scopes. */
export function createAuthorizer(options: AuthorizerOptions): Authorizer {
  return {
    async authenticate(authorization) {
      const principal = await options.authenticator.authenticate(authorization).catch(unavailable);
      if (!principal) throw new ConnectError(UNAUTHENTICATED, Code.Unauthenticated);
      return principal;
    },
    async checkScope(principal, requested) {
      if (principal.tenants === "*") return;
      let selector: Selector;
      try {
        selector = parseSelector(requested);
      } catch {
        return; // malformed: the handler answers INVALID_ARGUMENT, the same for every key
      }
      const allowed =
        "tenantId" in selector
          ? allowsTenant(principal, selector.tenantId)
          : allowsConnection(principal, await tenantsOf(options, selector.connectionId).catch(unavailable));
      if (!allowed) throw new ConnectError(DENIED, Code.PermissionDenied);
    },
  };
}
