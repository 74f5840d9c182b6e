/**
 * The security commands and defaults of the CLI, as a user runs them:
 * `keygen`, `keys create|list|revoke`, `serve` with authentication and
 * encryption on by default, `--insecure-no-auth` only on loopback, `audit`.
 * (`rotate-key` and the TLS flags: test/rotate-key-cli.test.ts.)
 */
import { execFile, execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Code } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { clientOf, codeOf, oneLine, useCliSandbox } from "./helpers/cli-sandbox.js";
import { docSnippet, shellCommands } from "./helpers/doc-snippets.js";
import { CLI, fakeEnv, runCli, startServe } from "./helpers/serve-process.js";
import { withKey } from "./helpers/secure-broker.js";
import { opensslMissing } from "./helpers/test-certificates.js";

const sb = useCliSandbox();

describe("keygen", () => {
  it("prints a new random 32-byte key in base64 each time", async () => {
    const a = await sb.keygen(sb.keyFile);
    const b = await sb.keygen(join(sb.dir, "other.key"));
    expect(Buffer.from(a, "base64")).toHaveLength(32);
    expect(a).toMatch(/^[A-Za-z0-9+/]{43}=$/);
    expect(a).not.toBe(b);
  });
});

describe("secure by default", () => {
  it("serve and import without an encryption key stop with one line saying how to make one; the refresh token is not spent", async () => {
    const serve = await runCli(["serve", "--db", sb.db, "--listen", "127.0.0.1:0"], fakeEnv(sb.fake));
    expect(serve.code).toBe(2);
    const line = oneLine(serve.stderr);
    expect(line).toMatch(/no encryption key/);
    expect(line).toContain("tokenbroker keygen --out tokenbroker.key");
    expect(line).toContain("openssl rand -base64 32");
    expect(line).toContain("--insecure-no-encryption");

    const imp = await runCli(["import", "--db", sb.db], fakeEnv(sb.fake), `${sb.grant.refreshToken}\n`);
    expect(imp.code).toBe(2);
    expect(oneLine(imp.stderr)).toMatch(/no encryption key/);
    expect(sb.fake.tokenEndpointCalls).toBe(0);

    // A key that is not 32 bytes of base64 is named, never echoed.
    writeFileSync(sb.keyFile, "not-a-key-at-all\n");
    const bad = await runCli(["serve", "--db", sb.db, "--listen", "127.0.0.1:0", "--encryption-key-file", sb.keyFile], fakeEnv(sb.fake));
    expect(bad.code).toBe(2);
    expect(oneLine(bad.stderr)).toMatch(/line 1 of .*tokenbroker\.key .*32/);
    expect(bad.stderr).not.toContain("not-a-key-at-all");
  });

  it("--insecure-no-auth is refused off loopback, and warns at start-up on loopback", async () => {
    // A key made with `openssl rand -base64 32 > tokenbroker.key` works as well as keygen's
    // (without openssl, the same 32 random bytes in base64 and a newline, as it writes them).
    if (opensslMissing()) writeFileSync(sb.keyFile, `${randomBytes(32).toString("base64")}\n`);
    else execFileSync("/bin/sh", ["-c", `openssl rand -base64 32 > "${sb.keyFile}"`]);
    const refused = await runCli(
      ["serve", "--db", sb.db, "--listen", "0.0.0.0:0", "--insecure-no-auth", "--encryption-key-file", sb.keyFile],
      fakeEnv(sb.fake),
    );
    expect(refused.code).toBe(2);
    expect(oneLine(refused.stderr)).toMatch(/--insecure-no-auth is refused on 0\.0\.0\.0: it is allowed only on a loopback address/);

    await sb.importGrant();
    const serve = await startServe({
      env: fakeEnv(sb.fake),
      db: sb.db,
      secure: true,
      args: ["--insecure-no-auth", "--encryption-key-file", sb.keyFile],
    });
    const warning = await serve.waitForLog((l) => l["event"] === "insecure");
    expect(warning["level"]).toBe(40); // warn
    expect(String(warning["msg"])).toMatch(/authentication is OFF/);
    const { token } = await clientOf(serve.url).getToken({ selector: { case: "tenantId", value: sb.grant.tenants[0]!.tenantId } });
    expect(token?.tokenType).toBe("Bearer");
  });
});

describe("keys and audit", () => {
  it("the keys commands of docs/security.md, run as written: two keys printed once, listed without them, one revoked", async () => {
    await sb.keygen(sb.keyFile);
    await sb.importGrant();
    const [tenantA, tenantB] = sb.grant.tenants.map((t) => t.tenantId) as [string, string];
    // `tokenbroker` on PATH, as after `npm install -g`; the database from TOKENBROKER_DB.
    const bin = join(sb.dir, "bin");
    mkdirSync(bin);
    writeFileSync(join(bin, "tokenbroker"), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`);
    chmodSync(join(bin, "tokenbroker"), 0o755);
    const env = fakeEnv(sb.fake, { PATH: `${bin}:${process.env["PATH"] ?? ""}`, TOKENBROKER_DB: sb.db });
    const sh = (command: string) =>
      new Promise<{ code: number; stdout: string }>((resolve) =>
        execFile("/bin/sh", ["-c", command], { env, cwd: sb.dir, timeout: 20_000 }, (e, stdout) =>
          resolve({ code: e ? Number(e.code ?? -1) : 0, stdout }),
        ),
      );
    const commands = shellCommands(docSnippet("docs/security.md", "keys"));
    expect(commands.map((c) => c.split(" ").slice(0, 3).join(" "))).toEqual([
      "tokenbroker keys create",
      "tokenbroker keys create",
      "tokenbroker keys list",
      "tokenbroker keys revoke",
    ]);
    const [createBilling, createOps, list, revoke] = commands as [string, string, string, string];
    expect(createBilling).toContain("9a8b…,4c2d…");
    const billing = await sh(createBilling.replace("9a8b…,4c2d…", `${tenantA},${tenantB}`));
    const ops = await sh(createOps);
    for (const made of [billing, ops]) {
      expect(made.code).toBe(0);
      expect(made.stdout.trim()).toMatch(/^tbk_[A-Za-z0-9_-]{43}$/);
    }
    const listed = await sh(list);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(new RegExp(`^billing\\s+client\\s+${tenantA},${tenantB}\\s`, "m"));
    expect(listed.stdout).toMatch(/^ops\s+admin\s+\*\s/m);
    for (const made of [billing, ops]) expect(listed.stdout).not.toContain(made.stdout.trim());
    expect(await sh(revoke)).toEqual({ code: 0, stdout: "key billing revoked\n" });
    expect((await sh(list)).stdout).toMatch(/^billing\s.*\srevoked \d{4}-\d\d-\d\dT\S+$/m);
  });

  it("keys create prints the key once; serve requires it; keys list never shows it; keys revoke stops it within a second; audit shows who got what", async () => {
    await sb.keygen(sb.keyFile);
    const connectionId = await sb.importGrant();
    const [tenantA, tenantB] = sb.grant.tenants.map((t) => t.tenantId) as [string, string];
    const serve = await startServe({ env: fakeEnv(sb.fake), db: sb.db, secure: true, args: ["--encryption-key-file", sb.keyFile] });
    await serve.waitForLog((l) => l["event"] === "no_api_keys");
    const billing = await sb.createKey("billing", tenantA);
    const ops = await sb.createKey("ops", "*", true);
    const both = await sb.createKey("both", `${tenantA},${tenantB}`);
    expect(
      (await clientOf(serve.url).getToken({ selector: { case: "connectionId", value: connectionId } }, withKey(both))).token?.version,
    ).toBe(1n);

    const client = clientOf(serve.url);
    const a = { selector: { case: "tenantId" as const, value: tenantA } };
    expect(await codeOf(client.getToken(a))).toBe(Code.Unauthenticated);
    expect((await client.getToken(a, withKey(billing))).token?.connectionId).toBe(connectionId);
    expect(await codeOf(client.getToken({ selector: { case: "tenantId", value: tenantB } }, withKey(billing)))).toBe(Code.PermissionDenied);
    expect((await client.getToken(a, withKey(ops))).token?.connectionId).toBe(connectionId);

    const list = await runCli(["keys", "list", "--db", sb.db], fakeEnv(sb.fake));
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^NAME\s+ROLE\s+TENANTS\s+CREATED\s+LAST USED\s+STATUS$/m);
    expect(list.stdout).toMatch(new RegExp(`^billing\\s+client\\s+${tenantA}\\s+\\S+\\s+\\S+\\s+active$`, "m"));
    expect(list.stdout).toMatch(/^ops\s+admin\s+\*\s+/m);
    for (const key of [billing, ops]) {
      expect(list.stdout).not.toContain(key);
      expect(list.stdout).not.toContain(key.slice(4, 20));
    }
    const json = JSON.parse((await runCli(["keys", "list", "--db", sb.db, "--json"], fakeEnv(sb.fake))).stdout) as Array<{
      name: string;
      lastUsed: string;
    }>;
    expect(json.map((k) => k.name)).toEqual(["billing", "ops", "both"]);
    expect(list.stdout).toMatch(new RegExp(`^both\\s+client\\s+${tenantA},${tenantB}\\s`, "m"));
    expect(json[0]!.lastUsed).not.toBe("never");

    // Mistakes: one line, exit 2.
    const duplicate = await runCli(["keys", "create", "--db", sb.db, "--name", "billing", "--tenants", "*"], fakeEnv(sb.fake));
    expect(duplicate.code).toBe(2);
    expect(oneLine(duplicate.stderr)).toMatch(/exists already/);
    expect(duplicate.stdout).toBe("");
    const noTenants = await runCli(["keys", "create", "--db", sb.db, "--name", "x"], fakeEnv(sb.fake));
    expect(noTenants.code).toBe(2);
    expect(oneLine(noTenants.stderr)).toMatch(/--tenants is required/);

    const revoke = await runCli(["keys", "revoke", "billing", "--db", sb.db], fakeEnv(sb.fake));
    expect(revoke.code).toBe(0);
    expect(revoke.stdout).toBe("key billing revoked\n");
    const revokedAt = performance.now();
    let code: Code | "ok" = "ok";
    while (code === "ok" && performance.now() - revokedAt < 3000) code = await codeOf(client.getToken(a, withKey(billing)));
    expect(code).toBe(Code.Unauthenticated);
    expect(performance.now() - revokedAt).toBeLessThan(1000);
    const again = await runCli(["keys", "revoke", "billing", "--db", sb.db], fakeEnv(sb.fake));
    expect(again.code).toBe(2);

    await serve.kill("SIGTERM"); // writes the last audit entries
    const audit = await runCli(["audit", "--db", sb.db, "--since", "1h"], fakeEnv(sb.fake));
    expect(audit.code).toBe(0);
    const lines = audit.stdout.trim().split("\n");
    expect(lines.some((l) => /^\S+Z\s+billing\s+get_token\s+ok\s+tenant=\S+ connection=/.test(l) && l.includes(tenantA))).toBe(true);
    expect(lines.some((l) => /\sbilling\s+get_token\s+permission_denied\s+tenant=/.test(l) && l.includes(tenantB))).toBe(true);
    expect(lines.some((l) => /\scli:\S*\s+keys_create\s+ok\s+key=ops tenants=\* role=admin$/.test(l))).toBe(true);
    expect(lines.some((l) => /\scli:\S*\s+keys_revoke\s+ok\s+key=billing$/.test(l))).toBe(true);
    for (const secret of [billing, ops]) expect(audit.stdout).not.toContain(secret);

    const last = await runCli(["audit", "--db", sb.db, "--limit", "1", "--json"], fakeEnv(sb.fake));
    const entries = last.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { action: string; at: string });
    expect(entries).toHaveLength(1);
    expect(entries[0]!.action).toBe("keys_revoke");
    expect(entries[0]!.at).toMatch(/^\d{4}-\d\d-\d\dT/);
    const future = await runCli(["audit", "--db", sb.db, "--since", "2999-01-01T00:00:00Z"], fakeEnv(sb.fake));
    expect(future.stdout).toBe("");
  });
});
