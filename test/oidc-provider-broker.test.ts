/**
 * The broker against an independent OAuth 2.0 server (oidc-provider) that
 * rotates refresh tokens and revokes the whole grant when a spent refresh token
 * is presented again. A single double refresh anywhere would make every later
 * refresh fail, so several successful rounds of 300 concurrent callers prove
 * that no refresh token was ever spent twice.
 */
import { join } from "node:path";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TokenService } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { ManualClock } from "../src/clock.js";
import { importRefreshToken } from "../src/importer.js";
import { startBrokerServer, type BrokerServer } from "../src/server/broker-server.js";
import { openSqliteStore } from "../src/store/sqlite-store.js";
import type { Store } from "../src/store/store.js";
import { createOidcIdentityServer } from "../src/upstream/oidc-identity-server.js";
import { tempDir } from "./helpers/broker-fixture.js";
import { startOidcProvider, type OidcProviderHarness } from "./helpers/oidc-provider.js";

const ROUNDS = 3;
const CALLERS = 300;
const TENANT_ID = "3f1c1a52-7d0e-4c55-9a43-0d7f8c2b6e11";

describe("broker against oidc-provider with rotating refresh tokens", () => {
  let op: OidcProviderHarness;
  let clock: ManualClock;
  let store: Store;
  let server: BrokerServer;
  let dir: { path: string; cleanup: () => void };
  let connectionId: string;

  beforeEach(async () => {
    op = await startOidcProvider({ accessTokenTtlSeconds: 1800 });
    // oidc-provider stays on real time (openid-client checks id-token iat/exp
    // against the real clock); only the broker's clock is moved by hand.
    clock = new ManualClock();
    dir = tempDir();
    store = openSqliteStore({ path: join(dir.path, "tokenbroker.db"), clock });
    const identity = createOidcIdentityServer({
      issuer: new URL(op.issuer),
      // oidc-provider has no connections endpoint: the import stores the token
      // set and reports that it could not read the tenants.
      connectionsUrl: new URL("/connections", op.issuer),
      clientId: op.clientId,
      clientSecret: op.clientSecret,
      allowInsecure: true,
      clock,
    });
    const imported = await importRefreshToken(store, identity, await op.mintRefreshToken("alice"));
    expect(imported.tenants).toEqual([]);
    expect(imported.tenantsError).toEqual(expect.any(String));
    connectionId = imported.connectionId;
    // Give the connection a tenant by hand, so both selectors can be used.
    await store.connections.saveTenants(connectionId, [
      { tenantId: TENANT_ID, xeroConnectionId: undefined, tenantName: "Org A", tenantType: "ORGANISATION", authEventId: undefined },
    ]);
    server = await startBrokerServer({ port: 0, store, identity, clock });
    await server.scheduler.stop(); // no background refreshes: only callers refresh
  });

  afterEach(async () => {
    await server?.close();
    await store?.close();
    await op?.close();
    dir?.cleanup();
  });

  it(`${ROUNDS} rounds of ${CALLERS} concurrent GetToken after expiry: one token-endpoint POST per round, no refresh token reused`, async () => {
    // The import spent the minted refresh token: one POST so far.
    expect(op.tokenEndpointCalls).toBe(1);
    const transports: Transport[] = [
      createGrpcTransport({ baseUrl: server.url }),
      createConnectTransport({ baseUrl: server.url, httpVersion: "1.1", useBinaryFormat: false }),
    ];
    const clients: Array<Client<typeof TokenService>> = transports.map((t) => createClient(TokenService, t));

    let previous = await store.tokens.getToken(connectionId);
    expect(previous?.state).toBe("active");
    expect(previous?.version).toBe(1);

    for (let round = 1; round <= ROUNDS; round++) {
      const before = op.tokenEndpointCalls;
      clock.set(previous!.expiresAt + 1000); // past expiry on the broker's clock

      const results = await Promise.all(
        Array.from({ length: CALLERS }, (_, i) =>
          clients[i % 2]!.getToken({
            selector: i % 3 === 0 ? { case: "tenantId", value: TENANT_ID } : { case: "connectionId", value: connectionId },
          }),
        ),
      );

      expect(op.tokenEndpointCalls - before, `token-endpoint POSTs in round ${round}`).toBe(1);
      const accessTokens = new Set(results.map((r) => r.token?.accessToken));
      expect(accessTokens.size, `distinct tokens in round ${round}`).toBe(1);
      expect(accessTokens.has(previous!.accessToken)).toBe(false);
      for (const { token } of results) {
        expect(token?.version).toBe(BigInt(previous!.version + 1));
        expect(token?.connectionId).toBe(connectionId);
        expect(token?.tenantIds).toEqual([TENANT_ID]);
        expect(token?.tokenType).toBe("Bearer");
      }

      const stored = await store.tokens.getToken(connectionId);
      expect(stored?.state).toBe("active");
      expect(stored?.version).toBe(previous!.version + 1);
      // Tokens are compared as booleans, so a failing assertion prints none.
      expect(stored?.accessToken === results[0]!.token!.accessToken, "callers got the stored token").toBe(true);
      // Rotation: the stored refresh token is the new one.
      expect(stored?.refreshToken === previous!.refreshToken, "refresh token rotated").toBe(false);
      expect(op.tokenEndpointErrors).toEqual([]);
      previous = stored;
    }

    // One POST for the import plus one per round, and the grant is alive.
    expect(op.tokenEndpointCalls).toBe(1 + ROUNDS);
    expect(op.tokenEndpointErrors).toEqual([]);
    expect(op.revokedGrants).toBe(0);

    // The last stored refresh token is still live: one more refresh through the broker works.
    const stored = await store.tokens.getToken(connectionId);
    const report = await clients[0]!.reportExpired({
      selector: { case: "connectionId", value: connectionId },
      accessToken: stored!.accessToken,
    });
    expect(report.refreshed).toBe(true);
    expect(report.token?.version).toBe(BigInt(stored!.version + 1));
    expect(op.tokenEndpointCalls).toBe(2 + ROUNDS);
    expect(op.tokenEndpointErrors).toEqual([]);
    expect(op.revokedGrants).toBe(0);
  });
});
