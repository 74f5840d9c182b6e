import { upstreamFromEnv } from "../config.js";
import type { IdentityServer } from "../upstream/identity-server.js";
import { createOidcIdentityServer } from "../upstream/oidc-identity-server.js";

/** The identity server the `TOKENBROKER_*` variables describe; throws ConfigError naming a missing or bad one. */
export function identityFromEnv(env: NodeJS.ProcessEnv): IdentityServer {
  const upstream = upstreamFromEnv(env);
  return createOidcIdentityServer({
    issuer: upstream.issuer,
    connectionsUrl: upstream.connectionsUrl,
    clientId: upstream.clientId,
    clientSecret: upstream.clientSecret,
    allowInsecure: upstream.allowInsecureIssuer,
    timeoutMs: upstream.timeoutMs,
  });
}
