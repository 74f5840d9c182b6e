/**
 * `tokenbroker migrate --from <file> --to postgres://…` on a real SQLite file a broker served and a real
 * PostgreSQL: everything is copied (token sets sealed, as stored), a broker on PostgreSQL with the same key
 * serves the same token under the same API key; it refuses while a broker serves the source or is connected
 * to the destination, and a destination that holds data unless --force; the URL's password shows nowhere.
 */
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { startFakeXero, type FakeXero } from "@tokenbroker/fake-xero";
import pg from "pg";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseEncryptionKey } from "../src/crypto/encryption-keys.js";
import { createTokenCipher } from "../src/crypto/token-cipher.js";
import { openStore } from "../src/store/open-store.js";
import { tempDir } from "./helpers/broker-fixture.js";
import { clientOf, oneLine } from "./helpers/cli-sandbox.js";
import { missingPostgres, type PostgresServer, withPassword } from "./helpers/postgres-server.js";
import { withRawDatabase } from "./helpers/raw-database.js";
import { fakeEnv, killAllServe, runCli, startServe } from "./helpers/serve-process.js";
import { usePostgres } from "./helpers/store-backends.js";

const skip = missingPostgres();
const postgres = usePostgres();

let fake: FakeXero | undefined;
let dir: ReturnType<typeof tempDir> | undefined;
afterEach(async () => {
  await killAllServe();
  await fake?.close();
  dir?.cleanup();
});

/** Each copied table and the key both databases order its rows by. */
const TABLES: Record<string, string> = {
  connections: "id",
  tenants: "connection_id, tenant_id",
  token_sets: "connection_id",
  oauth_states: "state",
  api_keys: "key_hash",
  audit_log: "id",
};

type Rows = Record<string, Array<Record<string, unknown>>>;

function sqliteRows(file: string): Rows {
  return withRawDatabase(file, (db) =>
    Object.fromEntries(Object.entries(TABLES).map(([t, key]) => [t, db.prepare(`SELECT * FROM ${t} ORDER BY ${key}`).all()])),
  ) as Rows;
}

/** The tables as PostgreSQL holds them, read with the test's own connection (64-bit integers as numbers, as SQLite gives them). */
async function postgresRows(url: string): Promise<Rows> {
  const client = new pg.Client({
    connectionString: url,
    types: { getTypeParser: ((oid: number, format: "text") => (oid === 20 ? Number : pg.types.getTypeParser(oid, format))) as never },
  });
  await client.connect();
  try {
    const out: Rows = {};
    for (const [t, key] of Object.entries(TABLES)) out[t] = (await client.query(`SELECT * FROM ${t} ORDER BY ${key}`)).rows;
    return out;
  } finally {
    await client.end();
  }
}

async function tableExists(url: string, table: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(`SELECT to_regclass($1) AS t`, [table])).rows[0].t !== null;
  } finally {
    await client.end();
  }
}

/** Waits until no session named `tokenbroker` (a broker's) is connected to the database at `url`. */
async function untilNoBrokerSessions(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    for (let i = 0; i < 100; i++) {
      const { rows } = await client.query(
        `SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'tokenbroker'`,
      );
      if (rows[0].n === 0) return;
      await delay(50);
    }
    throw new Error("a broker's sessions are still connected after 5 s");
  } finally {
    await client.end();
  }
}

describe.skipIf(skip)("tokenbroker migrate", () => {
  let server: PostgresServer;
  beforeAll(async () => {
    server = await postgres();
  });

  it("copies a served SQLite store into PostgreSQL, where a broker with the same key serves the same token to the same API key", async () => {
    fake = await startFakeXero();
    const f = fake;
    dir = tempDir();
    const { url: to, password } = withPassword(await server.createDatabase());
    const from = join(dir.path, "tokenbroker.db");
    const outputs: string[] = [];
    const cli = async (args: string[], input = "") => {
      const r = await runCli(args, fakeEnv(f), input);
      outputs.push(r.stdout, r.stderr);
      return r;
    };
    const keyFile = join(dir.path, "key");
    writeFileSync(keyFile, (await cli(["keygen"])).stdout, { mode: 0o600 });
    const cipher = createTokenCipher([parseEncryptionKey(readFileSync(keyFile, "utf8").trim(), "key")]);
    const secure = ["--encryption-key-file", keyFile];

    // A SQLite store as a broker leaves it: a connection with two tenants, a sealed token set, API keys, audit rows.
    const grant = f.addGrant({ tenants: [{ tenantName: "Org A" }, { tenantName: "Org B" }] });
    expect((await cli(["import", "--db", from, ...secure], `${grant.refreshToken}\n`)).code).toBe(0);
    const created = await cli(["keys", "create", "--db", from, "--name", "channel-1", "--tenants", "*"]);
    expect(created.code, created.stderr).toBe(0);
    const apiKey = created.stdout.trim();
    expect((await cli(["keys", "create", "--db", from, "--name", "admin", "--tenants", "*", "--admin"])).code).toBe(0);
    const request = { selector: { case: "tenantId" as const, value: grant.tenants[0]!.tenantId } };
    const auth = { headers: { authorization: `Bearer ${apiKey}` } };
    const onSqlite = await startServe({ env: fakeEnv(f), db: from, secure: true, args: secure });
    const before = (await clientOf(onSqlite.url).getToken(request, auth)).token!;

    // Refused while the broker serves the file: nothing reaches PostgreSQL.
    const busy = await cli(["migrate", "--from", from, "--to", to]);
    expect(busy.code, busy.stderr).toBe(2);
    expect(oneLine(busy.stderr)).toMatch(/tokenbroker\.db is open in another process .*stop every broker that uses it/);
    expect(await tableExists(to, "connections")).toBe(false);
    await onSqlite.kill("SIGTERM");
    outputs.push(onSqlite.stderr());

    // A consent under way.
    const store = await openStore(from, { encryption: cipher });
    const state = randomBytes(16).toString("base64url");
    try {
      const now = Date.now();
      await store.consents.createAuthorization({
        state,
        codeVerifier: randomBytes(32).toString("base64url"),
        browserHash: "0".repeat(64),
        createdAt: now,
        expiresAt: now + 600_000,
      });
    } finally {
      await store.close();
    }
    const source = sqliteRows(from);
    expect(source["audit_log"]!.map((r) => r["action"])).toEqual(expect.arrayContaining(["keys_create", "get_token"]));
    expect(source["token_sets"]![0]!["refresh_token"]).toMatch(/^tbx1:/);

    const migrated = await cli(["migrate", "--from", from, "--to", to]);
    expect(migrated.code, migrated.stderr).toBe(0);
    expect(migrated.stdout).toContain(`copied ${from} into postgres://postgres:***@127.0.0.1:${server.port}/`);
    for (const [t, rows] of Object.entries(source)) expect(migrated.stdout).toMatch(new RegExp(`^ {2}${t} +${rows.length}$`, "m"));
    expect(migrated.stdout).toMatch(/^ {2}refresh_leases +0$/m);
    expect(source["tenants"]).toHaveLength(2);
    expect(source["oauth_states"]).toHaveLength(1);

    // Row for row, value for value: the sealed columns as stored (key_id, generated on both sides, agrees).
    const copied = await postgresRows(to);
    const { audit_log: audit, ...rest } = copied;
    const { audit_log: sourceAudit, ...sourceRest } = source;
    expect(rest).toEqual(sourceRest);
    expect(audit!.slice(0, sourceAudit!.length)).toEqual(sourceAudit);
    expect(audit!.slice(sourceAudit!.length).map((r) => r["action"])).toEqual(["migrate"]);

    // A broker on PostgreSQL with the same key: the same token, the same version, the same API key; no refresh.
    const refreshes = f.refreshes;
    const onPostgres = await startServe({ env: fakeEnv(f), db: to, secure: true, args: secure });
    const after = (await clientOf(onPostgres.url).getToken(request, auth)).token!;
    expect(after.accessToken).toBe(before.accessToken);
    expect(after.version).toBe(before.version);
    expect(f.refreshes).toBe(refreshes);
    const pgStore = await openStore(to, { encryption: cipher });
    try {
      expect((await pgStore.consents.getAuthorization(state, Date.now()))?.status).toBe("pending");
    } finally {
      await pgStore.close();
    }

    // Refused while a broker is connected to the destination, even with --force.
    const inUse = await cli(["migrate", "--from", from, "--to", to, "--force"]);
    expect(inUse.code, inUse.stderr).toBe(2);
    expect(oneLine(inUse.stderr)).toMatch(/is in use by a broker or command .*stop them/);
    await onPostgres.kill("SIGTERM");
    outputs.push(onPostgres.stderr());
    await untilNoBrokerSessions(to); // its sessions end in the server a moment after the process

    // A destination that holds data: refused, and unchanged; --force replaces it, not adds to it.
    const held = await postgresRows(to);
    const again = await cli(["migrate", "--from", from, "--to", to]);
    expect(again.code, again.stderr).toBe(2);
    expect(oneLine(again.stderr)).toMatch(/already holds data \(connections 1, .*\): .*add --force/);
    expect(await postgresRows(to)).toEqual(held);
    const forced = await cli(["migrate", "--from", from, "--to", to, "--force"]);
    expect(forced.code, forced.stderr).toBe(0);
    expect(forced.stdout).toMatch(/^replaced the \d+ rows the destination held \(--force\)$/m);
    const replaced = await postgresRows(to);
    expect(replaced["token_sets"]).toEqual(source["token_sets"]);
    expect(replaced["audit_log"]).toHaveLength(sourceAudit!.length + 1);

    // A destination that cannot be opened: one line, no password.
    const nowhere = await cli(["migrate", "--from", from, "--to", server.url("no_such_database", password)]);
    expect(nowhere.code).toBe(2);
    expect(oneLine(nowhere.stderr)).toMatch(/nothing was copied: .*no_such_database/);

    for (const out of outputs) expect(out).not.toContain(password);
  });
});
