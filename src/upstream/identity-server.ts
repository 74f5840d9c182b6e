import type { NewTokenSet } from "../token-set.js";

/** One entry of Xero's connections list: a tenant the grant reaches. */
export interface XeroConnection {
  /** Xero's id of this tenant connection. */
  id: string;
  /** The tenant (organisation) id, sent as `xero-tenant-id`. */
  tenantId: string;
  /** "ORGANISATION" or "PRACTICE". */
  tenantType: string;
  /** The organisation's name. */
  tenantName: string | undefined;
  /** The authentication event that connected the tenant. */
  authEventId: string | undefined;
}

/** A token response with the identity of the user it belongs to. */
export interface ObtainedTokenSet extends NewTokenSet {
  /** Xero's user id (`xero_userid` claim), when the tokens carry it. */
  xeroUserId: string | undefined;
  /** The `authentication_event_id` claim of the access token, when present. */
  authEventId: string | undefined;
  /** The user's email or name from the id token, when present (for operators; not a secret). */
  userName: string | undefined;
}

/** A custom connection app's own credentials, for the `client_credentials` grant. */
export interface ClientCredentials {
  clientId: string;
  /** Secret: never logged, never in an error message. */
  clientSecret: string;
}

/** What {@link IdentityServer.authorizationUrl} puts in the authorization request. */
export interface AuthorizationRequest {
  /** Where the issuer sends the browser back; must be registered with the app. */
  redirectUri: string;
  /** Scopes to ask for. */
  scopes: readonly string[];
  /** The random `state` the callback must carry back. */
  state: string;
  /** The PKCE S256 challenge of the verifier the caller keeps. */
  codeChallenge: string;
}

/** What {@link IdentityServer.exchangeCode} needs to turn a callback into a token set. */
export interface CodeExchange {
  /** The redirect URI the authorization request named (sent again with the code). */
  redirectUri: string;
  /** The query parameters the issuer sent to the redirect URI (`code`, `state`, …). */
  callbackParams: URLSearchParams;
  /** The `state` this consent was started with. */
  expectedState: string;
  /** The PKCE verifier kept since the authorization request. */
  codeVerifier: string;
}

/**
 * The OAuth2 identity server (Xero's, or a stand-in) as the broker needs it.
 * Implementations throw {@link UpstreamError} for every failure.
 */
export interface IdentityServer {
  /**
   * Spends `refreshToken` for a new token set. When `signal` aborts, the request is abandoned (its connection
   * closed) and the call fails; the identity server may still have spent the refresh token.
   */
  refresh(refreshToken: string, options?: { signal?: AbortSignal | undefined }): Promise<ObtainedTokenSet>;
  /**
   * Obtains an access token with the `client_credentials` grant and the given app's own credentials (HTTP Basic),
   * as a Xero custom connection is renewed. No refresh token is issued: the result's `refreshToken` is empty. When
   * `signal` aborts, the request is abandoned. A rejected id or secret is an `invalid_client` {@link UpstreamError}.
   */
  clientCredentials(credentials: ClientCredentials, options?: { signal?: AbortSignal | undefined }): Promise<ObtainedTokenSet>;
  /**
   * The tenants the access token's grant reaches (Xero's connections endpoint);
   * with `authEventId`, only those that consent connected.
   */
  listConnections(accessToken: string, options?: { authEventId?: string | undefined }): Promise<XeroConnection[]>;
  /** The issuer's authorization URL for a consent (response_type=code, PKCE S256). */
  authorizationUrl(request: AuthorizationRequest): Promise<URL>;
  /** Checks the callback against the state and spends its code (with the PKCE verifier) for a token set. */
  exchangeCode(exchange: CodeExchange): Promise<ObtainedTokenSet>;
  /** Revokes the grant of `refreshToken` at the revocation endpoint: every tenant of it is disconnected. */
  revoke(refreshToken: string): Promise<void>;
  /** Disconnects one tenant (`DELETE /connections/{id}`); false when Xero did not know that connection (404). */
  deleteConnection(accessToken: string, xeroConnectionId: string): Promise<boolean>;
}

/**
 * How an upstream call failed:
 * - `invalid_grant`: the refresh token is dead; the connection needs re-authorisation.
 * - `invalid_client`: the broker's client id or secret is wrong; every connection is affected.
 * - `transient`: timeout, reset, 5xx, 429: try again later (after `retryAfterMs` if given).
 */
export type UpstreamErrorKind = "invalid_grant" | "invalid_client" | "transient";

/** A failed upstream call. The message never carries a token or a response body. */
export class UpstreamError extends Error {
  override readonly name = "UpstreamError";

  constructor(
    readonly kind: UpstreamErrorKind,
    message: string,
    readonly retryAfterMs?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
