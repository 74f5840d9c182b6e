/**
 * Every command works with `--db postgres://…` as with a SQLite file: serve, import, connect, connections,
 * tenants, disconnect, revoke, keys, audit and rotate-key; backup says to use pg_dump. The URL carries a
 * password (the test server trusts loopback, so any is accepted): it shows in no output of any command.
 */
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { startFakeXero, type FakeXero } from "@tokenbroker/fake-xero";
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import { parseEncryptionKey } from "../src/crypto/encryption-keys.js";
import { createTokenCipher } from "../src/crypto/token-cipher.js";
import { openStore } from "../src/store/open-store.js";
import { tempDir } from "./helpers/broker-fixture.js";
import { clientOf } from "./helpers/cli-sandbox.js";
import { consentAtXero, hop, openInBrowser } from "./helpers/consent-driver.js";
import { missingPostgres, type PostgresServer, withPassword } from "./helpers/postgres-server.js";
import { CLI, fakeEnv, freePort, killAllServe, runCli, startServe, until } from "./helpers/serve-process.js";
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

describe.skipIf(skip)("the CLI on PostgreSQL", () => {
  let server: PostgresServer;
  beforeAll(async () => {
    server = await postgres();
  });

  it("every command works with --db postgres://…, and no output shows the URL's password", async () => {
    fake = await startFakeXero();
    const f = fake;
    dir = tempDir();
    const { url: db, password } = withPassword(await server.createDatabase());
    const outputs: string[] = [];
    const cli = async (args: string[], input = "", extra: Record<string, string> = {}) => {
      const r = await runCli(args, fakeEnv(f, extra), input);
      outputs.push(r.stdout, r.stderr);
      return r;
    };
    const keyFile = join(dir.path, "key");
    const keygen = await cli(["keygen"]);
    writeFileSync(keyFile, keygen.stdout, { mode: 0o600 });
    const withKey = (file: string) => ["--db", db, "--encryption-key-file", file];

    // import
    const alice = f.addGrant({ tenants: [{ tenantName: "Org A" }, { tenantName: "Org B" }] });
    const imported = await cli(["import", ...withKey(keyFile)], `${alice.refreshToken}\n`);
    expect(imported.code, imported.stderr).toBe(0);
    const aliceId = /^connection (\S+) \(new\)$/m.exec(imported.stdout)![1]!;

    // connect (the command's own listener on the redirect URI)
    const redirect = `http://127.0.0.1:${await freePort()}/oauth/callback`;
    const child = spawn(process.execPath, [CLI, "connect", ...withKey(keyFile)], {
      env: fakeEnv(f, { TOKENBROKER_REDIRECT_URI: redirect }),
    });
    let connectOut = "";
    let connectErr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (connectOut += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (connectErr += s));
    const connectExit = new Promise<number | null>((resolve) => child.on("close", resolve));
    await until(() => /^ {2}http\S+$/m.test(connectOut), 10_000, "connect to print its URL", 25);
    const opened = await openInBrowser(new URL(/^ {2}(http\S+)$/m.exec(connectOut)![1]!));
    const org = f.organisations[2]!;
    const callback = await consentAtXero(opened.url, { user: "carol@example.com", tenantIds: [org.tenantId] });
    const back = await hop(callback, { cookie: opened.cookie });
    expect(back.status, back.body).toBe(303);
    await hop(new URL(back.location!, redirect));
    expect(await connectExit, connectErr).toBe(0);
    outputs.push(connectOut, connectErr);
    expect(connectOut).toContain(`  tenant ${org.tenantId}`);

    // connections, tenants
    const connections = await cli(["connections", "--db", db, "--json"]);
    expect(connections.code, connections.stderr).toBe(0);
    const listed = JSON.parse(connections.stdout) as Array<{ connectionId: string; xeroUserId: string }>;
    expect(listed).toHaveLength(2);
    expect(listed.map((c) => c.connectionId)).toContain(aliceId);
    const tenants = await cli(["tenants", "--db", db]);
    expect(tenants.code, tenants.stderr).toBe(0);
    for (const t of [...alice.tenants, org]) expect(tenants.stdout).toContain(t.tenantId);

    // keys, then serve with API keys and sealed tokens
    const created = await cli(["keys", "create", "--db", db, "--name", "channel-1", "--tenants", "*"]);
    expect(created.code, created.stderr).toBe(0);
    const apiKey = created.stdout.trim();
    const serve = await startServe({ env: fakeEnv(f), db, secure: true, args: ["--encryption-key-file", keyFile] });
    const served = await clientOf(serve.url).getToken(
      { selector: { case: "tenantId", value: alice.tenants[0]!.tenantId } },
      { headers: { authorization: `Bearer ${apiKey}` } },
    );
    const cipher = createTokenCipher([parseEncryptionKey(readFileSync(keyFile, "utf8").trim(), "key")]);
    const store = await openStore(db, { encryption: cipher });
    try {
      expect(served.token?.accessToken).toBe((await store.tokens.getToken(aliceId))?.accessToken);
    } finally {
      await store.close();
    }
    const keysList = await cli(["keys", "list", "--db", db]);
    expect(keysList.code, keysList.stderr).toBe(0);
    expect(keysList.stdout).toContain("channel-1");

    // audit (serve writes its entries every second)
    let audit = await cli(["audit", "--db", db, "--json"]);
    for (let i = 0; i < 40 && !audit.stdout.includes("get_token"); i++) {
      await delay(100);
      audit = await cli(["audit", "--db", db, "--json"]);
    }
    expect(audit.code, audit.stderr).toBe(0);
    expect(audit.stdout).toContain("keys_create");
    expect(audit.stdout).toContain("get_token");

    // disconnect one tenant, revoke a grant
    const disconnected = await cli(["disconnect", ...withKey(keyFile), alice.tenants[1]!.tenantId]);
    expect(disconnected.code, disconnected.stderr).toBe(0);
    const carolId = listed.find((c) => c.xeroUserId === "carol@example.com")!.connectionId;
    const revoked = await cli(["revoke", ...withKey(keyFile), carolId]);
    expect(revoked.code, revoked.stderr).toBe(0);
    const left = await cli(["tenants", "--db", db]);
    expect(left.stdout).toContain(alice.tenants[0]!.tenantId);
    expect(left.stdout).not.toContain(alice.tenants[1]!.tenantId);
    expect(left.stdout).not.toContain(org.tenantId);

    // rotate-key while serve runs
    const newKeyFile = join(dir.path, "new-key");
    writeFileSync(newKeyFile, (await cli(["keygen"])).stdout, { mode: 0o600 });
    const rotated = await cli(["rotate-key", ...withKey(keyFile), "--new-key-file", newKeyFile]);
    expect(rotated.code, rotated.stderr).toBe(0);
    const newCipher = createTokenCipher([parseEncryptionKey(readFileSync(newKeyFile, "utf8").trim(), "key")]);
    const rotatedStore = await openStore(db, { encryption: newCipher });
    try {
      expect(await rotatedStore.tokens.keyIds()).toEqual([newCipher.keyId]);
      expect((await rotatedStore.tokens.getToken(aliceId))?.accessToken).toBe(served.token?.accessToken);
    } finally {
      await rotatedStore.close();
    }

    // keys revoke; backup says what to use instead
    const keyRevoked = await cli(["keys", "revoke", "--db", db, "channel-1"]);
    expect(keyRevoked.code, keyRevoked.stderr).toBe(0);
    const backup = await cli(["backup", "--db", db, join(dir.path, "copy.db")]);
    expect(backup.code).toBe(2);
    expect(backup.stderr).toMatch(/PostgreSQL database.*pg_dump/);
    expect(backup.stderr).toContain("***");

    // A database that cannot be reached: one line, without the password.
    const unreachable = await cli(["connections", "--db", `postgres://postgres:${password}@127.0.0.1:1/tokenbroker`]);
    expect(unreachable.code).toBe(2);
    expect(unreachable.stderr.trim().split("\n")).toHaveLength(1);
    expect(unreachable.stderr).toMatch(/cannot open database postgres:\/\/postgres:\*\*\*@127\.0\.0\.1:1\/tokenbroker/);

    await serve.kill("SIGTERM");
    outputs.push(serve.stderr());
    for (const out of outputs) expect(out).not.toContain(password);
  });
});
