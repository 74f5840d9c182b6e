/** Paths of the fake's endpoints, relative to the issuer. */
export const PATHS = {
  discovery: "/.well-known/openid-configuration",
  jwks: "/.well-known/openid-configuration/jwks",
  authorize: "/identity/connect/authorize",
  token: "/connect/token",
  revocation: "/connect/revocation",
  userinfo: "/connect/userinfo",
  connections: "/connections",
} as const;

/**
 * The OpenID Provider metadata document, shaped like Xero's. The
 * authorization_code and refresh_token grants are implemented; client_credentials
 * is listed because Xero lists it.
 */
export function openidConfiguration(issuer: string, scopes: readonly string[]): Record<string, unknown> {
  return {
    issuer,
    authorization_endpoint: issuer + PATHS.authorize,
    token_endpoint: issuer + PATHS.token,
    jwks_uri: issuer + PATHS.jwks,
    revocation_endpoint: issuer + PATHS.revocation,
    userinfo_endpoint: issuer + PATHS.userinfo,
    response_types_supported: ["code"],
    response_modes_supported: ["query", "form_post"],
    grant_types_supported: ["authorization_code", "refresh_token", "client_credentials"],
    subject_types_supported: ["public"],
    id_token_signing_alg_values_supported: ["RS256"],
    token_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
    revocation_endpoint_auth_methods_supported: ["client_secret_basic", "client_secret_post"],
    code_challenge_methods_supported: ["S256"],
    scopes_supported: [...scopes],
    claims_supported: ["sub", "xero_userid", "given_name", "family_name", "email", "preferred_username", "auth_time"],
  };
}
