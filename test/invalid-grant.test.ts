import { setTimeout as delay } from "node:timers/promises";
import { Code, ConnectError } from "@connectrpc/connect";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConnectionState, type WatchTokenResponse } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import type { FakeGrant } from "@tokenbroker/fake-xero";
import { importRefreshToken, type ImportResult } from "../src/importer.js";
import { openSqliteStore } from "../src/store/sqlite-store.js";
import { protocols, startBroker, type BrokerFixture } from "./helpers/broker-fixture.js";
import { readStream, type StreamReader } from "./helpers/stream-reader.js";
import { rejection } from "./helpers/rejection.js";

const chosen = protocols.filter((p) => p.name.startsWith("gRPC (") || p.name.startsWith("Connect JSON"));

describe.each(chosen)("a grant revoked at Xero, over $name", ({ transport }) => {
  let f: BrokerFixture;
  let grant: FakeGrant;
  let imported: ImportResult;
  let tenantId: string;
  let connectionId: string;
  const readers: Array<StreamReader<WatchTokenResponse>> = [];

  beforeEach(async () => {
    // Import our own grant so that the test knows its grant id at the fake.
    f = await startBroker({ noImport: true });
    grant = f.fake.addGrant({ tenants: [{ tenantName: "Org A" }, { tenantName: "Org B" }] });
    imported = await importRefreshToken(f.store, f.identity, grant.refreshToken);
    tenantId = imported.tenants[0]!.tenantId;
    connectionId = imported.connectionId;
  });
  afterEach(async () => {
    for (const r of readers.splice(0)) r.cancel();
    await f.close();
  });

  const byTenant = () => ({ case: "tenantId" as const, value: tenantId });

  function watch(): StreamReader<WatchTokenResponse> {
    const client = f.client(transport);
    const reader = readStream((signal) => client.watchToken({ selector: byTenant() }, { signal }));
    readers.push(reader);
    return reader;
  }

  async function expireStoredToken(): Promise<void> {
    const token = await f.store.tokens.getToken(connectionId);
    f.clock.set(token!.expiresAt + 1000);
  }

  it("stops refreshing, says how to re-authorise, and comes back after a re-import", async () => {
    const client = f.client(transport);
    const watcher = watch();
    const first = await watcher.next(2000);
    expect(first.state).toBe(ConnectionState.ACTIVE);
    const oldToken = first.token!;

    f.fake.revokeGrant(grant.grantId);
    await expireStoredToken();
    const before = f.fake.tokenEndpointCalls;

    // The refresh gets invalid_grant: FAILED_PRECONDITION with a way out.
    const err = await rejection(client.getToken({ selector: byTenant() }));
    expect(err.code).toBe(Code.FailedPrecondition);
    expect(err.rawMessage).toMatch(/re-?authori[sz]/i);
    expect(err.rawMessage).toMatch(/import/);
    expect(err.rawMessage).toContain(connectionId);
    expect(err.rawMessage).not.toContain(oldToken.accessToken);
    expect(f.fake.tokenEndpointCalls - before).toBe(1);
    expect(f.fake.invalidGrants).toBe(1);

    // The watcher learns at once: NEEDS_REAUTHORIZATION, with no token.
    const update = await watcher.next(3000);
    expect(update.state).toBe(ConnectionState.NEEDS_REAUTHORIZATION);
    expect(update.token).toBeUndefined();
    // A watcher that opens now gets the state as its first message.
    const late = watch();
    const lateFirst = await late.next(2000);
    expect(lateFirst.state).toBe(ConnectionState.NEEDS_REAUTHORIZATION);
    expect(lateFirst.token).toBeUndefined();

    // No more refreshes: not for callers, not for reports, not for the scheduler.
    const calls = f.fake.tokenEndpointCalls;
    const results = await Promise.allSettled([
      ...Array.from({ length: 50 }, () => client.getToken({ selector: byTenant() })),
      ...Array.from({ length: 50 }, () =>
        client.reportExpired({ selector: { case: "connectionId", value: connectionId }, accessToken: oldToken.accessToken }),
      ),
    ]);
    for (const r of results) {
      expect(r.status).toBe("rejected");
      if (r.status === "rejected") expect(ConnectError.from(r.reason).code).toBe(Code.FailedPrecondition);
    }
    f.clock.advance(24 * 60 * 60_000); // past any cooldown or lead time
    await f.server.scheduler.tick();
    await delay(50);
    const again = await rejection(client.getToken({ selector: { case: "connectionId", value: connectionId } }));
    expect(again.code).toBe(Code.FailedPrecondition);
    expect(f.fake.tokenEndpointCalls).toBe(calls);
    expect(f.fake.invalidGrants).toBe(1);

    // The store, read from the database file, says so too.
    const reader = openSqliteStore({ path: f.dbPath });
    try {
      const summary = (await reader.connections.listConnections()).find((c) => c.connectionId === connectionId);
      expect(summary?.state).toBe("needs_reauthorization");
      expect(summary?.lastError).toMatch(/invalid_grant/);
      expect((await reader.tokens.getToken(connectionId))?.state).toBe("needs_reauthorization");
    } finally {
      await reader.close();
    }

    // The same Xero user consents again: a new grant for the same organisations.
    const regrant = f.fake.addGrant({
      userId: grant.userId,
      tenants: imported.tenants.map((t) => ({ tenantId: t.tenantId, ...(t.tenantName ? { tenantName: t.tenantName } : {}) })),
    });
    const reimported = await importRefreshToken(f.store, f.identity, regrant.refreshToken);
    expect(reimported.connectionId).toBe(connectionId);
    expect(reimported.created).toBe(false);

    const summary = (await f.store.connections.listConnections()).find((c) => c.connectionId === connectionId);
    expect(summary?.state).toBe("active");
    expect(summary?.lastError).toBeUndefined();

    const afterImport = f.fake.tokenEndpointCalls;
    const { token } = await client.getToken({ selector: byTenant() });
    expect(token?.connectionId).toBe(connectionId);
    expect(token?.version).toBeGreaterThan(oldToken.version);
    expect(token?.accessToken).not.toBe(oldToken.accessToken);
    expect(f.fake.tokenEndpointCalls).toBe(afterImport); // the imported token is fresh

    // The scheduler tells watchers the connection is back (the import may run in another process).
    await f.server.scheduler.tick();
    for (const w of [watcher, late]) {
      const back = await w.next(3000);
      expect(back.state).toBe(ConnectionState.ACTIVE);
      expect(back.token?.accessToken).toBe(token?.accessToken);
      expect(back.token?.version).toBe(token?.version);
    }

    // And it refreshes normally again: one call, no invalid_grant.
    await expireStoredToken();
    const refreshed = await client.getToken({ selector: byTenant() });
    expect(refreshed.token?.version).toBe(token!.version + 1n);
    expect(f.fake.tokenEndpointCalls - afterImport).toBe(1);
    expect(f.fake.invalidGrants).toBe(1);
  });

  it("a report of the current token after revocation also ends in FAILED_PRECONDITION, once upstream", async () => {
    const client = f.client(transport);
    const { token } = await client.getToken({ selector: byTenant() });
    f.fake.revokeGrant(grant.grantId);
    const before = f.fake.tokenEndpointCalls;
    f.fake.setLatency(100);

    const results = await Promise.allSettled(
      Array.from({ length: 100 }, () => client.reportExpired({ selector: byTenant(), accessToken: token!.accessToken })),
    );
    for (const r of results) {
      expect(r.status).toBe("rejected");
      if (r.status === "rejected") {
        const e = ConnectError.from(r.reason);
        expect(e.code).toBe(Code.FailedPrecondition);
        expect(e.rawMessage).toMatch(/re-?authori[sz]/i);
      }
    }
    expect(f.fake.tokenEndpointCalls - before).toBe(1);
    expect((await f.store.tokens.getToken(connectionId))?.state).toBe("needs_reauthorization");
  });
});
