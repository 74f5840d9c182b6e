/**
 * A refresh lease is taken over when it has lapsed, or when it was taken "in the future" (the clock went back,
 * so its expiry cannot be trusted). Whether it was taken in the future is judged by this process's clock: read
 * before the statement had to wait (for SQLite's write lock, for the pool, the network, a busy event loop),
 * a lease another broker took meanwhile looked taken in the future, and was taken over while its holder's
 * request was on its way, so both sent the same refresh token and a strict server (oidc-provider) revoked
 * the grant (the likeliest cause of one invalid_grant in test/several-hosts.test.ts under load: three
 * processes contending for a free lease both got it in 12 of 1,800 rounds). Here the other broker takes the
 * lease while this one's attempt waits, on both stores, and the attempt must find the lease held.
 */
import { fork, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, describe, expect, it } from "vitest";
import { openStore } from "../src/store/open-store.js";
import type { Store } from "../src/store/store.js";
import { tempDir } from "./helpers/broker-fixture.js";
import { missingPostgres } from "./helpers/postgres-server.js";
import { usePostgres } from "./helpers/store-backends.js";
import { startTcpProxy } from "./helpers/tcp-proxy.js";
import { tokenSetAt } from "./helpers/token-sets.js";

/** How long the other broker keeps this one waiting before it takes the lease. */
const WAIT_MS = 300;

/**
 * Another broker process on the SQLite file: takes the write lock, says "locked", and WAIT_MS later takes the
 * lease of connection argv[4] as "other-host" (what its tryAcquireLease writes) and commits.
 */
const OTHER_BROKER = `
const Database = require(process.argv[2]);
const db = new Database(process.argv[3]);
db.pragma("busy_timeout = 5000");
db.exec("BEGIN IMMEDIATE");
process.send("locked");
setTimeout(() => {
  const now = Date.now();
  db.prepare("INSERT INTO refresh_leases (connection_id, holder, acquired_at, expires_at) VALUES (?, 'other-host', ?, ?)")
    .run(process.argv[4], now, now + 30000);
  db.exec("COMMIT");
  process.send("committed");
}, ${WAIT_MS});
`;

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

it("SQLite: a lease another process takes while this one waits for the write lock is not taken over", async () => {
  const dir = tempDir();
  cleanups.push(() => dir.cleanup());
  const path = join(dir.path, "tokenbroker.db");
  const store: Store = await openStore(path);
  cleanups.push(() => store.close());
  const { connectionId } = await store.connections.saveConnection({ xeroUserId: "u", tokenSet: tokenSetAt(Date.now()), tenants: [] });

  const script = join(dir.path, "other-broker.cjs");
  writeFileSync(script, OTHER_BROKER);
  const other: ChildProcess = fork(script, [createRequire(import.meta.url).resolve("better-sqlite3"), path, connectionId], {
    stdio: "ignore",
  });
  cleanups.push(() => void other.kill("SIGKILL"));
  const committed = new Promise((resolve) => other.on("message", (m) => m === "committed" && resolve(m)));
  await new Promise((resolve) => other.on("message", (m) => m === "locked" && resolve(m)));

  const started = performance.now();
  const attempt = await store.tokens.tryAcquireLease(connectionId, "this-host", 30_000);
  expect(performance.now() - started, "the attempt waited for the other process's write lock").toBeGreaterThan(WAIT_MS / 2);
  await committed;
  expect(attempt).toMatchObject({ acquired: false, holder: "other-host" });
});

const postgres = usePostgres();
describe.skipIf(missingPostgres())("PostgreSQL", () => {
  it("a lease another broker takes while this one's statement is on its way is not taken over", async () => {
    const server = await postgres();
    const url = await server.createDatabase();
    const proxy = await startTcpProxy(server.port);
    cleanups.push(() => proxy.close());
    const other = await openStore(url);
    cleanups.push(() => other.close());
    // This broker reaches the server through a forwarder that can hold what it sends.
    const self = await openStore(url.replace(`:${server.port}/`, `:${proxy.port}/`));
    cleanups.push(() => self.close());
    const { connectionId } = await other.connections.saveConnection({ xeroUserId: "u", tokenSet: tokenSetAt(Date.now()), tenants: [] });
    await self.ping();

    proxy.hold();
    const attempt = self.tokens.tryAcquireLease(connectionId, "this-host", 30_000);
    await delay(WAIT_MS);
    expect(await other.tokens.tryAcquireLease(connectionId, "other-host", 30_000)).toEqual({ acquired: true });
    proxy.release();
    expect(await attempt).toMatchObject({ acquired: false, holder: "other-host" });
    // The holder commits its refresh: its lease was never lost.
    expect((await other.tokens.commitRefresh(connectionId, "other-host", 1, tokenSetAt(Date.now()))).version).toBe(2);
  });
});
