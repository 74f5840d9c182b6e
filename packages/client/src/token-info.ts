import type { Token } from "./gen/tokenbroker/v1/token_service_pb.js";

/** An access token as the client hands it out. */
export interface TokenInfo {
  /** The bearer token to send to Xero. */
  readonly accessToken: string;
  /** When the access token expires (broker's clock). */
  readonly expiresAt: Date;
  /** Grows by one with each refresh of the token set. */
  readonly version: bigint;
  /** The connection (one Xero user's grant) the token belongs to. */
  readonly connectionId: string;
  /** The tenants (organisations) the token gives access to. */
  readonly tenantIds: readonly string[];
}

/** A cached token and when this client first saw it (to estimate its lifetime). */
export interface CachedToken {
  readonly info: TokenInfo;
  readonly firstSeenAt: number;
}

/** Converts a wire token; undefined when it lacks an access token or expiry. */
export function toTokenInfo(token: Token | undefined): TokenInfo | undefined {
  if (!token?.accessToken || !token.expiresAt) return undefined;
  const { seconds, nanos } = token.expiresAt;
  return {
    accessToken: token.accessToken,
    expiresAt: new Date(Number(seconds) * 1000 + Math.floor(nanos / 1e6)),
    version: token.version,
    connectionId: token.connectionId,
    tenantIds: [...token.tenantIds],
  };
}

/**
 * Whether `incoming` should replace `current`: a newer version of the same
 * token set, or a token of another connection (the tenant was re-authorised
 * by another Xero user, whose versions are not comparable).
 */
export function isNewer(incoming: TokenInfo, current: TokenInfo | undefined): boolean {
  if (!current) return true;
  if (incoming.connectionId !== current.connectionId) return true;
  return incoming.version >= current.version;
}

/**
 * Whether a cached token stays valid for `minValidForMs` from `now`. As at the
 * broker, at most half the token's lifetime is required, so that a fresh token
 * always qualifies; the lifetime is estimated from when the client first saw it.
 */
export function isValidFor(cached: CachedToken, minValidForMs: number, now: number): boolean {
  const expiresAt = cached.info.expiresAt.getTime();
  const needed = Math.min(minValidForMs, (expiresAt - cached.firstSeenAt) / 2);
  return expiresAt > now && expiresAt - now >= needed;
}
