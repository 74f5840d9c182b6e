/**
 * The in-memory store of the unit tests (test/helpers/memory-token-store.ts) behaves as the SQLite and the
 * PostgreSQL stores in everything the token logic relies on: leases, the commit under the lease and the version, re-authorisation,
 * lapsed leases and token states. The same scenarios run against both, so the unit tests prove something
 * about the real store's contract and the fake cannot drift from it unseen.
 */
import { afterEach, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { openStore } from "../src/store/open-store.js";
import type { Store } from "../src/store/store.js";
import { LeaseLostError } from "../src/store/token-set-store.js";
import { MemoryTokenStore, type TokenStore } from "./helpers/memory-token-store.js";
import { useStoreBackends } from "./helpers/store-backends.js";
import { taggedTokenSet } from "./helpers/token-sets.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

const backends = useStoreBackends();

/** A store's token-set and connection parts, seen as one object as the memory store is. */
function asOneObject(store: Store): TokenStore {
  cleanups.push(() => store.close());
  const parts = [store.tokens, store.connections] as const;
  return new Proxy({} as TokenStore, {
    get(_, name) {
      const part = parts.find((p) => name in p) as Record<PropertyKey, unknown> | undefined;
      const value = part?.[name];
      return typeof value === "function" ? value.bind(part) : value;
    },
  });
}

const stores: Array<{ name: string; skip: string | undefined; open(clock: ManualClock): Promise<TokenStore> }> = [
  ...backends.map((backend) => ({
    name: backend.name,
    skip: backend.skip,
    open: async (clock: ManualClock) => asOneObject(await openStore(await backend.location(), { clock })),
  })),
  { name: "memory", skip: undefined, open: async (clock: ManualClock) => new MemoryTokenStore(clock) },
];

const tokenSet = (clock: ManualClock, tag: string) => taggedTokenSet(clock.now(), tag);

const tenant = (tenantId: string) => ({
  tenantId,
  xeroConnectionId: undefined,
  tenantName: undefined,
  tenantType: undefined,
  authEventId: undefined,
});

describe.each(stores)("the $name store", ({ open, skip }) => {
  if (skip) return void it.skip(skip);
  async function setUp() {
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const store = await open(clock);
    const { connectionId } = await store.saveConnection({ xeroUserId: "u1", tokenSet: tokenSet(clock, "1"), tenants: [tenant("t1")] });
    return { clock, store, connectionId };
  }

  it("one lease holder at a time; a lapsed lease, or one taken 'in the future' (the clock went back), can be taken over", async () => {
    const { clock, store, connectionId } = await setUp();
    expect(await store.tryAcquireLease(connectionId, "A", 30_000)).toEqual({ acquired: true });
    expect(await store.tryAcquireLease(connectionId, "B", 30_000)).toEqual({
      acquired: false,
      holder: "A",
      expiresAt: clock.now() + 30_000,
    });
    expect(await store.tryAcquireLease(connectionId, "A", 30_000)).toEqual({ acquired: true }); // renewed by its holder
    expect(await store.listLapsedLeases(clock.now())).toEqual([]);
    clock.advance(30_000);
    expect(await store.listLapsedLeases(clock.now())).toEqual([connectionId]);
    expect(await store.tryAcquireLease(connectionId, "B", 30_000)).toEqual({ acquired: true });
    clock.advance(-60_000);
    expect(await store.listLapsedLeases(clock.now())).toEqual([connectionId]);
    expect(await store.tryAcquireLease(connectionId, "C", 30_000)).toEqual({ acquired: true });
    await store.releaseLease(connectionId, "B"); // not B's any more: nothing happens
    expect((await store.tryAcquireLease(connectionId, "D", 30_000)).acquired).toBe(false);
    await store.releaseLease(connectionId, "C");
    expect((await store.tryAcquireLease(connectionId, "D", 30_000)).acquired).toBe(true);
  });

  it("a lease stamped a moment after another host's 'now' is held: only a clock gone back by more than a lease is taken over", async () => {
    // Host B reads its clock, then its statement waits (a busy pool, a busy core) while host A takes the lease
    // stamped a few ms later: B's "now" is before A's acquired_at, which is ordinary concurrency, not a clock jump.
    const { clock, store, connectionId } = await setUp();
    const taken = clock.now();
    expect(await store.tryAcquireLease(connectionId, "A", 4000)).toEqual({ acquired: true });
    clock.set(taken - 50);
    expect((await store.tryAcquireLease(connectionId, "B", 4000)).acquired).toBe(false);
    expect(await store.listLapsedLeases(clock.now())).toEqual([]);
    clock.set(taken - 4000);
    expect((await store.tryAcquireLease(connectionId, "B", 4000)).acquired).toBe(false);
    expect(await store.listLapsedLeases(clock.now())).toEqual([]);
    clock.set(taken - 4001);
    expect(await store.listLapsedLeases(clock.now())).toEqual([connectionId]);
    expect((await store.tryAcquireLease(connectionId, "B", 4000)).acquired).toBe(true);
  });

  it("only the lease holder commits, from the stored version; the commit releases the lease", async () => {
    const { clock, store, connectionId } = await setUp();
    await store.tryAcquireLease(connectionId, "A", 30_000);
    clock.advance(30_000);
    await store.tryAcquireLease(connectionId, "B", 30_000);
    await expect(store.commitRefresh(connectionId, "A", 1, tokenSet(clock, "A"))).rejects.toBeInstanceOf(LeaseLostError);
    const wrongVersion = await store.commitRefresh(connectionId, "B", 7, tokenSet(clock, "B")).catch((e: unknown) => e);
    expect(wrongVersion).toBeInstanceOf(Error);
    expect(wrongVersion).not.toBeInstanceOf(LeaseLostError);
    expect((await store.getToken(connectionId))?.version).toBe(1);
    const committed = await store.commitRefresh(connectionId, "B", 1, tokenSet(clock, "B"));
    expect(committed).toMatchObject({
      connectionId,
      version: 2,
      accessToken: "access-B",
      refreshToken: "refresh-B",
      state: "active",
      tenantIds: ["t1"],
    });
    expect(await store.getToken(connectionId)).toMatchObject({ version: 2, accessToken: "access-B" });
    expect((await store.tryAcquireLease(connectionId, "C", 30_000)).acquired).toBe(true);
    // A lease that lapsed but nobody took over is still its holder's to commit under.
    clock.advance(120_000);
    expect((await store.commitRefresh(connectionId, "C", 2, tokenSet(clock, "C"))).version).toBe(3);
  });

  it("re-authorisation is needed after markNeedsReauthorization (lease dropped, no lapsed lease listed), until the same user consents again", async () => {
    const { clock, store, connectionId } = await setUp();
    await store.tryAcquireLease(connectionId, "A", 30_000);
    await store.markNeedsReauthorization(connectionId, "invalid_grant");
    expect((await store.getToken(connectionId))?.state).toBe("needs_reauthorization");
    expect((await store.tryAcquireLease(connectionId, "B", 30_000)).acquired).toBe(true);
    clock.advance(60_000);
    expect(await store.listLapsedLeases(clock.now())).toEqual([]);
    const again = await store.saveConnection({ xeroUserId: "u1", tokenSet: tokenSet(clock, "2"), tenants: [] });
    expect(again).toEqual({ connectionId, created: false });
    expect(await store.getToken(connectionId)).toMatchObject({ state: "active", version: 2, accessToken: "access-2" });
    expect((await store.tryAcquireLease(connectionId, "C", 30_000)).acquired).toBe(true); // the consent dropped B's lease
  });

  it("lists token states without secrets, and finds a connection by tenant", async () => {
    const { store, connectionId } = await setUp();
    const stored = await store.getToken(connectionId);
    expect(await store.listTokenStates()).toEqual([
      {
        connectionId,
        version: 1,
        state: "active",
        expiresAt: stored!.expiresAt,
        obtainedAt: stored!.obtainedAt,
        refreshTokenIssuedAt: stored!.refreshTokenIssuedAt,
      },
    ]);
    expect(await store.findConnectionByTenant("t1")).toBe(connectionId);
    expect(await store.findConnectionByTenant("t2")).toBeUndefined();
    await store.saveTenants(connectionId, [tenant("t2")]);
    expect(await store.findConnectionByTenant("t2")).toBe(connectionId);
    expect(await store.getToken("no-such-connection")).toBeUndefined();
    await store.recordError(connectionId, "refresh: HTTP 503");
    expect((await store.listConnections())[0]).toMatchObject({ connectionId, lastError: "refresh: HTTP 503", version: 1 });
  });
});
