/** Where a fake Xero listens and the client it knows (a `FakeXero`, or its figures from another process). */
export interface FakeXeroEndpoint {
  issuer: string;
  connectionsUrl: string;
  clientId: string;
  clientSecret: string;
}

/** The options of tokenbroker's `createOidcIdentityServer` that point the broker's real identity server at a fake Xero. */
export interface FakeXeroIdentityOptions {
  issuer: URL;
  connectionsUrl: URL;
  clientId: string;
  clientSecret: string;
  /** The fake listens on plain `http://` on loopback. */
  allowInsecure: true;
}

/**
 * Options for the broker's real identity server (openid-client) pointed at a
 * fake Xero: `createOidcIdentityServer({ ...identityServerOptions(fake), clock })`.
 * Used by the demo, the bench and the tests; the fake Xero itself imports
 * nothing of the broker.
 */
export function identityServerOptions(fake: FakeXeroEndpoint): FakeXeroIdentityOptions {
  return {
    issuer: new URL(fake.issuer),
    connectionsUrl: new URL(fake.connectionsUrl),
    clientId: fake.clientId,
    clientSecret: fake.clientSecret,
    allowInsecure: true,
  };
}
