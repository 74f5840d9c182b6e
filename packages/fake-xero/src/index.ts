/**
 * A fake Xero identity server for tests and the demo: discovery, JWKS, a
 * sign-in and consent page with the authorization_code grant (PKCE S256),
 * refresh-token rotation with a grace period, revocation and `/connections`,
 * behaving as Xero's documentation describes (single-use refresh tokens, 30-minute
 * grace period for retries, invalid_grant / invalid_client errors).
 */
export {
  DEFAULT_SCOPES,
  startFakeXero,
  type FakeCustomConnection,
  type FakeGrant,
  type FakeOrganisation,
  type FakeTenant,
  type FakeXero,
  type FakeXeroOptions,
} from "./fake-xero.js";
export type { TokenEndpointFailure } from "./context.js";
export type { TokenResponseBody } from "./access-tokens.js";
export type { TenantInit } from "./grants.js";
export { FakeXeroError, type FakeXeroErrorCode } from "./errors.js";
export { identityServerOptions, type FakeXeroEndpoint, type FakeXeroIdentityOptions } from "./identity-server-options.js";
export { decodeJwtClaims, type JwtClaims } from "./jwt.js";
