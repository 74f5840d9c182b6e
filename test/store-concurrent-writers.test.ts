/**
 * Another broker process writes to the same SQLite file all the time (its
 * audit log, its leases): a refresh's commit, which reads the lease and then
 * writes the token set in one transaction, must never fail because such a
 * commit landed between its read and its write (SQLITE_BUSY in WAL mode for a
 * deferred transaction). The other process here is a real child process.
 */
import { fork, type ChildProcess } from "node:child_process";
import { createRequire } from "node:module";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { openSqliteStore } from "../src/store/sqlite-store.js";
import type { Store } from "../src/store/store.js";
import { tempDir } from "./helpers/broker-fixture.js";
import { withRawDatabase } from "./helpers/raw-database.js";
import { tokenSetAt } from "./helpers/token-sets.js";

/** Commits small transactions to `path` as fast as it can (as another broker's audit log would), until killed. */
const WRITER = `
const Database = require(process.argv[2]);
const db = new Database(process.argv[3]);
db.pragma("busy_timeout = 5000");
const insert = db.prepare("INSERT INTO audit_log (at, actor, action, outcome) VALUES (?, 'other-process', 'get_token', 'ok')");
process.send("ready");
for (;;) insert.run(Date.now());
`;

let dir: ReturnType<typeof tempDir> | undefined;
let writer: ChildProcess | undefined;
let store: Store | undefined;
afterEach(async () => {
  writer?.kill("SIGKILL");
  await store?.close();
  dir?.cleanup();
});

it("500 lease-and-commit refreshes succeed while another process commits writes all the time", async () => {
  dir = tempDir();
  const path = join(dir.path, "tokenbroker.db");
  store = openSqliteStore({ path });
  const now = Date.now();
  const { connectionId } = await store.connections.saveConnection({ xeroUserId: "user-1", tokenSet: tokenSetAt(now), tenants: [] });

  const script = join(dir.path, "writer.cjs");
  writeFileSync(script, WRITER);
  writer = fork(script, [createRequire(import.meta.url).resolve("better-sqlite3"), path], { stdio: "ignore" });
  await new Promise((resolve) => writer!.once("message", resolve));

  const othersNow = () =>
    withRawDatabase(
      path,
      (db) => (db.prepare("SELECT count(*) AS n FROM audit_log WHERE actor = 'other-process'").get() as { n: number }).n,
    );
  const before = othersNow();
  let version = (await store.tokens.getToken(connectionId))!.version;
  for (let i = 0; i < 500; i++) {
    expect(await store.tokens.tryAcquireLease(connectionId, "me", 30_000)).toEqual({ acquired: true });
    const record = await store.tokens.commitRefresh(connectionId, "me", version, tokenSetAt(now));
    expect(record.version).toBe(version + 1);
    version = record.version;
  }
  expect(othersNow() - before).toBeGreaterThan(20); // the other process really was committing meanwhile
});
