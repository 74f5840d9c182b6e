/**
 * `migrateStore` (what `tokenbroker migrate` runs) on a real SQLite file and a real PostgreSQL: one
 * transaction on the destination (a copy that fails leaves nothing, and runs again from the start), pages of
 * rows that span several INSERTs, the audit log's ids kept and its sequence moved past them, schemas that do
 * not line up refused, and the source held exclusively. The whole command: test/migrate-cli.test.ts.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { migrateStore, MigrationRefusedError } from "../src/store/migrate-store.js";
import { openStore } from "../src/store/open-store.js";
import { tempDir } from "./helpers/broker-fixture.js";
import { missingPostgres, type PostgresServer } from "./helpers/postgres-server.js";
import { openRawDatabase, withRawDatabase } from "./helpers/raw-database.js";
import { usePostgres } from "./helpers/store-backends.js";
import { tokenSetAt } from "./helpers/token-sets.js";

const skip = missingPostgres();
const postgres = usePostgres();

async function count(url: string, table: string): Promise<number> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return Number((await client.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n);
  } finally {
    await client.end();
  }
}

async function exec(url: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

const AUDIT_ROWS = 1500; // more than one INSERT's worth (625 rows of 8 columns)

describe.skipIf(skip)("migrateStore", () => {
  let server: PostgresServer;
  let dir: ReturnType<typeof tempDir>;
  let from: string;
  beforeAll(async () => {
    server = await postgres();
  });
  beforeEach(async () => {
    dir = tempDir();
    from = join(dir.path, "tokenbroker.db");
    const store = await openStore(from);
    try {
      const now = Date.now();
      for (const user of ["a", "b", "c"]) {
        await store.connections.saveConnection({
          xeroUserId: `user-${user}`,
          tokenSet: tokenSetAt(now),
          tenants: [
            {
              tenantId: `t-${user}`,
              xeroConnectionId: `xc-${user}`,
              tenantName: `Org ${user}`,
              tenantType: "ORGANISATION",
              authEventId: "ae",
            },
          ],
        });
      }
    } finally {
      await store.close();
    }
    withRawDatabase(from, (db) => {
      const insert = db.prepare(`INSERT INTO audit_log (at, actor, action, outcome, detail) VALUES (?, 'cli:test', 'get_token', 'ok', ?)`);
      db.transaction(() => {
        for (let i = 0; i < AUDIT_ROWS; i++) insert.run(1_700_000_000_000 + i, `n=${i}`);
      })();
      db.prepare(`DELETE FROM audit_log WHERE id = 7`).run(); // a gap in the ids, kept as it is
    });
  });
  afterEach(() => dir.cleanup());

  it("copies in pages, keeps the audit log's ids and moves its sequence past them", async () => {
    const to = await server.createDatabase();
    const report = await migrateStore({ from, to });
    expect(report.tables).toEqual([
      { table: "connections", rows: 3 },
      { table: "tenants", rows: 3 },
      { table: "token_sets", rows: 3 },
      { table: "oauth_states", rows: 0 },
      { table: "api_keys", rows: 0 },
      { table: "audit_log", rows: AUDIT_ROWS - 1 },
    ]);
    expect(report).toMatchObject({ leasesLeftBehind: 0, replaced: 0 });
    const store = await openStore(to);
    try {
      await store.auditLog.write([{ at: Date.now(), actor: "cli:test", action: "after", outcome: "ok" }]);
    } finally {
      await store.close();
    }
    const client = new pg.Client({ connectionString: to });
    await client.connect();
    try {
      const { rows } = await client.query(`SELECT id::int, action FROM audit_log WHERE id IN (6, 7, 8) OR action = 'after' ORDER BY id`);
      expect(rows).toEqual([
        { id: 6, action: "get_token" },
        { id: 8, action: "get_token" },
        { id: AUDIT_ROWS + 1, action: "after" },
      ]);
    } finally {
      await client.end();
    }
  });

  it("is all or nothing: a row PostgreSQL refuses leaves the destination empty, and the copy runs again once it is fixed", async () => {
    const to = await server.createDatabase();
    // The audit log is copied last; PostgreSQL's text cannot hold a NUL character, SQLite's can.
    withRawDatabase(from, (db) => db.prepare(`UPDATE audit_log SET detail = ? WHERE id = ?`).run("bad\u0000byte", AUDIT_ROWS));
    const failed = await migrateStore({ from, to }).catch((e: unknown) => e);
    expect(failed).toBeInstanceOf(Error);
    expect(failed).not.toBeInstanceOf(MigrationRefusedError);
    for (const table of ["connections", "tenants", "token_sets", "audit_log"]) expect(await count(to, table), table).toBe(0);

    withRawDatabase(from, (db) => db.prepare(`UPDATE audit_log SET detail = 'fixed' WHERE id = ?`).run(AUDIT_ROWS));
    const report = await migrateStore({ from, to });
    expect(report.tables.find((t) => t.table === "connections")?.rows).toBe(3);
    expect(await count(to, "audit_log")).toBe(AUDIT_ROWS - 1);
  });

  it("refuses schemas whose tables or columns do not line up, and copies nothing", async () => {
    const to = await server.createDatabase();
    await (await openStore(to)).close(); // creates the tables
    await exec(to, `ALTER TABLE api_keys ADD COLUMN scope_hint text`);
    await expect(migrateStore({ from, to })).rejects.toThrow(
      /schemas do not line up: table api_keys differs: only PostgreSQL has scope_hint/,
    );
    expect(await count(to, "connections")).toBe(0);

    // A table of a later version that this copy would leave behind without a word.
    await exec(to, `ALTER TABLE api_keys DROP COLUMN scope_hint`);
    withRawDatabase(from, (db) => db.exec(`CREATE TABLE webhooks (url TEXT) STRICT`));
    await expect(migrateStore({ from, to })).rejects.toThrow(/the SQLite database has tables migrate does not know: webhooks/);
    expect(await count(to, "connections")).toBe(0);
  });

  it("refuses while another connection has the file open, a file that does not exist (without creating it) and one that is not tokenbroker's (without changing it)", async () => {
    const to = await server.createDatabase();
    const other = openRawDatabase(from);
    try {
      other.prepare(`SELECT count(*) FROM connections`).get();
      await expect(migrateStore({ from, to, busyTimeoutMs: 50 })).rejects.toThrow(MigrationRefusedError);
    } finally {
      other.close();
    }
    const missing = join(dir.path, "missing.db");
    await expect(migrateStore({ from: missing, to })).rejects.toThrow(/no SQLite database at/);
    expect(existsSync(missing)).toBe(false);
    const foreign = join(dir.path, "other-app.db");
    withRawDatabase(foreign, (db) => db.exec(`CREATE TABLE notes (body TEXT)`));
    await expect(migrateStore({ from: foreign, to })).rejects.toThrow(/other-app\.db is not a tokenbroker database/);
    withRawDatabase(foreign, (db) => expect(db.prepare(`SELECT name FROM sqlite_schema`).pluck().all()).toEqual(["notes"]));
    expect((await migrateStore({ from, to })).tables[0]).toEqual({ table: "connections", rows: 3 });
  });

  it("holds the file for the whole copy: a process that opens it meanwhile cannot read it", async () => {
    const to = await server.createDatabase();
    let blocked: unknown;
    const other = openRawDatabase(from);
    other.pragma("busy_timeout = 0");
    try {
      // Probe while the copy runs (it awaits PostgreSQL between pages, so this runs in between).
      const copying = migrateStore({ from, to });
      for (let i = 0; i < 200 && blocked === undefined; i++) {
        await new Promise((resolve) => setImmediate(resolve));
        try {
          other.prepare(`SELECT count(*) FROM audit_log`).get();
        } catch (e) {
          blocked = e;
        }
      }
      await copying;
    } finally {
      other.close();
    }
    expect((blocked as { code?: string } | undefined)?.code).toBe("SQLITE_BUSY");
  });
});
