/**
 * The fake Xero of the bench, in a process of its own (forked by the server
 * host): the real Xero is another machine, so its work — TLS aside, parsing
 * requests, signing tokens, holding answers for the configured latency —
 * must not run on the broker's event loop and be counted as the broker's.
 */
import { serveHost } from "../ipc.js";
import { startFakeXero, type FakeXero, type TenantApiUsage, type XeroApiLimits } from "@tokenbroker/fake-xero";

let fake: FakeXero | undefined;

function theFake(): FakeXero {
  if (!fake) throw new Error("the fake Xero is not started");
  return fake;
}

/** Where the fake Xero listens and the client it knows. */
export interface UpstreamInfo {
  issuer: string;
  connectionsUrl: string;
  clientId: string;
  clientSecret: string;
}

/** What the server host can ask of the upstream process. */
export const upstreamHostApi = {
  /** Starts the fake Xero on a loopback port (with its API limits over Xero's defaults). */
  async start(options: { apiLimits?: Partial<XeroApiLimits> } = {}): Promise<UpstreamInfo> {
    fake = await startFakeXero(options.apiLimits ? { apiLimits: options.apiLimits } : {});
    return { issuer: fake.issuer, connectionsUrl: fake.connectionsUrl, clientId: fake.clientId, clientSecret: fake.clientSecret };
  },
  /** Adds one user's grant with `tenantNames`; resolves with its refresh token. */
  addGrant(tenantNames: string[]): string {
    return theFake().addGrant({ tenants: tenantNames.map((tenantName) => ({ tenantName })) }).refreshToken;
  },
  /** Delay of the token endpoint, ms. */
  setLatency(ms: number): void {
    theFake().setLatency(ms);
  },
  /** Calls to the token endpoint so far. */
  tokenEndpointCalls(): number {
    return theFake().tokenEndpointCalls;
  },
  /** `expires_in` of the access tokens issued from now on, s. */
  setAccessTokenLifetime(seconds: number): void {
    theFake().setAccessTokenLifetime(seconds);
  },
  /** The accounting API's answer delay from now on, ms. */
  setApiLatency(ms: number): void {
    theFake().setApiLatency(ms);
  },
  /** What the fake's accounting API saw of one tenant (calls, most in flight, 429s by problem). */
  apiUsage(tenantId: string): TenantApiUsage {
    return theFake().apiUsage(tenantId);
  },
  /** invalid_grant answers so far (a refresh token spent twice outside its grace period, among others). */
  invalidGrants(): number {
    return theFake().invalidGrants;
  },
};

/** The upstream host's API, for typed calls from the server host. */
export type UpstreamHostApi = typeof upstreamHostApi;

serveHost(upstreamHostApi, async () => {
  await fake?.close();
});
