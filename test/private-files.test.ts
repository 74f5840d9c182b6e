/**
 * The files that hold secrets are private whatever the umask: the database,
 * its WAL and shared-memory files, backups and key files made by `keygen
 * --out` are created 0600; an existing database open to others is made 0600
 * on open; serve warns about a key file open to others.
 */
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parseEncryptionKey } from "../src/crypto/encryption-keys.js";
import { createTokenCipher } from "../src/crypto/token-cipher.js";
import { openSqliteStore } from "../src/store/sqlite-store.js";
import { clientOf, oneLine, useCliSandbox } from "./helpers/cli-sandbox.js";
import { CLI, fakeEnv, startServe } from "./helpers/serve-process.js";
import { withKey } from "./helpers/secure-broker.js";

const sb = useCliSandbox();

/** `ls -l`'s view of a file's permissions, e.g. "0600". */
const modeOf = (path: string) => `0${(statSync(path).mode & 0o777).toString(8)}`;

/** Runs the CLI under `umask <mask>` (set by a shell, as a user's would be). */
async function runUnderUmask(
  mask: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  input = "",
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn("/bin/sh", ["-c", `umask ${mask} && exec "$@"`, "sh", process.execPath, CLI, ...args], {
    env,
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  child.stdin.on("error", () => {});
  child.stdin.end(input);
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

describe.each(["022", "000"])("under umask %s", (mask) => {
  it("the database, its WAL and shared-memory files and a backup are created 0600", async () => {
    const previous = process.umask(Number.parseInt(mask, 8));
    try {
      const path = join(sb.dir, "fresh.db");
      const store = openSqliteStore({ path, encryption: createTokenCipher([randomBytes(32)]) });
      try {
        const now = Date.now();
        await store.connections.saveConnection({
          xeroUserId: "user-1",
          tokenSet: {
            accessToken: "a",
            refreshToken: "r",
            idToken: undefined,
            tokenType: "Bearer",
            scopes: [],
            expiresAt: now + 60_000,
            obtainedAt: now,
            refreshTokenIssuedAt: now,
          },
          tenants: [],
        });
        expect(existsSync(`${path}-wal`) && existsSync(`${path}-shm`)).toBe(true);
        expect([path, `${path}-wal`, `${path}-shm`].map(modeOf)).toEqual(["0600", "0600", "0600"]);
        const backup = join(sb.dir, "copy.db");
        await store.backup(backup);
        expect(modeOf(backup)).toBe("0600");
      } finally {
        await store.close();
      }
    } finally {
      process.umask(previous);
    }
  });

  it("keygen --out, import and tokenbroker backup create 0600 files; keygen never replaces a key file", async () => {
    const env = fakeEnv(sb.fake);
    const keygen = await runUnderUmask(mask, ["keygen", "--out", sb.keyFile], env);
    expect(keygen.code, keygen.stderr).toBe(0);
    expect(modeOf(sb.keyFile)).toBe("0600");
    const key = readFileSync(sb.keyFile, "utf8");
    expect(parseEncryptionKey(key, "the key file")).toHaveLength(32);
    expect(keygen.stdout).toMatch(/^.*tokenbroker\.key: new key [0-9a-f]{8} \(mode 0600\)\n$/);
    expect(keygen.stdout).not.toContain(key.trim());

    const again = await runUnderUmask(mask, ["keygen", "--out", sb.keyFile], env);
    expect(again.code).toBe(2);
    expect(oneLine(again.stderr)).toMatch(/exists: keygen never replaces a key file/);
    expect(readFileSync(sb.keyFile, "utf8")).toBe(key);

    const imported = await runUnderUmask(
      mask,
      ["import", "--db", sb.db, "--encryption-key-file", sb.keyFile],
      env,
      `${sb.grant.refreshToken}\n`,
    );
    expect(imported.code, imported.stderr).toBe(0);
    expect(modeOf(sb.db)).toBe("0600");
    const backup = join(sb.dir, "backup.db");
    const copied = await runUnderUmask(mask, ["backup", "--db", sb.db, backup], env);
    expect(copied.code, copied.stderr).toBe(0);
    expect(modeOf(backup)).toBe("0600");
  });
});

describe("files that already exist", () => {
  it("serve makes a database open to others 0600 and says so; it warns once about a key file open to others, naming it and the fix", async () => {
    await sb.keygen(sb.keyFile);
    await sb.importGrant();
    const key = await sb.createKey("all", "*");
    const args = ["--encryption-key-file", sb.keyFile];
    // A private key file: no warning.
    const quiet = await startServe({ env: fakeEnv(sb.fake), db: sb.db, secure: true, args });
    await clientOf(quiet.url).getToken({ selector: { case: "tenantId", value: sb.grant.tenants[0]!.tenantId } }, withKey(key));
    await quiet.kill("SIGTERM");
    expect(quiet.logs().filter((l) => l["event"] === "key_file_mode" || l["event"] === "file_mode_tightened")).toEqual([]);

    chmodSync(sb.db, 0o644);
    chmodSync(sb.keyFile, 0o644);
    const serve = await startServe({ env: fakeEnv(sb.fake), db: sb.db, secure: true, args });
    const tightened = await serve.waitForLog((l) => l["event"] === "file_mode_tightened");
    expect(tightened).toMatchObject({ file: sb.db, from: "0644", to: "0600" });
    expect(modeOf(sb.db)).toBe("0600");
    const warning = await serve.waitForLog((l) => l["event"] === "key_file_mode");
    expect(warning).toMatchObject({ file: sb.keyFile, mode: "0644" });
    expect(warning["level"]).toBe(40); // warn
    expect(String(warning["msg"])).toContain(`chmod 600 ${sb.keyFile}`);
    expect(serve.logs().filter((l) => l["event"] === "key_file_mode")).toHaveLength(1);
    expect(modeOf(sb.keyFile)).toBe("0644"); // the key file is the operator's: warned about, not changed
    expect(serve.stderr()).not.toContain(readFileSync(sb.keyFile, "utf8").trim());
  });
});
