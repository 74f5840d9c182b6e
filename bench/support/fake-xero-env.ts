/** What a broker needs to know of a fake Xero (the fake itself, or the bench's upstream host's description of it). */
export interface FakeXeroAddress {
  issuer: string;
  connectionsUrl: string;
  clientId: string;
  clientSecret: string;
}

/**
 * The environment of a `tokenbroker` child talking to a fake Xero, and nothing
 * of the developer's own TOKENBROKER_* settings: its identity server, app, and
 * API (so the Xero API proxy never calls the real Xero), plus `extra`.
 */
export function fakeXeroEnv(fake: FakeXeroAddress, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: process.env["PATH"] ?? "",
    TOKENBROKER_ISSUER: fake.issuer,
    TOKENBROKER_CONNECTIONS_URL: fake.connectionsUrl,
    TOKENBROKER_CLIENT_ID: fake.clientId,
    TOKENBROKER_CLIENT_SECRET: fake.clientSecret,
    TOKENBROKER_ALLOW_INSECURE_ISSUER: "1",
    TOKENBROKER_API_URL: fake.issuer,
    ...extra,
  };
}
