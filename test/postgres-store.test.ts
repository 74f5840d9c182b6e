/**
 * What the PostgreSQL store does that the SQLite one does not (the behaviour they share is in
 * test/store.test.ts and test/memory-store-contract.test.ts): migrations shared by brokers starting at once,
 * fencing numbers on leases, the read cache kept current by LISTEN/NOTIFY (a cached GetToken sends nothing
 * to the server), the listening connection's loss and return, API keys seen across brokers, and URLs whose
 * password shows nowhere. A real PostgreSQL 15 of the test's own; the network between store and server is a
 * TCP forwarder that counts bytes and can cut connections.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { setTimeout as delay } from "node:timers/promises";
import pg from "pg";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { ManualClock } from "../src/clock.js";
import { openStore } from "../src/store/open-store.js";
import { postgresMigrations } from "../src/store/postgres-migrations.js";
import { StoreUnavailableError, type StoreChange, type StoreOptions } from "../src/store/store.js";
import { LeaseLostError } from "../src/store/token-set-store.js";
import type { NewTokenSet } from "../src/token-set.js";
import { missingPostgres, type PostgresServer } from "./helpers/postgres-server.js";
import { until } from "./helpers/serve-process.js";
import { usePostgres } from "./helpers/store-backends.js";
import { startTcpProxy, type TcpProxy } from "./helpers/tcp-proxy.js";

const skip = missingPostgres();
const postgres = usePostgres();

function tokenSet(now = Date.now()): NewTokenSet {
  return {
    accessToken: `at-${randomBytes(12).toString("hex")}`,
    refreshToken: `rt-${randomBytes(12).toString("hex")}`,
    idToken: undefined,
    tokenType: "Bearer",
    scopes: ["offline_access"],
    expiresAt: now + 30 * 60_000,
    obtainedAt: now,
    refreshTokenIssuedAt: now,
  };
}

const tenant = (tenantId: string) => ({
  tenantId,
  xeroConnectionId: undefined,
  tenantName: undefined,
  tenantType: undefined,
  authEventId: undefined,
});

/** Runs `sql` on the database at `url` on a connection of the test's own. */
async function query<R extends pg.QueryResultRow>(url: string, sql: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(sql, values)).rows;
  } finally {
    await client.end();
  }
}

describe.skipIf(skip)("the PostgreSQL store", () => {
  let server: PostgresServer;
  let url: string;
  const cleanups: Array<() => Promise<void> | void> = [];
  const open = async (location = url, clock?: ManualClock, options: StoreOptions = {}) => {
    const store = await openStore(location, { ...options, ...(clock ? { clock } : {}) });
    cleanups.push(() => store.close());
    return store;
  };
  /** A URL of the same database through a new TCP forwarder. */
  const throughProxy = async (): Promise<{ proxy: TcpProxy; url: string }> => {
    const proxy = await startTcpProxy(server.port);
    cleanups.push(() => proxy.close());
    return { proxy, url: url.replace(`:${server.port}/`, `:${proxy.port}/`) };
  };

  beforeAll(async () => {
    server = await postgres();
  });
  afterEach(async () => {
    url = "";
    for (const c of cleanups.splice(0).reverse()) await c();
  });
  const fresh = async () => (url = await server.createDatabase());

  it("migrates a new database once, also when five brokers open it at once, and refuses a schema newer than the code", async () => {
    await fresh();
    const stores = await Promise.all(Array.from({ length: 5 }, () => open()));
    await Promise.all(stores.map((s) => s.ping()));
    const applied = await query<{ version: number }>(url, "SELECT version FROM tokenbroker_migrations ORDER BY version");
    expect(applied.map((r) => r.version)).toEqual(postgresMigrations.map((_, i) => i + 1));

    await query(url, "INSERT INTO tokenbroker_migrations (version, applied_at) VALUES ($1, 0)", [postgresMigrations.length + 1]);
    await expect(open()).rejects.toThrow(/schema version \d+ is newer than this tokenbroker supports.*upgrade tokenbroker/);
  });

  it("every lease taken gets a larger fencing number (its holder's renewals keep it); a fenced-out holder's commit is refused and changes nothing", async () => {
    await fresh();
    const clock = new ManualClock(Date.UTC(2026, 0, 1));
    const [a, b] = [await open(url, clock), await open(url, clock)];
    const { connectionId } = await a.connections.saveConnection({ xeroUserId: "u", tokenSet: tokenSet(clock.now()), tenants: [] });
    const fence = async () => Number((await query<{ fence: string }>(url, "SELECT fence FROM refresh_leases"))[0]?.fence);

    expect(await a.tokens.tryAcquireLease(connectionId, "host-1", 30_000)).toEqual({ acquired: true });
    const first = (await fence())!;
    expect(await a.tokens.tryAcquireLease(connectionId, "host-1", 30_000)).toEqual({ acquired: true });
    expect(await fence()).toBe(first);

    // host-1 stalls past its lease; host-2 takes it over.
    clock.advance(30_000);
    expect(await b.tokens.tryAcquireLease(connectionId, "host-2", 30_000)).toEqual({ acquired: true });
    const second = (await fence())!;
    expect(second).toBeGreaterThan(first);
    await expect(a.tokens.commitRefresh(connectionId, "host-1", 1, tokenSet(clock.now()))).rejects.toBeInstanceOf(LeaseLostError);
    expect((await b.tokens.getToken(connectionId))?.version).toBe(1);
    expect((await b.tokens.commitRefresh(connectionId, "host-2", 1, tokenSet(clock.now()))).version).toBe(2);

    // The same holder name on two stores (a restarted process that kept its name): the fence tells them apart.
    expect(await a.tokens.tryAcquireLease(connectionId, "same-name", 30_000)).toEqual({ acquired: true });
    const third = (await fence())!;
    clock.advance(30_000);
    await b.tokens.releaseLease(connectionId, "same-name");
    expect(await b.tokens.tryAcquireLease(connectionId, "same-name", 30_000)).toEqual({ acquired: true });
    expect(await fence()).toBeGreaterThan(third);
    await expect(a.tokens.commitRefresh(connectionId, "same-name", 2, tokenSet(clock.now()))).rejects.toBeInstanceOf(LeaseLostError);
    expect((await b.tokens.commitRefresh(connectionId, "same-name", 2, tokenSet(clock.now()))).version).toBe(3);
  });

  it("a cached GetToken sends nothing to the server; another broker's commit reaches the cache and the subscribers as (connection id, version), never a token", async () => {
    await fresh();
    const { proxy, url: proxied } = await throughProxy();
    const a = await open(proxied);
    const b = await open();
    const tenantId = randomUUID();
    const heard: StoreChange[] = [];
    cleanups.push(a.changes!.subscribe((c) => heard.push(c)));
    const { connectionId } = await b.connections.saveConnection({ xeroUserId: "u", tokenSet: tokenSet(), tenants: [tenant(tenantId)] });
    await until(() => heard.length > 0, 5000, "a to hear of the new connection");
    const payloads: string[] = [];
    const spy = new pg.Client({ connectionString: url });
    await spy.connect();
    cleanups.push(() => spy.end());
    spy.on("notification", (n) => payloads.push(n.payload ?? ""));
    await spy.query("LISTEN tokenbroker_changes");

    expect(await a.connections.findConnectionByTenant(tenantId)).toBe(connectionId);
    const v1 = await a.tokens.getToken(connectionId);
    const sent = proxy.bytesUp;
    for (let i = 0; i < 1000; i++) {
      expect(await a.connections.findConnectionByTenant(tenantId)).toBe(connectionId);
      expect(await a.tokens.getToken(connectionId)).toBe(v1);
    }
    expect(proxy.bytesUp - sent).toBe(0);

    const next = tokenSet();
    await b.tokens.tryAcquireLease(connectionId, "host-b", 30_000);
    await b.tokens.commitRefresh(connectionId, "host-b", 1, next);
    const committed = performance.now();
    await until(() => heard.some((c) => "connectionId" in c && c.version === 2), 2000, "a to hear b's commit");
    const heardAfterMs = performance.now() - committed;
    expect((await a.tokens.getToken(connectionId))?.accessToken).toBe(next.accessToken);
    expect(heard).toContainEqual({ connectionId, version: 2 });
    await until(() => payloads.length > 0, 2000, "the spy to hear it");
    expect(payloads).toContain(`t:2:${connectionId}`);
    for (const p of payloads) {
      expect(p).not.toContain(next.accessToken);
      expect(p).not.toContain(next.refreshToken);
    }
    console.info(`another broker's commit heard after ${heardAfterMs.toFixed(1)} ms`);
  });

  it("when its connections drop, it serves what it remembered while the server cannot be reached, and reads everything again once back", async () => {
    await fresh();
    const { proxy, url: proxied } = await throughProxy();
    const a = await open(proxied);
    const b = await open();
    // Listening before b commits: a notification that arrives before the subscription would be missed.
    const heard: StoreChange[] = [];
    cleanups.push(a.changes!.subscribe((c) => heard.push(c)));
    const { connectionId } = await b.connections.saveConnection({ xeroUserId: "u", tokenSet: tokenSet(), tenants: [tenant("t-1")] });
    await until(() => heard.length > 0, 5000, "a to hear of the new connection"); // after which a remembers what it reads
    const v1 = (await a.tokens.getToken(connectionId))!;
    expect(await a.connections.findConnectionByTenant("t-1")).toBe(connectionId);

    proxy.cut({ refuse: true });
    const next = tokenSet();
    await b.tokens.tryAcquireLease(connectionId, "host-b", 30_000);
    await b.tokens.commitRefresh(connectionId, "host-b", 1, next);
    // a cannot hear it, nor reach the server: it still serves the token it had (valid for 30 minutes).
    await expect(a.ping()).rejects.toBeInstanceOf(StoreUnavailableError);
    // No refresh without the database's lease: taking one fails as UNAVAILABLE would tell a caller.
    await expect(a.tokens.tryAcquireLease(connectionId, "host-a", 30_000)).rejects.toBeInstanceOf(StoreUnavailableError);
    expect((await a.tokens.getToken(connectionId))?.accessToken).toBe(v1.accessToken);
    expect(await a.connections.findConnectionByTenant("t-1")).toBe(connectionId);

    proxy.restore();
    await until(() => heard.some((c) => "everything" in c), 10_000, "a to listen again");
    expect((await a.tokens.getToken(connectionId))?.accessToken).toBe(next.accessToken);
    await a.ping();
  });

  it("a server gone silent (no reset) is noticed by its check of the listening connection: cached tokens still served, everything read again once back", async () => {
    await fresh();
    const { proxy, url: proxied } = await throughProxy();
    const a = await open(proxied, undefined, { connectTimeoutMs: 300, queryTimeoutMs: 300 });
    const b = await open();
    const heard: StoreChange[] = [];
    cleanups.push(a.changes!.subscribe((c) => heard.push(c)));
    const { connectionId } = await b.connections.saveConnection({ xeroUserId: "u", tokenSet: tokenSet(), tenants: [] });
    await until(() => heard.length > 0, 5000, "a to hear of the new connection");
    const v1 = (await a.tokens.getToken(connectionId))!;

    proxy.freeze();
    const next = tokenSet();
    await b.tokens.tryAcquireLease(connectionId, "host-b", 30_000);
    await b.tokens.commitRefresh(connectionId, "host-b", 1, next);
    await delay(1000); // two checks unanswered: the listening connection counts as lost
    const started = performance.now();
    expect((await a.tokens.getToken(connectionId))?.accessToken).toBe(v1.accessToken); // what it had
    // It no longer trusted its cache: it asked the server and waited for the query timeout first.
    expect(performance.now() - started).toBeGreaterThanOrEqual(250);
    heard.length = 0;
    proxy.thaw();
    await until(() => heard.some((c) => "everything" in c), 10_000, "a to listen again");
    expect((await a.tokens.getToken(connectionId))?.accessToken).toBe(next.accessToken);
  });

  it("an API key created or revoked through one broker is active, or not, on another at once", async () => {
    await fresh();
    const [a, b] = [await open(), await open()];
    const keyHash = randomBytes(32).toString("hex");
    expect(a.apiKeys.isActive(keyHash)).toBe(false);
    await b.apiKeys.create({ name: "channel-1", keyHash, tenants: "*", role: "client", createdAt: Date.now() });
    expect(b.apiKeys.isActive(keyHash)).toBe(true);
    await until(() => a.apiKeys.isActive(keyHash), 2000, "a to see the new key");
    expect(await b.apiKeys.revoke("channel-1", Date.now())).toBe(true);
    expect(b.apiKeys.isActive(keyHash)).toBe(false);
    await until(() => !a.apiKeys.isActive(keyHash), 2000, "a to see the revocation");
    expect(await a.apiKeys.findActive(keyHash)).toBeUndefined();
  });

  it("a consent's state is taken once by 40 requests racing on two brokers", async () => {
    await fresh();
    const [a, b] = [await open(), await open()];
    const now = Date.now();
    await a.consents.createAuthorization({
      state: "s-1",
      codeVerifier: "v",
      browserHash: "browser",
      createdAt: now,
      expiresAt: now + 60_000,
    });
    const takes = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 ? a : b).consents.takeAuthorization("s-1", now, "browser")),
    );
    expect(takes.filter((t) => t.ok)).toHaveLength(1);
    expect(takes.filter((t) => !t.ok && t.reason === "used")).toHaveLength(39);
    expect(await a.consents.takeAuthorization("s-\u0000", now, "browser")).toEqual({ ok: false, reason: "unknown" });
  });

  it("a password in the URL shows in no error, and backup says to use pg_dump", async () => {
    await fresh();
    const password = `pw-${randomBytes(8).toString("hex")}`;
    const failures = await Promise.all([
      openStore(server.url("no_such_database", password)).catch((e: unknown) => e),
      openStore(`postgres://postgres:${password}@127.0.0.1:1/tokenbroker`, { connectTimeoutMs: 2000 }).catch((e: unknown) => e),
    ]);
    for (const e of failures) {
      expect(e).toBeInstanceOf(Error);
      expect(`${(e as Error).message}\n${(e as Error).stack}`).not.toContain(password);
    }
    const store = await open(url.replace("postgres@", `postgres:${password}@`));
    const backup = await store.backup("/tmp/never-written").catch((e: unknown) => e as Error);
    expect(backup).toBeInstanceOf(Error);
    expect((backup as Error).message).toMatch(/PostgreSQL database.*pg_dump/);
    expect((backup as Error).message).not.toContain(password);
  });

  it("everything stored is read back as stored: audit entries, key lists, tenants, token sets sealed at rest", async () => {
    await fresh();
    const { createTokenCipher } = await import("../src/crypto/token-cipher.js");
    const cipher = createTokenCipher([randomBytes(32)]);
    const store = await openStore(url, { encryption: cipher });
    cleanups.push(() => store.close());
    const ts = tokenSet();
    const { connectionId } = await store.connections.saveConnection({
      xeroUserId: "u",
      tokenSet: ts,
      tenants: [tenant("t-1"), tenant("t-\u0000")].slice(0, 1),
    });
    const [row] = await query<{ access_token: string; refresh_token: string; key_id: string }>(
      url,
      "SELECT access_token, refresh_token, key_id FROM token_sets",
    );
    expect(row!.access_token.startsWith("tbx1:")).toBe(true);
    expect(row!.refresh_token).not.toContain(ts.refreshToken);
    expect(row!.key_id).toBe(cipher.keyId);
    expect(await store.tokens.keyIds()).toEqual([cipher.keyId]);
    expect(await store.tokens.unsealed()).toEqual([]);
    expect((await store.tokens.getToken(connectionId))?.refreshToken).toBe(ts.refreshToken);

    await store.auditLog.write([
      { at: 1000, actor: "cli:root", action: "keys_create", outcome: "ok", detail: "scope *" },
      { at: 2000, actor: undefined, action: "get_token", tenantId: "t-\u0000", outcome: "permission_denied" },
    ]);
    expect(await store.auditLog.read({ since: 0 })).toEqual([
      {
        at: 1000,
        actor: "cli:root",
        action: "keys_create",
        tenantId: undefined,
        connectionId: undefined,
        outcome: "ok",
        detail: "scope *",
      },
      {
        at: 2000,
        actor: undefined,
        action: "get_token",
        tenantId: "t-\ufffd",
        connectionId: undefined,
        outcome: "permission_denied",
        detail: undefined,
      },
    ]);
  });
});
