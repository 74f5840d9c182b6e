import { existsSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { migrations } from "../src/store/migrations.js";
import { openStore } from "../src/store/open-store.js";
import { openSqliteStore } from "../src/store/sqlite-store.js";
import type { Store } from "../src/store/store.js";
import type { NewTokenSet, Tenant } from "../src/token-set.js";
import { tempDir } from "./helpers/broker-fixture.js";
import { withRawDatabase } from "./helpers/raw-database.js";
import { useStoreBackends } from "./helpers/store-backends.js";

const backends = useStoreBackends();

const MINUTE = 60_000;

/** A token set with random secrets, obtained at `now`. */
function tokenSet(now: number, lifetimeMs = 30 * MINUTE): NewTokenSet {
  return {
    accessToken: `at-${randomBytes(12).toString("hex")}`,
    refreshToken: `rt-${randomBytes(12).toString("hex")}`,
    idToken: `id-${randomBytes(6).toString("hex")}`,
    tokenType: "Bearer",
    scopes: ["openid", "offline_access", "accounting.transactions"],
    expiresAt: now + lifetimeMs,
    obtainedAt: now,
    refreshTokenIssuedAt: now,
  };
}

function tenant(tenantId: string, name = `Org ${tenantId}`): Tenant {
  return { tenantId, xeroConnectionId: `xc-${tenantId}`, tenantName: name, tenantType: "ORGANISATION", authEventId: "ae-1" };
}

describe("SQLite store on a file", () => {
  let dir: ReturnType<typeof tempDir>;
  let path: string;
  let clock: ManualClock;
  const opened: Store[] = [];
  const open = () => {
    const s = openSqliteStore({ path, clock });
    opened.push(s);
    return s;
  };

  beforeEach(() => {
    dir = tempDir();
    path = join(dir.path, "store.db");
    clock = new ManualClock(Date.UTC(2025, 0, 1));
  });
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
    dir.cleanup();
  });

  it("migrates a new file to the latest user_version, and reopening it keeps the data", async () => {
    const store = open();
    expect(withRawDatabase(path, (db) => db.pragma("user_version", { simple: true }))).toBe(migrations.length);
    expect(migrations.length).toBeGreaterThan(0);
    const ts = tokenSet(clock.now());
    const { connectionId, created } = await store.connections.saveConnection({
      xeroUserId: "user-1",
      tokenSet: ts,
      tenants: [tenant("t-1"), tenant("t-2")],
    });
    expect(created).toBe(true);
    await store.close();

    const again = open();
    expect(withRawDatabase(path, (db) => db.pragma("user_version", { simple: true }))).toBe(migrations.length);
    const record = await again.tokens.getToken(connectionId);
    expect(record).toMatchObject({ ...ts, connectionId, version: 1, state: "active", tenantIds: ["t-1", "t-2"] });
    expect(await again.connections.findConnectionByTenant("t-2")).toBe(connectionId);
    const [summary] = await again.connections.listConnections();
    expect(summary?.tenants.map((t) => t.tenantName)).toEqual(["Org t-1", "Org t-2"]);
  });

  it("puts the database file in WAL mode", async () => {
    const store = open();
    await store.connections.saveConnection({ xeroUserId: "u", tokenSet: tokenSet(clock.now()), tenants: [] });
    // Journal mode WAL is a property of the file: a second, independent connection sees it.
    const other = new Database(path, { readonly: true });
    try {
      expect(other.pragma("journal_mode", { simple: true })).toBe("wal");
    } finally {
      other.close();
    }
    expect(existsSync(`${path}-wal`)).toBe(true);
  });

  it("refuses a database whose user_version is newer than the code, with a clear message", async () => {
    const raw = new Database(path);
    raw.pragma(`user_version = ${migrations.length + 1}`);
    raw.close();
    expect(() => open()).toThrow(/schema version \d+ is newer than this tokenbroker supports.*upgrade tokenbroker/);
    // The file was left alone.
    const check = new Database(path, { readonly: true });
    try {
      expect(check.pragma("user_version", { simple: true })).toBe(migrations.length + 1);
      expect(check.prepare("SELECT count(*) AS n FROM sqlite_master WHERE type = 'table'").get()).toEqual({ n: 0 });
    } finally {
      check.close();
    }
  });
});

describe.each(backends)("Store on $name", (backend) => {
  if (backend.skip) return void it.skip(backend.skip);
  let location: string;
  let clock: ManualClock;
  const opened: Store[] = [];
  const open = async () => {
    const s = await openStore(location, { clock });
    opened.push(s);
    return s;
  };

  beforeEach(async () => {
    location = await backend.location();
    clock = new ManualClock(Date.UTC(2025, 0, 1));
  });
  afterEach(async () => {
    for (const s of opened.splice(0)) await s.close();
  });

  it("reopening a store keeps the data", async () => {
    const store = await open();
    const ts = tokenSet(clock.now());
    const { connectionId, created } = await store.connections.saveConnection({
      xeroUserId: "user-1",
      tokenSet: ts,
      tenants: [tenant("t-1"), tenant("t-2")],
    });
    expect(created).toBe(true);
    await store.close();

    const again = await open();
    const record = await again.tokens.getToken(connectionId);
    expect(record).toMatchObject({ ...ts, connectionId, version: 1, state: "active", tenantIds: ["t-1", "t-2"] });
    expect(await again.connections.findConnectionByTenant("t-2")).toBe(connectionId);
    const [summary] = await again.connections.listConnections();
    expect(summary?.tenants.map((t) => t.tenantName)).toEqual(["Org t-1", "Org t-2"]);
  });

  it("saveConnection for the same Xero user replaces the token set; a different user gets a second connection", async () => {
    const store = await open();
    const first = tokenSet(clock.now());
    const a = await store.connections.saveConnection({ xeroUserId: "user-a", tokenSet: first, tenants: [tenant("t-1")] });
    clock.advance(MINUTE);
    const second = tokenSet(clock.now());
    const again = await store.connections.saveConnection({ xeroUserId: "user-a", tokenSet: second, tenants: [tenant("t-1")] });
    expect(again).toEqual({ connectionId: a.connectionId, created: false });
    const recordA = await store.tokens.getToken(a.connectionId);
    expect(recordA).toMatchObject({ ...second, version: 2, tenantIds: ["t-1"] });
    expect(recordA?.refreshToken).not.toBe(first.refreshToken);

    const third = tokenSet(clock.now());
    const b = await store.connections.saveConnection({ xeroUserId: "user-b", tokenSet: third, tenants: [tenant("t-9")] });
    expect(b.created).toBe(true);
    expect(b.connectionId).not.toBe(a.connectionId);
    // Each connection keeps its own token set: user B's import did not touch user A's.
    expect(await store.tokens.getToken(a.connectionId)).toMatchObject({
      accessToken: second.accessToken,
      refreshToken: second.refreshToken,
      version: 2,
    });
    expect(await store.tokens.getToken(b.connectionId)).toMatchObject({
      accessToken: third.accessToken,
      refreshToken: third.refreshToken,
      version: 1,
    });
    expect(await store.connections.findConnectionByTenant("t-1")).toBe(a.connectionId);
    expect(await store.connections.findConnectionByTenant("t-9")).toBe(b.connectionId);
    expect((await store.connections.listConnections()).map((c) => c.xeroUserId).sort()).toEqual(["user-a", "user-b"]);
  });

  it("re-importing a user who needs re-authorisation makes the connection active again", async () => {
    const store = await open();
    const { connectionId } = await store.connections.saveConnection({ xeroUserId: "u", tokenSet: tokenSet(clock.now()), tenants: [] });
    await store.connections.markNeedsReauthorization(connectionId, "invalid_grant");
    expect((await store.tokens.getToken(connectionId))?.state).toBe("needs_reauthorization");
    await store.connections.saveConnection({ xeroUserId: "u", tokenSet: tokenSet(clock.now()), tenants: [] });
    expect((await store.tokens.getToken(connectionId))?.state).toBe("active");
    expect((await store.connections.listConnections())[0]?.lastError).toBeUndefined();
  });

  it("findConnectionByTenant prefers the most recently authorised active connection when two users share a tenant", async () => {
    const store = await open();
    const a = await store.connections.saveConnection({
      xeroUserId: "user-a",
      tokenSet: tokenSet(clock.now()),
      tenants: [tenant("shared")],
    });
    clock.advance(MINUTE);
    const b = await store.connections.saveConnection({
      xeroUserId: "user-b",
      tokenSet: tokenSet(clock.now()),
      tenants: [tenant("shared")],
    });
    expect(await store.connections.findConnectionByTenant("shared")).toBe(b.connectionId);

    // User A authorises again later: A is now the most recent.
    clock.advance(MINUTE);
    await store.connections.saveConnection({ xeroUserId: "user-a", tokenSet: tokenSet(clock.now()), tenants: [tenant("shared")] });
    expect(await store.connections.findConnectionByTenant("shared")).toBe(a.connectionId);

    // A loses its grant: the older but active B serves the tenant.
    await store.connections.markNeedsReauthorization(a.connectionId, "invalid_grant");
    expect(await store.connections.findConnectionByTenant("shared")).toBe(b.connectionId);
    expect(await store.connections.findConnectionByTenant("nobody")).toBeUndefined();
  });

  it("tryAcquireLease: a second holder is refused while the lease is live and gets it once it lapses", async () => {
    const store = await open();
    const { connectionId } = await store.connections.saveConnection({ xeroUserId: "u", tokenSet: tokenSet(clock.now()), tenants: [] });
    expect(await store.tokens.tryAcquireLease(connectionId, "A", 30_000)).toEqual({ acquired: true });
    expect(await store.tokens.tryAcquireLease(connectionId, "B", 30_000)).toEqual({
      acquired: false,
      holder: "A",
      expiresAt: clock.now() + 30_000,
    });
    // The holder itself may renew.
    expect(await store.tokens.tryAcquireLease(connectionId, "A", 30_000)).toEqual({ acquired: true });
    clock.advance(29_999);
    expect((await store.tokens.tryAcquireLease(connectionId, "B", 30_000)).acquired).toBe(false);
    clock.advance(1);
    expect(await store.tokens.tryAcquireLease(connectionId, "B", 30_000)).toEqual({ acquired: true });
    expect((await store.tokens.tryAcquireLease(connectionId, "A", 30_000)).acquired).toBe(false);
    // Release only by the holder.
    await store.tokens.releaseLease(connectionId, "A");
    expect((await store.tokens.tryAcquireLease(connectionId, "C", 30_000)).acquired).toBe(false);
    await store.tokens.releaseLease(connectionId, "B");
    expect((await store.tokens.tryAcquireLease(connectionId, "C", 30_000)).acquired).toBe(true);
  });

  it("a lease taken in one store is seen by a second store on the same file", async () => {
    const one = await open();
    const two = await open();
    const { connectionId } = await one.connections.saveConnection({ xeroUserId: "u", tokenSet: tokenSet(clock.now()), tenants: [] });
    expect((await one.tokens.tryAcquireLease(connectionId, "A", 30_000)).acquired).toBe(true);
    expect(await two.tokens.tryAcquireLease(connectionId, "B", 30_000)).toMatchObject({ acquired: false, holder: "A" });
  });

  it("commitRefresh stores the new token set, bumps the version and releases the lease", async () => {
    const store = await open();
    const { connectionId } = await store.connections.saveConnection({
      xeroUserId: "u",
      tokenSet: tokenSet(clock.now()),
      tenants: [tenant("t")],
    });
    await store.tokens.tryAcquireLease(connectionId, "A", 30_000);
    clock.advance(MINUTE);
    const next = tokenSet(clock.now());
    const record = await store.tokens.commitRefresh(connectionId, "A", 1, next);
    expect(record).toMatchObject({ ...next, connectionId, version: 2, state: "active", tenantIds: ["t"] });
    expect(await store.tokens.getToken(connectionId)).toEqual(record);
    expect((await store.tokens.tryAcquireLease(connectionId, "B", 30_000)).acquired).toBe(true);
    expect((await store.connections.listConnections())[0]?.lastRefreshAt).toBe(clock.now());
  });

  it("commitRefresh with a stale fromVersion throws and changes nothing", async () => {
    const store = await open();
    const { connectionId } = await store.connections.saveConnection({
      xeroUserId: "u",
      tokenSet: tokenSet(clock.now()),
      tenants: [tenant("t")],
    });
    await store.tokens.tryAcquireLease(connectionId, "A", 30_000);
    await store.tokens.commitRefresh(connectionId, "A", 1, tokenSet(clock.now())); // now version 2
    await store.tokens.tryAcquireLease(connectionId, "A", 30_000);
    const before = await store.tokens.getToken(connectionId);
    const connectionsBefore = await store.connections.listConnections();

    await expect(store.tokens.commitRefresh(connectionId, "A", 1, tokenSet(clock.now()))).rejects.toThrow(/expected version 1/);

    expect(await store.tokens.getToken(connectionId)).toEqual(before);
    expect(await store.connections.listConnections()).toEqual(connectionsBefore);
    // The lease was not released by the failed commit.
    expect(await store.tokens.tryAcquireLease(connectionId, "B", 30_000)).toMatchObject({ acquired: false, holder: "A" });
  });

  it("markNeedsReauthorization sets the state and the reason, and removes the lease", async () => {
    const store = await open();
    const { connectionId } = await store.connections.saveConnection({ xeroUserId: "u", tokenSet: tokenSet(clock.now()), tenants: [] });
    await store.tokens.tryAcquireLease(connectionId, "A", 30_000);
    await store.connections.markNeedsReauthorization(connectionId, "refresh: the refresh token was rejected (invalid_grant)");
    const record = await store.tokens.getToken(connectionId);
    expect(record?.state).toBe("needs_reauthorization");
    expect(record?.version).toBe(1);
    const [summary] = await store.connections.listConnections();
    expect(summary?.state).toBe("needs_reauthorization");
    expect(summary?.lastError).toMatch(/invalid_grant/);
    // No lease left: another holder gets it at once, and it is not reported as lapsed later.
    clock.advance(MINUTE);
    expect(await store.tokens.listLapsedLeases(clock.now())).toEqual([]);
    expect((await store.tokens.tryAcquireLease(connectionId, "B", 30_000)).acquired).toBe(true);
  });

  it("listLapsedLeases lists only connections whose lease has lapsed", async () => {
    const store = await open();
    const ids: string[] = [];
    for (const user of ["a", "b", "c", "d"]) {
      ids.push((await store.connections.saveConnection({ xeroUserId: user, tokenSet: tokenSet(clock.now()), tenants: [] })).connectionId);
    }
    const [a, b, c, d] = ids as [string, string, string, string];
    await store.tokens.tryAcquireLease(a, "A", 10_000); // lapses at +10 s
    await store.tokens.tryAcquireLease(b, "B", 60_000); // lapses at +60 s
    await store.tokens.tryAcquireLease(c, "C", 10_000);
    await store.tokens.releaseLease(c, "C"); // finished normally
    // d never had a lease.
    expect(await store.tokens.listLapsedLeases(clock.now())).toEqual([]);
    clock.advance(10_000);
    expect(await store.tokens.listLapsedLeases(clock.now())).toEqual([a]);
    clock.advance(50_000);
    expect((await store.tokens.listLapsedLeases(clock.now())).sort()).toEqual([a, b].sort());
    expect(await store.tokens.listLapsedLeases(clock.now())).not.toContain(d);
    // A connection that needs re-authorisation is not recovered.
    await store.tokens.tryAcquireLease(d, "D", 1);
    await backend.exec(location, `UPDATE connections SET state = 'needs_reauthorization' WHERE id = '${d}'`);
    clock.advance(1000);
    expect(await store.tokens.listLapsedLeases(clock.now())).not.toContain(d);
  });

  it("syncTenants marks removed tenants gone and adds new ones, stamping when each was listed; findRemovedTenant explains the miss", async () => {
    const store = await open();
    const { connectionId } = await store.connections.saveConnection({
      xeroUserId: "u",
      tokenSet: tokenSet(clock.now()),
      tenants: [tenant("t-1"), tenant("t-2")],
    });
    expect(await store.connections.findRemovedTenant("t-2")).toBeUndefined();
    clock.advance(MINUTE);
    const checkedAt = clock.now();
    const { gone, added } = await store.connections.syncTenants(connectionId, [tenant("t-1"), tenant("t-3", "Demo reset")]);
    expect(gone.map((t) => t.tenantId)).toEqual(["t-2"]);
    expect(added.map((t) => t.tenantId)).toEqual(["t-3"]);
    expect(await store.connections.findConnectionByTenant("t-2")).toBeUndefined();
    expect(await store.connections.findConnectionByTenant("t-3")).toBe(connectionId);
    expect((await store.tokens.getToken(connectionId))?.tenantIds).toEqual(["t-1", "t-3"]);
    expect(await store.connections.findRemovedTenant("t-2")).toEqual({
      connectionId,
      tenantId: "t-2",
      tenantName: "Org t-2",
      goneAt: checkedAt,
    });
    const [summary] = await store.connections.listConnections();
    expect(summary?.tenants.map((t) => [t.tenantId, t.state, t.checkedAt, t.goneAt])).toEqual([
      ["t-1", "active", checkedAt, undefined],
      ["t-2", "gone", undefined, checkedAt],
      ["t-3", "active", checkedAt, undefined],
    ]);
    // Listed again: active again, and no longer explained as removed.
    const again = await store.connections.syncTenants(connectionId, [tenant("t-1"), tenant("t-2"), tenant("t-3")]);
    expect(again).toEqual({ gone: [], added: [tenant("t-2")] });
    expect(await store.connections.findRemovedTenant("t-2")).toBeUndefined();
  });

  it("claimTenantCheck: of brokers claiming the same re-read at once, exactly one wins; the next claim needs the new value", async () => {
    const a = await open();
    const b = await open();
    const { connectionId } = await a.connections.saveConnection({ xeroUserId: "u", tokenSet: tokenSet(clock.now()), tenants: [] });
    const [seen] = await b.connections.listTenantChecks();
    expect(seen).toEqual({ connectionId, claimedAt: undefined });
    const claims = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).connections.claimTenantCheck(connectionId, undefined)),
    );
    expect(claims.filter(Boolean)).toHaveLength(1);
    const [after] = await a.connections.listTenantChecks();
    expect(after?.claimedAt).toBe(clock.now());
    expect(await b.connections.claimTenantCheck(connectionId, undefined)).toBe(false);
    clock.advance(MINUTE);
    expect(await b.connections.claimTenantCheck(connectionId, after!.claimedAt)).toBe(true);
    // A connection that needs re-authorisation is not re-read.
    await a.connections.markNeedsReauthorization(connectionId, "invalid_grant");
    expect(await a.connections.listTenantChecks()).toEqual([]);
    expect(await a.connections.claimTenantCheck(connectionId, clock.now())).toBe(false);
  });
});
