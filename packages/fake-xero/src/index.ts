/**
 * A fake Xero identity server for tests and the demo: discovery, JWKS, a
 * sign-in and consent page with the authorization_code grant (PKCE S256),
 * refresh-token rotation with a grace period, revocation and `/connections`,
 * behaving as Xero's documentation describes (single-use refresh tokens, 30-minute
 * grace period for retries, invalid_grant / invalid_client errors), and a
 * small accounting API (`/api.xro/2.0/Organisation`, `Contacts`, `Invoices`)
 * that enforces Xero's call limits and sends its limit headers.
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
export {
  RATE_LIMIT_PROBLEMS,
  XERO_API_LIMITS,
  type AppApiUsage,
  type InjectedRateLimit,
  type RateLimitedCounts,
  type RateLimitProblem,
  type TenantApiUsage,
  type XeroApiLimits,
} from "./rate-limits.js";
export type { ContactJson, InvoiceJson, LineItemJson, OrganisationJson } from "./accounting-data.js";
export { ACCOUNTING_PREFIX } from "./accounting-endpoints.js";
export { FakeXeroError, type FakeXeroErrorCode } from "./errors.js";
export { identityServerOptions, type FakeXeroEndpoint, type FakeXeroIdentityOptions } from "./identity-server-options.js";
export { decodeJwtClaims, type JwtClaims } from "./jwt.js";
