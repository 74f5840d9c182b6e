import type { ApiKeyRecord } from "./api-key-store.js";

/** A row of the `api_keys` table, as both stores read it. */
export interface KeyRow {
  key_hash: string;
  name: string;
  tenants: string;
  role: "client" | "admin";
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

/** A key row as the authenticator sees it (the tenants column is `*` or a JSON array). */
export function toKeyRecord(row: KeyRow): ApiKeyRecord {
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
