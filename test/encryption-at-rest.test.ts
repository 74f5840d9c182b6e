/**
 * Tokens at rest: sealed with AES-256-GCM, nowhere in the database file, its
 * WAL or a backup; each row records its key id; keys rotate while a broker
 * serves.
 */
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { generateEncryptionKey, parseEncryptionKey } from "../src/crypto/encryption-keys.js";
import { createTokenCipher, DecryptionError, keyIdOf } from "../src/crypto/token-cipher.js";
import { identityServerOptions, startFakeXero, type FakeXero } from "@tokenbroker/fake-xero";
import { importRefreshToken, type ImportResult } from "../src/importer.js";
import { startBrokerServer } from "../src/server/broker-server.js";
import { withRawDatabase } from "./helpers/raw-database.js";
import { openSqliteStore } from "../src/store/sqlite-store.js";
import type { Store } from "../src/store/store.js";
import type { NewTokenSet } from "../src/token-set.js";
import { createOidcIdentityServer } from "../src/upstream/oidc-identity-server.js";
import { tempDir } from "./helpers/broker-fixture.js";

const key1 = parseEncryptionKey(generateEncryptionKey(), "test key 1");
const key2 = parseEncryptionKey(generateEncryptionKey(), "test key 2");

/** A token set with recognisable random secrets. */
function tokenSet(): NewTokenSet {
  const now = Date.now();
  return {
    accessToken: `eyJ.access.${randomBytes(48).toString("hex")}`,
    refreshToken: randomBytes(32).toString("hex"),
    idToken: `eyJ.id.${randomBytes(48).toString("hex")}`,
    tokenType: "Bearer",
    scopes: ["offline_access", "accounting.transactions"],
    expiresAt: now + 1_800_000,
    obtainedAt: now,
    refreshTokenIssuedAt: now,
  };
}

/**
 * Every way a secret could show up in a file: the whole string, its base64,
 * base64url and hex forms, and every 16-character piece of it (a partial
 * write, a page split).
 */
function forms(secret: string): string[] {
  const bytes = Buffer.from(secret, "utf8");
  const out = [secret, bytes.toString("base64"), bytes.toString("base64url"), bytes.toString("hex"), encodeURIComponent(secret)];
  for (let i = 0; i + 16 <= secret.length; i += 8) out.push(secret.slice(i, i + 16));
  return out;
}

/** The forms of `secrets` found in `file` (latin1, so every byte maps to one character). */
function foundIn(file: string, secrets: string[]): string[] {
  const text = readFileSync(file).toString("latin1");
  return secrets
    .flatMap(forms)
    .filter((form) => text.includes(form))
    .map((form) => `${form.slice(0, 6)}…`);
}

describe("encryption at rest", () => {
  let dir: ReturnType<typeof tempDir>;
  let path: string;
  const stores: Store[] = [];
  const open = (keys?: Buffer[]) => {
    const store = openSqliteStore({ path, ...(keys ? { encryption: createTokenCipher(keys) } : {}) });
    stores.push(store);
    return store;
  };

  beforeEach(() => {
    dir = tempDir();
    path = join(dir.path, "t.db");
  });
  afterEach(async () => {
    for (const s of stores.splice(0)) await s.close();
    dir.cleanup();
  });

  it("a stored token is nowhere in the database file, the WAL or a backup, and reads back intact", async () => {
    const store = open([key1]);
    const written = tokenSet();
    const { connectionId } = await store.connections.saveConnection({ xeroUserId: "user-1", tokenSet: written, tenants: [] });
    const refreshed = tokenSet();
    expect(await store.tokens.tryAcquireLease(connectionId, "test", 30_000)).toEqual({ acquired: true });
    const record = await store.tokens.commitRefresh(connectionId, "test", 1, refreshed);
    expect(record.accessToken).toBe(refreshed.accessToken);
    expect(record.refreshToken).toBe(refreshed.refreshToken);
    expect(record.idToken).toBe(refreshed.idToken);

    const backup = join(dir.path, "backup.db");
    await store.backup(backup);
    const secrets = [written, refreshed].flatMap((t) => [t.accessToken, t.refreshToken, t.idToken!]);
    expect(existsSync(`${path}-wal`)).toBe(true);
    expect(readFileSync(`${path}-wal`).length).toBeGreaterThan(0); // the commits are in the WAL, not checkpointed yet
    expect(foundIn(path, secrets)).toEqual([]);
    expect(foundIn(`${path}-wal`, secrets)).toEqual([]);
    expect(foundIn(backup, secrets)).toEqual([]);
    withRawDatabase(path, (db) => db.pragma("wal_checkpoint(TRUNCATE)"));
    expect(foundIn(path, secrets)).toEqual([]);

    // The check itself can fail: the same writes without a key leave the tokens in the file.
    const plainPath = join(dir.path, "plain.db");
    const plain = openSqliteStore({ path: plainPath });
    stores.push(plain);
    await plain.connections.saveConnection({ xeroUserId: "user-1", tokenSet: written, tenants: [] });
    expect(foundIn(`${plainPath}-wal`, [written.refreshToken]).length).toBeGreaterThan(0);
  });

  it("each row records its key id; another key cannot read it; an altered or moved value does not open", async () => {
    const store = open([key1]);
    const a = await store.connections.saveConnection({ xeroUserId: "user-a", tokenSet: tokenSet(), tenants: [] });
    const b = await store.connections.saveConnection({ xeroUserId: "user-b", tokenSet: tokenSet(), tenants: [] });
    expect(await store.tokens.keyIds()).toEqual([keyIdOf(key1)]);
    const raw = withRawDatabase(path, (db) =>
      db.prepare("SELECT connection_id, access_token, refresh_token, key_id FROM token_sets").all(),
    ) as Array<Record<string, string>>;
    for (const row of raw) {
      expect(row["key_id"]).toBe(keyIdOf(key1));
      expect(row["refresh_token"]).toMatch(new RegExp(`^tbx1:${keyIdOf(key1)}:`));
    }

    await expect(open([key2]).tokens.getToken(a.connectionId)).rejects.toThrow(DecryptionError);
    await expect(open([key2]).tokens.getToken(a.connectionId)).rejects.toThrow(/not configured/);
    await expect(open().tokens.getToken(a.connectionId)).rejects.toThrow(/encrypted: give tokenbroker the encryption key/);

    // Swap the refresh tokens of two rows: each is bound to its row, so neither opens.
    const rowB = raw.find((r) => r["connection_id"] === b.connectionId)!;
    withRawDatabase(path, (db) =>
      db.prepare("UPDATE token_sets SET refresh_token = ? WHERE connection_id = ?").run(rowB["refresh_token"], a.connectionId),
    );
    await expect(store.tokens.getToken(a.connectionId)).rejects.toThrow(/fails authentication/);
    // Flip one character of the ciphertext.
    const value = rowB["access_token"]!;
    const flipped = value.slice(0, -3) + (value.at(-3) === "A" ? "B" : "A") + value.slice(-2);
    withRawDatabase(path, (db) =>
      db.prepare("UPDATE token_sets SET access_token = ? WHERE connection_id = ?").run(flipped, b.connectionId),
    );
    await expect(store.tokens.getToken(b.connectionId)).rejects.toThrow(/fails authentication/);
  });

  it("re-encryption moves every row to the new key (plain-text rows too); both keys read during the rotation", async () => {
    const plain = open();
    const legacy = tokenSet();
    const { connectionId: plainId } = await plain.connections.saveConnection({ xeroUserId: "legacy", tokenSet: legacy, tenants: [] });
    const old = open([key1]);
    const sealed = tokenSet();
    const { connectionId: sealedId } = await old.connections.saveConnection({ xeroUserId: "sealed", tokenSet: sealed, tenants: [] });
    expect(new Set(await old.tokens.keyIds())).toEqual(new Set([null, keyIdOf(key1)]));

    const result = await old.tokens.reencrypt({ from: createTokenCipher([key2, key1]), to: createTokenCipher([key2]) });
    expect(result).toEqual({ reencrypted: 2, unchanged: 0 });
    expect(await old.tokens.keyIds()).toEqual([keyIdOf(key2)]);
    // Again: nothing to do.
    expect(await old.tokens.reencrypt({ from: createTokenCipher([key2]), to: createTokenCipher([key2]) })).toEqual({
      reencrypted: 0,
      unchanged: 2,
    });
    const fresh = open([key2]);
    expect((await fresh.tokens.getToken(plainId))?.refreshToken).toBe(legacy.refreshToken);
    expect((await fresh.tokens.getToken(sealedId))?.accessToken).toBe(sealed.accessToken);
    await expect(open([key1]).tokens.getToken(sealedId)).rejects.toThrow(DecryptionError);
  });

  describe("key rotation while a broker serves", () => {
    let fake: FakeXero;
    beforeEach(async () => {
      fake = await startFakeXero({ accessTokenLifetimeSeconds: 1800 });
    });
    afterEach(async () => {
      await fake.close();
    });

    it("a broker given both keys serves and refreshes across the rotation; afterwards every row is under the new key and the old key can go", async () => {
      const cipher = createTokenCipher([key1]);
      const store = openSqliteStore({ path, encryption: cipher });
      stores.push(store);
      const identity = createOidcIdentityServer(identityServerOptions(fake));
      const grants = Array.from({ length: 5 }, (_, i) => fake.addGrant({ tenants: [{ tenantName: `Org ${i}` }] }));
      const imported: ImportResult[] = [];
      for (const g of grants) imported.push(await importRefreshToken(store, identity, g.refreshToken));
      const server = await startBrokerServer({ port: 0, store, identity });
      try {
        const secrets = new Set<string>();
        const collect = async () => {
          for (const i of imported) {
            const r = (await store.tokens.getToken(i.connectionId))!;
            for (const s of [r.accessToken, r.refreshToken, r.idToken]) if (s) secrets.add(s);
          }
        };
        await collect();
        // Step 2 of the procedure: the broker gets the new key first (as SIGHUP does with a key file).
        cipher.setKeys([key2, key1]);
        // A refresh in between, under the new key.
        const refreshed = await server.broker.reportExpired(
          { connectionId: imported[0]!.connectionId },
          (await store.tokens.getToken(imported[0]!.connectionId))!.accessToken,
        );
        expect(refreshed.refreshed).toBe(true);
        // Step 3, from another database handle, as the rotate-key command does (test/security-cli.test.ts runs
        // it as a separate process against a serving broker).
        const other = openSqliteStore({ path });
        stores.push(other);
        const result = await other.tokens.reencrypt({ from: createTokenCipher([key2, key1]), to: createTokenCipher([key2]), batchSize: 2 });
        expect(result).toEqual({ reencrypted: 4, unchanged: 1 }); // one was refreshed under the new key already
        for (const i of imported)
          expect((await server.broker.getToken({ connectionId: i.connectionId })).connectionId).toBe(i.connectionId);
        expect(await store.tokens.keyIds()).toEqual([keyIdOf(key2)]);
        // Step 4: the old key can go.
        cipher.setKeys([key2]);
        for (const i of imported) expect((await store.tokens.getToken(i.connectionId))?.state).toBe("active");
        await collect();
        withRawDatabase(path, (db) => db.pragma("wal_checkpoint(TRUNCATE)"));
        expect(foundIn(path, [...secrets])).toEqual([]);
      } finally {
        await server.close();
      }
    });
  });
});
