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
}

/**
 * The OAuth2 identity server (Xero's, or a stand-in) as the broker needs it.
 * Implementations throw {@link UpstreamError} for every failure.
 */
export interface IdentityServer {
  /** Spends `refreshToken` for a new token set. */
  refresh(refreshToken: string): Promise<ObtainedTokenSet>;
  /** The tenants the access token's grant reaches (Xero's connections endpoint). */
  listConnections(accessToken: string): Promise<XeroConnection[]>;
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
