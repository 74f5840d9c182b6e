import { type KeyRow, toKeyRecord } from "./api-key-rows.js";
import type { ApiKeyStore } from "./api-key-store.js";
import { DuplicateKeyNameError } from "./api-key-store.js";
import type { SqliteDatabase } from "./sqlite-database.js";

/** {@link ApiKeyStore} in the `api_keys` table. Writes of keys leave the read cache of token sets alone. */
export function createSqliteApiKeys(sqlite: SqliteDatabase): ApiKeyStore {
  const db = sqlite.db;
  const stmt = {
    find: db.prepare(`SELECT * FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL`),
    active: db.prepare(`SELECT 1 FROM api_keys WHERE key_hash = ? AND revoked_at IS NULL`).pluck(),
    used: db.prepare(`UPDATE api_keys SET last_used_at = @at WHERE key_hash = @hash AND (last_used_at IS NULL OR last_used_at < @at)`),
    insert: db.prepare(
      `INSERT INTO api_keys (key_hash, name, tenants, role, created_at) VALUES (@key_hash, @name, @tenants, @role, @created_at)`,
    ),
    list: db.prepare(`SELECT * FROM api_keys ORDER BY created_at, name`),
    revoke: db.prepare(`UPDATE api_keys SET revoked_at = @at WHERE name = @name AND revoked_at IS NULL`),
  };
  return {
    async findActive(keyHash) {
      const row = stmt.find.get(keyHash) as KeyRow | undefined;
      return row && toKeyRecord(row);
    },
    isActive(keyHash) {
      return stmt.active.get(keyHash) !== undefined;
    },
    async markUsed(keyHash, at) {
      stmt.used.run({ hash: keyHash, at });
    },
    async create(key) {
      try {
        stmt.insert.run({
          key_hash: key.keyHash,
          name: key.name,
          tenants: key.tenants === "*" ? "*" : JSON.stringify(key.tenants),
          role: key.role,
          created_at: key.createdAt,
        });
      } catch (e) {
        if ((e as { code?: string }).code === "SQLITE_CONSTRAINT_UNIQUE") {
          throw new DuplicateKeyNameError(`a key named ${key.name} exists already; revoke it first or choose another name`);
        }
        throw e;
      }
    },
    async list() {
      return (stmt.list.all() as KeyRow[]).map(toKeyRecord);
    },
    async revoke(name, at) {
      return stmt.revoke.run({ name, at }).changes > 0;
    },
  };
}
