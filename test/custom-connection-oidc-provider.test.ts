/**
 * A custom connection (client credentials) served by the broker against an independent OAuth 2.0 server
 * (oidc-provider with a client allowed only the `client_credentials` grant): several rounds of concurrent callers
 * after expiry, each answered by exactly one token request with the custom client's own credentials.
 */
import { join } from "node:path";
import { createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TokenService } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { ManualClock } from "../src/clock.js";
import { startBrokerServer, type BrokerServer } from "../src/server/broker-server.js";
import { openSqliteStore } from "../src/store/sqlite-store.js";
import type { Store } from "../src/store/store.js";
import { createOidcIdentityServer } from "../src/upstream/oidc-identity-server.js";
import { tempDir } from "./helpers/broker-fixture.js";
import { startOidcProvider, type OidcProviderHarness } from "./helpers/oidc-provider.js";

const ROUNDS = 3;
const CALLERS = 200;
const TENANT_ID = "6b0e2f4a-2c1d-4e8f-9a7b-3c5d1e0f2a4b";

describe("a custom connection against oidc-provider's client_credentials grant", () => {
  let op: OidcProviderHarness;
  let clock: ManualClock;
  let store: Store;
  let server: BrokerServer;
  let dir: { path: string; cleanup: () => void };
  let connectionId: string;

  beforeEach(async () => {
    op = await startOidcProvider({ accessTokenTtlSeconds: 1800, customConnectionClient: true });
    clock = new ManualClock();
    dir = tempDir();
    store = openSqliteStore({ path: join(dir.path, "tokenbroker.db"), clock });
    // The broker's own app is oidc-provider's code-flow client; the custom connection brings its own.
    const identity = createOidcIdentityServer({
      issuer: new URL(op.issuer),
      connectionsUrl: new URL("/connections", op.issuer),
      clientId: op.clientId,
      clientSecret: op.clientSecret,
      allowInsecure: true,
      clock,
    });
    const custom = op.customClient!;
    // What `custom add` stores (oidc-provider has no connections endpoint, so the tenant is given by hand).
    const { xeroUserId: _u, authEventId: _a, userName: _n, ...tokenSet } = await identity.clientCredentials(custom);
    ({ connectionId } = await store.connections.saveConnection({
      xeroUserId: undefined,
      tokenSet: { ...tokenSet, refreshToken: custom.clientSecret },
      tenants: [
        { tenantId: TENANT_ID, xeroConnectionId: undefined, tenantName: "Org", tenantType: "ORGANISATION", authEventId: undefined },
      ],
      custom: { name: "org", clientId: custom.clientId },
    }));
    server = await startBrokerServer({ port: 0, store, identity, clock });
    await server.scheduler.stop(); // only callers renew
  });

  afterEach(async () => {
    await server?.close();
    await store?.close();
    await op?.close();
    dir?.cleanup();
  });

  it(`${ROUNDS} rounds of ${CALLERS} concurrent GetToken after expiry: one client_credentials request per round`, async () => {
    expect(op.tokenEndpointCalls).toBe(1);
    expect(op.clientCredentialsGrants).toBe(1);
    const clients: Array<Client<typeof TokenService>> = [
      createClient(TokenService, createGrpcTransport({ baseUrl: server.url })),
      createClient(TokenService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" })),
    ];
    let previous = (await store.tokens.getToken(connectionId))!.accessToken;
    for (let round = 1; round <= ROUNDS; round++) {
      clock.advance(31 * 60_000);
      const answers = await Promise.all(
        Array.from({ length: CALLERS }, (_, i) =>
          clients[i % 2]!.getToken({
            selector: i % 3 === 0 ? { case: "connectionId", value: connectionId } : { case: "tenantId", value: TENANT_ID },
          }),
        ),
      );
      const tokens = new Set(answers.map((a) => a.token?.accessToken));
      expect(tokens.size, `round ${round}`).toBe(1);
      expect(tokens.has(previous)).toBe(false);
      expect(op.tokenEndpointCalls, `round ${round}`).toBe(1 + round);
      expect(op.clientCredentialsGrants, `round ${round}`).toBe(1 + round);
      previous = [...tokens][0]!;
    }
    expect(op.tokenEndpointErrors).toEqual([]);
  });
});
