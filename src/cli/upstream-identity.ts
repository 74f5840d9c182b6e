import { upstreamFromEnv, type UpstreamConfig } from "../config.js";
import type { IdentityServer } from "../upstream/identity-server.js";
import { createOidcIdentityServer } from "../upstream/oidc-identity-server.js";

/** The identity server the `TOKENBROKER_*` variables describe; throws ConfigError naming a missing or bad one. */
export function identityFromEnv(env: NodeJS.ProcessEnv): IdentityServer {
  return identityFromConfig(upstreamFromEnv(env));
}

/** The identity server of an already checked upstream configuration. */
export function identityFromConfig(upstream: UpstreamConfig): IdentityServer {
  return createOidcIdentityServer({
    issuer: upstream.issuer,
    connectionsUrl: upstream.connectionsUrl,
    clientId: upstream.clientId,
    clientSecret: upstream.clientSecret,
    allowInsecure: upstream.allowInsecureIssuer,
    timeoutMs: upstream.timeoutMs,
  });
}
