import type { Clock } from "../clock.js";
import type { IdentityServer } from "../upstream/identity-server.js";
import { createOidcIdentityServer } from "../upstream/oidc-identity-server.js";

/** Where a fake Xero listens and the client it knows (a `FakeXero`, or its figures from another process). */
export interface FakeXeroEndpoint {
  issuer: string;
  connectionsUrl: string;
  clientId: string;
  clientSecret: string;
}

/**
 * The broker's real identity server (openid-client) pointed at a fake Xero:
 * plain `http://` on loopback is allowed. Used by the demo, the bench and the
 * tests.
 */
export function identityForFakeXero(fake: FakeXeroEndpoint, clock?: Clock): IdentityServer {
  return createOidcIdentityServer({
    issuer: new URL(fake.issuer),
    connectionsUrl: new URL(fake.connectionsUrl),
    clientId: fake.clientId,
    clientSecret: fake.clientSecret,
    allowInsecure: true,
    ...(clock ? { clock } : {}),
  });
}
