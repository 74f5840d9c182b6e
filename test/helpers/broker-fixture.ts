import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createClient, type Client, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { TokenService } from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import { ManualClock } from "../../src/clock.js";
import type { TokenCipher } from "../../src/crypto/token-cipher.js";
import { identityServerOptions, startFakeXero, type FakeXero, type FakeXeroOptions } from "@tokenbroker/fake-xero";
import { importRefreshToken, type ImportResult } from "../../src/importer.js";
import { startBrokerServer, type BrokerServer, type BrokerServerOptions } from "../../src/server/broker-server.js";
import { openSqliteStore } from "../../src/store/sqlite-store.js";
import type { Store } from "../../src/store/store.js";
import type { IdentityServer } from "../../src/upstream/identity-server.js";
import { createOidcIdentityServer } from "../../src/upstream/oidc-identity-server.js";

/** A temporary directory removed by `cleanup`. */
export function tempDir(): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), "tokenbroker-test-"));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

/** The wire protocols the server speaks, each as a client transport factory. */
export const protocols: Array<{ name: string; transport: (baseUrl: string) => Transport }> = [
  { name: "gRPC (HTTP/2)", transport: (baseUrl) => createGrpcTransport({ baseUrl }) },
  { name: "gRPC-Web (HTTP/1.1)", transport: (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }) },
  {
    name: "Connect binary (HTTP/2)",
    transport: (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true }),
  },
  {
    name: "Connect JSON (HTTP/1.1)",
    transport: (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false }),
  },
];

/** Options for {@link startBroker}. */
export interface BrokerFixtureOptions {
  /** Options for the fake Xero (it runs on real time unless `now` is given). */
  fake?: FakeXeroOptions;
  /** Extra options for the broker server. */
  server?: Partial<BrokerServerOptions>;
  /** Tenants of the grant imported at start (default two). */
  tenants?: Array<{ tenantName?: string }>;
  /** Skip the import (no connection at start). */
  noImport?: boolean;
  /** Seal tokens at rest with this cipher (default: clear text). */
  encryption?: TokenCipher;
}

/** Everything a test of the real server needs. */
export interface BrokerFixture {
  fake: FakeXero;
  clock: ManualClock;
  store: Store;
  identity: IdentityServer;
  server: BrokerServer;
  dbPath: string;
  /** The connection imported at start (unless noImport). */
  imported: ImportResult;
  /** First tenant of the imported connection. */
  tenantId: string;
  connectionId: string;
  /** A TokenService client over the given protocol (default gRPC). */
  client(transport?: (baseUrl: string) => Transport): Client<typeof TokenService>;
  /** Moves the broker's clock past the current token's expiry. */
  expireToken(): Promise<void>;
  close(): Promise<void>;
}

/**
 * Starts a fake Xero, a SQLite store in a temporary file, and the real broker
 * server on a loopback port, all on one manual clock; imports one grant.
 * The scheduler's timer is not started: tests call `server.scheduler.tick()`.
 */
export async function startBroker(options: BrokerFixtureOptions = {}): Promise<BrokerFixture> {
  const clock = new ManualClock();
  // The fake keeps real time: openid-client checks id-token timestamps against the real clock.
  const fake = await startFakeXero({ ...options.fake });
  const dir = tempDir();
  const dbPath = join(dir.path, "tokenbroker.db");
  const store = openSqliteStore({ path: dbPath, clock, ...(options.encryption ? { encryption: options.encryption } : {}) });
  const identity = createOidcIdentityServer({ ...identityServerOptions(fake), clock });
  let imported: ImportResult = { connectionId: "", created: false, xeroUserId: undefined, tenants: [] };
  if (!options.noImport) {
    const grant = fake.addGrant({ tenants: options.tenants ?? [{ tenantName: "Org A" }, { tenantName: "Org B" }] });
    imported = await importRefreshToken(store, identity, grant.refreshToken);
  }
  const server = await startBrokerServer({
    port: 0,
    store,
    identity,
    clock,
    refresher: { retryBaseMs: 10, cooldownMs: 10 },
    ...options.server,
  });
  await server.scheduler.stop(); // tests drive the scheduler by hand
  await server.tenants.stop(); // and the re-read of organisations (server.tenants.tick())
  return {
    fake,
    clock,
    store,
    identity,
    server,
    dbPath,
    imported,
    tenantId: imported.tenants[0]?.tenantId ?? "",
    connectionId: imported.connectionId,
    client: (transport = protocols[0]!.transport) => createClient(TokenService, transport(server.url)),
    async expireToken() {
      const token = await store.tokens.getToken(imported.connectionId);
      if (token) clock.set(token.expiresAt + 1000);
    },
    async close() {
      await server.close();
      await store.close();
      await fake.close();
      dir.cleanup();
    },
  };
}
