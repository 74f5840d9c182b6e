import { createHash } from "node:crypto";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import Database from "better-sqlite3";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import { TokenService } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { startFakeXero, type FakeXero } from "@tokenbroker/fake-xero";
import { tempDir } from "./helpers/broker-fixture.js";
import { cliImport, fakeEnv, killAllServe, runCli, startServe } from "./helpers/serve-process.js";

let fake: FakeXero | undefined;
let dir: ReturnType<typeof tempDir> | undefined;

afterEach(async () => {
  await killAllServe();
  await fake?.close();
  fake = undefined;
  dir?.cleanup();
  dir = undefined;
});

/** What a database file holds, read the way an operator would check it. */
function inspect(path: string) {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return {
      integrity: db.pragma("integrity_check", { simple: true }) as string,
      connections: (db.prepare("SELECT count(*) AS n FROM connections").get() as { n: number }).n,
      token: db.prepare("SELECT version, access_token AS accessToken FROM token_sets").get() as { version: number; accessToken: string },
    };
  } finally {
    db.close();
  }
}

const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

describe("tokenbroker backup", () => {
  it("copies the live database while a broker process is serving and refreshing; a broker started on the copy serves its token with no upstream call", async () => {
    fake = await startFakeXero();
    dir = tempDir();
    const db = join(dir.path, "tokenbroker.db");
    const env = fakeEnv(fake);
    const grant = fake.addGrant({ tenants: [{ tenantName: "Org A" }] });
    const connectionId = await cliImport(env, db, grant.refreshToken);
    const live = await startServe({ env, db });
    const client = createClient(TokenService, createGrpcTransport({ baseUrl: live.url }));
    const selector = { case: "connectionId" as const, value: connectionId };

    // A channel that reports its token as rejected again and again: the broker refreshes and commits all along.
    const served = new Map<number, string>(); // version → access token, as handed out
    const first = (await client.getToken({ selector })).token!;
    served.set(Number(first.version), first.accessToken);
    let refreshing = true;
    const channel = (async () => {
      let current = first.accessToken;
      while (refreshing) {
        const { token } = await client.reportExpired({ selector, accessToken: current });
        served.set(Number(token!.version), token!.accessToken);
        current = token!.accessToken;
      }
    })();

    const copies: string[] = [];
    for (let i = 0; i < 3; i++) {
      const file = join(dir.path, `backup-${i}.db`);
      const r = await runCli(["backup", "--db", db, file], env);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toBe(`${file}: 1 connection\n`);
      // One complete file: no journal, no partial file left beside it.
      expect(readdirSync(dir.path).filter((name) => name.startsWith(`backup-${i}.db`))).toEqual([`backup-${i}.db`]);
      copies.push(file);
    }
    refreshing = false;
    await channel;
    const versions = [...served.keys()].sort((a, b) => a - b);
    expect(versions.length).toBeGreaterThan(3); // refreshes were committed while the copies were made
    console.info(`3 backups taken while the broker committed ${versions.length - 1} refreshes`);

    // Each copy is a whole database, and holds a token set exactly as the broker handed it out at that version.
    for (const file of copies) {
      const copy = inspect(file);
      expect(copy.integrity).toBe("ok");
      expect(copy.connections).toBe(1);
      expect(served.get(copy.token.version)).toBe(copy.token.accessToken);
    }

    // An existing file is not overwritten without --force.
    const target = copies[2]!;
    const hash = sha256(target);
    const refused = await runCli(["backup", "--db", db, target], env);
    expect(refused.code).toBe(2);
    expect(refused.stderr.trim().split("\n")).toHaveLength(1);
    expect(refused.stderr).toContain(target);
    expect(refused.stderr).toContain("--force");
    expect(sha256(target)).toBe(hash);

    // The broker stops; a last backup with --force holds its final state.
    await live.kill("SIGTERM");
    expect((await live.exited).code).toBe(0);
    const forced = await runCli(["backup", "--db", db, target, "--force"], env);
    expect(forced.code, forced.stderr).toBe(0);
    const backedUp = inspect(target).token;
    expect(backedUp.version).toBe(versions.at(-1));

    // Restore: a broker started on the backup serves the stored token, with no upstream call while it is valid.
    const calls = fake.tokenEndpointCalls;
    const restored = await startServe({ env, db: target });
    const fromBackup = createClient(TokenService, createGrpcTransport({ baseUrl: restored.url }));
    const { token } = await fromBackup.getToken({ selector: { case: "tenantId", value: grant.tenants[0]!.tenantId } });
    expect(token?.accessToken).toBe(backedUp.accessToken);
    expect(Number(token?.version)).toBe(backedUp.version);
    expect(fake.tokenEndpointCalls).toBe(calls);
    // And it can go on refreshing: the backup holds the grant's live refresh token.
    const next = await fromBackup.reportExpired({ selector, accessToken: backedUp.accessToken });
    expect(next.refreshed).toBe(true);
    expect(fake.invalidGrants).toBe(0);
  });

  it("refuses a database that does not exist, and a missing file argument, with one line and exit 2", async () => {
    dir = tempDir();
    const env = { PATH: process.env["PATH"] ?? "" };
    const missing = await runCli(["backup", "--db", join(dir.path, "nope.db"), join(dir.path, "copy.db")], env);
    expect(missing.code).toBe(2);
    expect(missing.stderr.trim().split("\n")).toHaveLength(1);
    expect(missing.stderr).toContain("no database at");
    expect(existsSync(join(dir.path, "nope.db"))).toBe(false);
    expect(existsSync(join(dir.path, "copy.db"))).toBe(false);

    const noFile = await runCli(["backup", "--db", join(dir.path, "nope.db")], env);
    expect(noFile.code).toBe(2);
    expect(noFile.stderr).toContain("tokenbroker backup <file>");
  });
});
