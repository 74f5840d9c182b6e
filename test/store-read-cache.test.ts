/**
 * The SQLite store remembers its hot reads (tenant → connection, token set)
 * until the database changes. These tests change the database in every way a
 * broker sees it change — through the same store, through another connection
 * to the file (another process), in a transaction that rolls back — and check
 * that the next read sees exactly what is committed: at once for the store's
 * own writes, within CHECK_EVERY_MS for another connection's.
 */
import { randomUUID } from "node:crypto";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, beforeEach, expect, it } from "vitest";
import { CHECK_EVERY_MS, ReadCache } from "../src/store/read-cache.js";
import { openSqliteStore } from "../src/store/sqlite-store.js";
import type { Store } from "../src/store/store.js";
import { tempDir } from "./helpers/broker-fixture.js";
import { openRawDatabase } from "./helpers/raw-database.js";
import { tokenSetAt } from "./helpers/token-sets.js";

let dir: ReturnType<typeof tempDir>;
let a: Store;
let b: Store;

beforeEach(() => {
  dir = tempDir();
  const path = join(dir.path, "tokenbroker.db");
  a = openSqliteStore({ path });
  b = openSqliteStore({ path }); // a second connection to the file, as another broker process has
});
afterEach(async () => {
  await a.close();
  await b.close();
  dir.cleanup();
});

/** Two scopes: the test below checks that a caller cannot reorder them. */
const tokenSet = (accessToken: string) => tokenSetAt(Date.now(), { accessToken, scopes: ["offline_access", "accounting.transactions"] });

/** Waits until the cache looks at the database again. */
const nextTurn = () => delay(CHECK_EVERY_MS + 1);

const tenant = (tenantId: string) => ({
  tenantId,
  xeroConnectionId: undefined,
  tenantName: undefined,
  tenantType: undefined,
  authEventId: undefined,
});

it("a token set replaced by another connection is read at once, and so is a tenant moved to another grant", async () => {
  const tenantId = randomUUID();
  const { connectionId } = await a.connections.saveConnection({
    xeroUserId: "user-1",
    tokenSet: tokenSet("access-1"),
    tenants: [tenant(tenantId)],
  });
  expect(await a.connections.findConnectionByTenant(tenantId)).toBe(connectionId);
  expect((await a.tokens.getToken(connectionId))?.accessToken).toBe("access-1");
  expect((await a.tokens.getToken(connectionId))?.accessToken).toBe("access-1"); // now remembered

  await b.connections.saveConnection({ xeroUserId: "user-1", tokenSet: tokenSet("access-2"), tenants: [] });
  await nextTurn();
  const after = await a.tokens.getToken(connectionId);
  expect(after?.accessToken).toBe("access-2");
  expect(after?.version).toBe(2);

  // The same tenant authorised later through another user's grant: that grant now serves it.
  await delay(5);
  const other = await b.connections.saveConnection({ xeroUserId: "user-2", tokenSet: tokenSet("access-3"), tenants: [tenant(tenantId)] });
  await nextTurn();
  expect(await a.connections.findConnectionByTenant(tenantId)).toBe(other.connectionId);
});

it("a change through the same store, and a state change, are read at once", async () => {
  const { connectionId } = await a.connections.saveConnection({ xeroUserId: "user-1", tokenSet: tokenSet("access-1"), tenants: [] });
  expect((await a.tokens.getToken(connectionId))?.state).toBe("active");
  await a.connections.markNeedsReauthorization(connectionId, "invalid_grant");
  expect((await a.tokens.getToken(connectionId))?.state).toBe("needs_reauthorization");
  await b.connections.saveConnection({ xeroUserId: "user-1", tokenSet: tokenSet("access-2"), tenants: [] });
  await nextTurn();
  expect(await a.tokens.getToken(connectionId)).toMatchObject({ state: "active", accessToken: "access-2" });
});

it(`another connection's commit is seen within ${CHECK_EVERY_MS} ms; a lease taken sees it at once`, async () => {
  const { connectionId } = await a.connections.saveConnection({ xeroUserId: "user-1", tokenSet: tokenSet("access-1"), tenants: [] });
  expect((await a.tokens.getToken(connectionId))?.accessToken).toBe("access-1");
  await b.connections.saveConnection({ xeroUserId: "user-1", tokenSet: tokenSet("access-2"), tenants: [] });
  await nextTurn();
  expect((await a.tokens.getToken(connectionId))?.accessToken).toBe("access-2");

  // A store that looks at the database once a minute still sees every commit once it takes a refresh lease.
  const slow = openSqliteStore({ path: join(dir.path, "tokenbroker.db"), readCacheCheckMs: 60_000 });
  try {
    expect((await slow.tokens.getToken(connectionId))?.accessToken).toBe("access-2");
    await b.connections.saveConnection({ xeroUserId: "user-1", tokenSet: tokenSet("access-3"), tenants: [] });
    expect((await slow.tokens.getToken(connectionId))?.accessToken).toBe("access-2"); // within its minute
    expect(await slow.tokens.tryAcquireLease(connectionId, "holder-a", 10_000)).toEqual({ acquired: true });
    expect((await slow.tokens.getToken(connectionId))?.accessToken).toBe("access-3");
    await slow.tokens.releaseLease(connectionId, "holder-a");
  } finally {
    await slow.close();
  }
});

it("a rolled-back transaction leaves nothing behind, and a record read is shared and cannot be changed by a caller", async () => {
  const tenantId = randomUUID();
  const { connectionId } = await a.connections.saveConnection({
    xeroUserId: "user-1",
    tokenSet: tokenSet("access-1"),
    tenants: [tenant(tenantId)],
  });
  // The store's own transactions are inside it; the cache's rule is checked on a connection of the test's own.
  const db = openRawDatabase(join(dir.path, "tokenbroker.db"));
  try {
    const cache = new ReadCache(db);
    const read = () =>
      cache.get("token", connectionId, () =>
        db.prepare("SELECT access_token FROM token_sets WHERE connection_id = ?").pluck().get(connectionId),
      );
    expect(() =>
      db.transaction(() => {
        db.prepare("UPDATE token_sets SET access_token = 'uncommitted' WHERE connection_id = ?").run(connectionId);
        expect(read()).toBe("uncommitted"); // read inside the transaction: answered, not remembered
        throw new Error("roll back");
      })(),
    ).toThrow("roll back");
    expect(read()).toBe("access-1");
  } finally {
    db.close();
  }
  expect((await a.tokens.getToken(connectionId))?.accessToken).toBe("access-1");

  const first = await a.tokens.getToken(connectionId);
  expect(() => first!.tenantIds.push("not-a-tenant")).toThrow(TypeError);
  expect(() => first!.scopes.sort().reverse()).toThrow(TypeError);
  expect(() => ((first as { accessToken: string }).accessToken = "changed by a caller")).toThrow(TypeError);
  const second = await a.tokens.getToken(connectionId);
  expect(second).toBe(first); // one record for every caller of the moment
  expect(second?.tenantIds).toEqual([tenantId]);
  expect(second?.scopes).toEqual(["offline_access", "accounting.transactions"]);
  expect(second?.accessToken).toBe("access-1");
});
