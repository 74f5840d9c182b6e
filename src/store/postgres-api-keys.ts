import { type KeyRow, toKeyRecord } from "./api-key-rows.js";
import type { ApiKeyStore } from "./api-key-store.js";
import { DuplicateKeyNameError } from "./api-key-store.js";
import type { PostgresDatabase } from "./postgres-database.js";

/**
 * {@link ApiKeyStore} in PostgreSQL's `api_keys` table. `isActive` must
 * answer at once, so the hashes of the active keys are kept in memory: read
 * when the store opens, and again whenever any broker creates or revokes a
 * key (NOTIFY) and after the listening connection came back from a drop.
 */
export async function createPostgresApiKeys(db: PostgresDatabase): Promise<ApiKeyStore> {
  let active = new Set<string>();
  let reading: Promise<void> | undefined;
  let again = false;
  /** Reads the active hashes; a change heard while reading makes it read once more. */
  const reload = (): Promise<void> => {
    if (reading) {
      again = true;
      return reading;
    }
    reading = (async () => {
      do {
        again = false;
        const { rows } = await db.query<{ key_hash: string }>(`SELECT key_hash FROM api_keys WHERE revoked_at IS NULL`);
        active = new Set(rows.map((r) => r.key_hash));
      } while (again);
    })().finally(() => (reading = undefined));
    return reading;
  };
  await reload();
  db.onChange((change) => {
    if (change.kind === "keys" || change.kind === "everything") {
      reload().catch((e: unknown) =>
        db.logger.warn({ event: "api_keys_reload_failed", error: db.safeError(e).message }, "could not re-read the API keys"),
      );
    }
  });

  return {
    async findActive(keyHash) {
      if (keyHash.includes("\u0000")) return undefined;
      const { rows } = await db.query<KeyRow>(`SELECT * FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL`, [keyHash]);
      return rows[0] && toKeyRecord(rows[0]);
    },
    isActive(keyHash) {
      return active.has(keyHash);
    },
    async markUsed(keyHash, at) {
      await db.query(`UPDATE api_keys SET last_used_at = $2 WHERE key_hash = $1 AND (last_used_at IS NULL OR last_used_at < $2)`, [
        keyHash,
        at,
      ]);
    },
    async create(key) {
      try {
        await db.transaction(async (client, notify) => {
          await client.query(`INSERT INTO api_keys (key_hash, name, tenants, role, created_at) VALUES ($1, $2, $3, $4, $5)`, [
            key.keyHash,
            key.name,
            key.tenants === "*" ? "*" : JSON.stringify(key.tenants),
            key.role,
            key.createdAt,
          ]);
          notify({ kind: "keys" });
        });
      } catch (e) {
        if ((e as { code?: string }).code === "23505") {
          throw new DuplicateKeyNameError(`a key named ${key.name} exists already; revoke it first or choose another name`);
        }
        throw e;
      }
      active.add(key.keyHash);
    },
    async list() {
      const { rows } = await db.query<KeyRow>(`SELECT * FROM api_keys ORDER BY created_at, name`);
      return rows.map(toKeyRecord);
    },
    async revoke(name, at) {
      const revoked = await db.transaction(async (client, notify) => {
        const { rows } = await client.query<{ key_hash: string }>(
          `UPDATE api_keys SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL RETURNING key_hash`,
          [name, at],
        );
        if (rows.length > 0) notify({ kind: "keys" });
        return rows.map((r) => r.key_hash);
      });
      for (const hash of revoked) active.delete(hash);
      return revoked.length > 0;
    },
  };
}
