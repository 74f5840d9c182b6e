/**
 * Fail closed at rest: with an encryption key configured, a token set whose
 * secret columns are not sealed under a configured key is refused (never
 * served, never refreshed with), with a clear error for callers and a log line
 * for the operator; only `rotate-key` upgrades a clear-text database.
 * (File modes of the database, backups and key files: test/private-files.test.ts.)
 */
import { randomBytes } from "node:crypto";
import { Code, createClient } from "@connectrpc/connect";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { TokenService } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { generateEncryptionKey, parseEncryptionKey } from "../src/crypto/encryption-keys.js";
import { createTokenCipher, keyIdOf } from "../src/crypto/token-cipher.js";
import { sealContext } from "../src/store/sealed-token-columns.js";
import { protocols } from "./helpers/broker-fixture.js";
import { clientOf, oneLine, useCliSandbox } from "./helpers/cli-sandbox.js";
import { cliImport, fakeEnv, runCli, startServe, type ServeProcess } from "./helpers/serve-process.js";
import { withKey } from "./helpers/secure-broker.js";
import { rejection } from "./helpers/rejection.js";

const sb = useCliSandbox();

/** Writes `value` into one column of the connection's token set, as someone with the file but no key could. */
function plant(
  db: string,
  connectionId: string,
  column: "access_token" | "refresh_token" | "id_token",
  value: string,
  expired = false,
): void {
  const raw = new Database(db);
  try {
    raw.pragma("busy_timeout = 5000");
    const changed = raw
      .prepare(`UPDATE token_sets SET ${column} = ?${expired ? ", expires_at = ?" : ""} WHERE connection_id = ?`)
      .run(...(expired ? [value, Date.now() - 60_000, connectionId] : [value, connectionId]));
    expect(changed.changes).toBe(1);
  } finally {
    raw.close();
  }
}

/** A secure serve on the sandbox's database with one imported grant and an API key for every tenant. */
async function serving(): Promise<{ serve: ServeProcess; connectionId: string; key: string; tenantId: string }> {
  await sb.keygen(sb.keyFile);
  const connectionId = await sb.importGrant();
  const key = await sb.createKey("all", "*");
  const serve = await startServe({ env: fakeEnv(sb.fake), db: sb.db, secure: true, args: ["--encryption-key-file", sb.keyFile] });
  return { serve, connectionId, key, tenantId: sb.grant.tenants[0]!.tenantId };
}

describe("a token set not sealed under a configured key is refused", () => {
  it("a clear-text access token written into the file is never served, on any protocol; callers get FAILED_PRECONDITION saying why; the log names connection and column", async () => {
    const { serve, connectionId, key, tenantId } = await serving();
    const selector = { case: "tenantId" as const, value: tenantId };
    expect((await clientOf(serve.url).getToken({ selector }, withKey(key))).token?.accessToken).toMatch(/^eyJ/);

    const planted = `eyJ.planted.${randomBytes(24).toString("hex")}`;
    plant(sb.db, connectionId, "access_token", planted);
    const calls = sb.fake.tokenEndpointCalls;
    const seen: string[] = [];
    for (const p of protocols) {
      const client = createClient(TokenService, p.transport(serve.url));
      const e = await rejection(client.getToken({ selector }, withKey(key)));
      seen.push(e.rawMessage);
      expect(e.code, `${p.name}: ${e.rawMessage}`).toBe(Code.FailedPrecondition);
      expect(e.rawMessage).toContain(`connection ${connectionId}`);
      expect(e.rawMessage).toMatch(
        /access_token is in clear text while its other tokens are encrypted, so someone without the key altered it/,
      );
      expect(e.rawMessage).toMatch(/Re-authorise the connection/);
      // The planted token as the one a channel reports rejected: not refreshed, not served.
      const r = await rejection(client.reportExpired({ selector, accessToken: planted }, withKey(key)));
      seen.push(r.rawMessage);
      expect(r.code).toBe(Code.FailedPrecondition);
      const watch = await rejection(
        (async () => {
          for await (const m of client.watchToken({ selector }, withKey(key))) seen.push(JSON.stringify(m));
        })(),
      );
      seen.push(watch.rawMessage);
      expect(watch.code).toBe(Code.FailedPrecondition);
    }
    expect(sb.fake.tokenEndpointCalls).toBe(calls);
    // Keys scoped to tenants, naming the connection: the scope is checked as for a readable token set.
    const byConnection = { selector: { case: "connectionId" as const, value: connectionId } };
    const scoped = await sb.createKey("scoped", sb.grant.tenants.map((t) => t.tenantId).join(","));
    const outsider = await sb.createKey("outsider", "some-other-tenant");
    for (const p of protocols) {
      const client = createClient(TokenService, p.transport(serve.url));
      const inScope = await rejection(client.getToken(byConnection, withKey(scoped)));
      seen.push(inScope.rawMessage);
      expect(inScope.code, `${p.name}: ${inScope.rawMessage}`).toBe(Code.FailedPrecondition);
      expect((await rejection(client.getToken(byConnection, withKey(outsider)))).code).toBe(Code.PermissionDenied);
    }
    expect(serve.logs().filter((l) => l["msg"] === "internal error")).toEqual([]);
    const line = await serve.waitForLog((l) => l["event"] === "token_set_refused");
    expect(line).toMatchObject({ connectionId, column: "access_token", problem: "not_sealed" });
    expect(line["level"]).toBe(50); // error
    expect(serve.logs().filter((l) => l["event"] === "token_set_refused")).toHaveLength(1); // not one per call
    for (const text of [...seen, serve.stderr()]) expect(text).not.toContain(planted.slice(12));
  });

  it("a clear-text refresh token is never sent to Xero, and a clear-text id token is refused too", async () => {
    const { serve, connectionId, key, tenantId } = await serving();
    const selector = { case: "tenantId" as const, value: tenantId };
    const planted = `planted-refresh-${randomBytes(16).toString("hex")}`;
    plant(sb.db, connectionId, "refresh_token", planted, true); // expired: GetToken would have to refresh
    const calls = sb.fake.tokenEndpointCalls;
    const e = await rejection(clientOf(serve.url).getToken({ selector }, withKey(key)));
    expect(e.code).toBe(Code.FailedPrecondition);
    expect(e.rawMessage).toMatch(/refresh_token is in clear text/);
    await serve.waitForLog((l) => l["event"] === "token_set_refused" && l["column"] === "refresh_token");
    expect(sb.fake.tokenEndpointCalls).toBe(calls);

    // Another connection, whose id token alone is in clear text.
    const second = sb.fake.addGrant({ tenants: [{ tenantName: "Org C" }] });
    const secondId = await sb.importGrant(second.refreshToken);
    plant(sb.db, secondId, "id_token", `eyJ.id.${randomBytes(16).toString("hex")}`);
    const idError = await rejection(clientOf(serve.url).getToken({ selector: { case: "connectionId", value: secondId } }, withKey(key)));
    expect(idError.code).toBe(Code.FailedPrecondition);
    expect(idError.rawMessage).toMatch(/id_token is in clear text/);
    expect(serve.stderr()).not.toContain(planted);
  });

  it("a value sealed under a key that is not configured is FAILED_PRECONDITION naming the key id, not INTERNAL", async () => {
    const { serve, connectionId, key, tenantId } = await serving();
    const stranger = parseEncryptionKey(generateEncryptionKey(), "another key");
    const sealed = createTokenCipher([stranger]).seal(`eyJ.${randomBytes(16).toString("hex")}`, sealContext("access_token", connectionId));
    plant(sb.db, connectionId, "access_token", sealed);
    const e = await rejection(clientOf(serve.url).getToken({ selector: { case: "tenantId", value: tenantId } }, withKey(key)));
    expect(e.code).toBe(Code.FailedPrecondition);
    expect(e.rawMessage).toContain(`sealed under key ${keyIdOf(stranger)}, which is not configured`);
    const line = await serve.waitForLog((l) => l["event"] === "token_set_refused");
    expect(line).toMatchObject({ connectionId, column: "access_token", problem: "cannot_open" });
  });
});

/** A column of a connection's token set as stored. */
function stored(db: string, connectionId: string, column: string): string {
  const raw = new Database(db, { readonly: true });
  try {
    return raw.prepare(`SELECT ${column} FROM token_sets WHERE connection_id = ?`).pluck().get(connectionId) as string;
  } finally {
    raw.close();
  }
}

describe("only rotate-key upgrades a clear-text database", () => {
  it("serve with a key on a clear-text database warns at start-up and refuses its tokens; rotate-key encrypts them, not a row partly in clear text, and the same serve then hands them out", async () => {
    const key = await sb.keygen(sb.keyFile);
    const env = fakeEnv(sb.fake);
    const connectionId = await cliImport(env, sb.db, sb.grant.refreshToken); // --insecure-no-encryption
    const accessToken = stored(sb.db, connectionId, "access_token");
    expect(accessToken).toMatch(/^eyJ/);
    // A second connection whose refresh token alone is sealed: someone without the key changed the others.
    const altered = await cliImport(env, sb.db, sb.fake.addGrant({ tenants: [{ tenantName: "Org C" }] }).refreshToken);
    const cipher = createTokenCipher([parseEncryptionKey(key, "the key")]);
    const alteredRefresh = stored(sb.db, altered, "refresh_token");
    plant(sb.db, altered, "refresh_token", cipher.seal(alteredRefresh, sealContext("refresh_token", altered)));

    const serve = await startServe({ env, db: sb.db, args: ["--encryption-key-file", sb.keyFile], secure: true });
    const warning = await serve.waitForLog((l) => l["event"] === "token_sets_not_encrypted");
    expect(warning).toMatchObject({ count: 2, connectionIds: [connectionId, altered] });
    expect(String(warning["msg"])).toContain("tokenbroker rotate-key");
    const apiKey = await sb.createKey("all", "*");
    const selector = { case: "connectionId" as const, value: connectionId };
    expect((await rejection(clientOf(serve.url).getToken({ selector }, withKey(apiKey)))).code).toBe(Code.FailedPrecondition);

    const rotate = await runCli(["rotate-key", "--db", sb.db, "--new-key-file", sb.keyFile], env);
    expect(rotate.code, rotate.stderr).toBe(2);
    expect(oneLine(rotate.stderr)).toMatch(
      new RegExp(
        `1 token set was not re-encrypted \\(1 were\\): the stored token set of connection ${altered} is refused: its access_token is in clear text while its other tokens are encrypted`,
      ),
    );
    expect(rotate.stderr).not.toContain(stored(sb.db, altered, "access_token"));
    const { token } = await clientOf(serve.url).getToken({ selector }, withKey(apiKey));
    expect(token?.accessToken).toBe(accessToken);
    expect(stored(sb.db, connectionId, "access_token")).toMatch(new RegExp(`^tbx1:${cipher.keyId}:`));
    const refused = await rejection(clientOf(serve.url).getToken({ selector: { case: "connectionId", value: altered } }, withKey(apiKey)));
    expect(refused.code).toBe(Code.FailedPrecondition);
    expect(serve.stderr()).not.toContain(accessToken);

    // Once the altered connection is re-authorised (an import of its user's refresh token replaces the token set), rotate-key is done.
    await sb.importGrant(alteredRefresh);
    const again = await runCli(["rotate-key", "--db", sb.db, "--new-key-file", sb.keyFile], env);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toBe(`re-encrypted 0 token sets under key ${cipher.keyId} (2 already were)\n`);
    expect(
      (await clientOf(serve.url).getToken({ selector: { case: "connectionId", value: altered } }, withKey(apiKey))).token?.accessToken,
    ).toMatch(/^eyJ/);
  });
});
