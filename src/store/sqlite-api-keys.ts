import type Database from "better-sqlite3";
import type { ApiKeyRecord, ApiKeyStore } from "../auth/api-key-store.js";

interface KeyRow {
  key_hash: string;
  name: string;
  tenants: string;
  role: "client" | "admin";
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

/** A new key to store (hashed by the caller). */
export interface NewApiKey {
  name: string;
  keyHash: string;
  tenants: "*" | string[];
  role: "client" | "admin";
  createdAt: number;
}

/** An active key of that name exists already. */
export class DuplicateKeyNameError extends Error {
  override readonly name = "DuplicateKeyNameError";
}

/** API keys in the `api_keys` table of a tokenbroker database. */
export interface SqliteApiKeys extends ApiKeyStore {
  create(key: NewApiKey): void;
  /** Every key, active and revoked, oldest first. */
  list(): ApiKeyRecord[];
  /** Revokes the active key of that name; false if there is none. */
  revoke(name: string, at: number): boolean;
}

/** API keys stored in `db` (a database migrated by `openSqliteStore`). */
export function createSqliteApiKeys(db: Database.Database): SqliteApiKeys {
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
      return row && toRecord(row);
    },
    isActive(keyHash) {
      return stmt.active.get(keyHash) !== undefined;
    },
    async markUsed(keyHash, at) {
      stmt.used.run({ hash: keyHash, at });
    },
    create(key) {
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
    list() {
      return (stmt.list.all() as KeyRow[]).map(toRecord);
    },
    revoke(name, at) {
      return stmt.revoke.run({ name, at }).changes > 0;
    },
  };
}

function toRecord(row: KeyRow): ApiKeyRecord {
  return {
    name: row.name,
    keyHash: row.key_hash,
    tenants: row.tenants === "*" ? "*" : (JSON.parse(row.tenants) as string[]),
    role: row.role,
    createdAt: row.created_at,
    lastUsedAt: row.last_used_at ?? undefined,
    revokedAt: row.revoked_at ?? undefined,
  };
}
