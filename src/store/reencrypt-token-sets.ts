import type Database from "better-sqlite3";
import { reencryptInPasses } from "./reencrypt-passes.js";
import type { TokenColumns } from "./sealed-token-columns.js";
import type { ReencryptOptions, ReencryptResult } from "./token-set-store.js";

/** SQLite's `TokenSetStore.reencrypt` (see {@link reencryptInPasses}): batches by rowid, each batch's rewrites one transaction. */
export function reencryptTokenSets(db: Database.Database, options: ReencryptOptions): Promise<ReencryptResult> {
  const select = db.prepare(
    `SELECT rowid, connection_id, access_token, refresh_token, id_token FROM token_sets WHERE rowid > ? ORDER BY rowid LIMIT ?`,
  );
  const update = db.prepare(
    `UPDATE token_sets SET access_token = @new_access, refresh_token = @new_refresh, id_token = @new_id
     WHERE connection_id = @connection_id AND access_token = @access_token AND refresh_token = @refresh_token
       AND id_token IS @id_token`,
  );
  const stale = db.prepare(`SELECT connection_id FROM token_sets WHERE key_id IS NOT ?`).pluck();
  type Row = TokenColumns & { rowid: number };
  return reencryptInPasses<Row>(
    {
      readBatch: async (after, limit) => select.all(after?.rowid ?? 0, limit) as Row[],
      rewrite: async (changes) =>
        db.transaction(() =>
          changes.map(
            ({ row, sealed }) =>
              update.run({ ...row, new_access: sealed.access_token, new_refresh: sealed.refresh_token, new_id: sealed.id_token })
                .changes === 1,
          ),
        )(),
      staleIds: async (keyId) => stale.all(keyId) as string[],
    },
    options,
  );
}

/** The distinct key ids token sets are sealed under (`null` for plain-text rows). */
export function tokenKeyIds(db: Database.Database): Array<string | null> {
  return (db.prepare(`SELECT DISTINCT key_id FROM token_sets`).all() as Array<{ key_id: string | null }>).map((r) => r.key_id);
}

/**
 * Connection ids of token sets with a secret column in clear text: refused
 * while an encryption key is configured, until `rotate-key` encrypts them.
 */
export function unsealedTokenSets(db: Database.Database): string[] {
  const clear = (column: string) => `(${column} IS NOT NULL AND substr(${column}, 1, 5) <> 'tbx1:')`;
  return db
    .prepare(
      `SELECT connection_id FROM token_sets WHERE ${["access_token", "refresh_token", "id_token"].map(clear).join(" OR ")} ORDER BY rowid`,
    )
    .pluck()
    .all() as string[];
}
