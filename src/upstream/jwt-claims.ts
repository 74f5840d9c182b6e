/**
 * Reads the claims of a JWT without verifying it. Used only on tokens just
 * received from the identity server over TLS, to learn the Xero user id and
 * authentication event id. Returns an empty object for a token that is not a JWT.
 */
export function readJwtClaims(token: string | undefined): Record<string, unknown> {
  const payload = token?.split(".")[1];
  if (!payload) return {};
  try {
    const claims: unknown = JSON.parse(Buffer.from(payload, "base64url").toString("utf8"));
    return typeof claims === "object" && claims !== null ? (claims as Record<string, unknown>) : {};
  } catch {
    return {};
  }
}

/** A string claim, or undefined. */
export function stringClaim(claims: Record<string, unknown>, name: string): string | undefined {
  const v = claims[name];
  return typeof v === "string" && v !== "" ? v : undefined;
}
