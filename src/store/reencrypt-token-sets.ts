import type Database from "better-sqlite3";
import { sealedKeyId } from "../crypto/token-cipher.js";
import { openTokenColumns, sealTokenColumns, type TokenColumns } from "./sealed-token-columns.js";
import { RotationIncompleteError, UnreadableTokenSetError, type ReencryptOptions, type ReencryptResult } from "./token-set-store.js";

/**
 * SQLite's `TokenSetStore.reencrypt`: re-seals every token set under `to`'s current key, in small transactions,
 * while brokers keep serving. A row is rewritten only if it still holds the
 * values that were read (a refresh committed meanwhile is re-read and done in
 * the next pass), so no refresh is ever lost. Rows written wholly in clear
 * text are encrypted; a row partly in clear text (altered by someone without
 * the key) or that does not open is left as it is and named in the
 * {@link RotationIncompleteError} thrown once every other row is done.
 */
export function reencryptTokenSets(db: Database.Database, options: ReencryptOptions): ReencryptResult {
  const batchSize = options.batchSize ?? 100;
  const target = options.to.keyId;
  const select = db.prepare(
    `SELECT rowid, connection_id, access_token, refresh_token, id_token FROM token_sets WHERE rowid > ? ORDER BY rowid LIMIT ?`,
  );
  const update = db.prepare(
    `UPDATE token_sets SET access_token = @new_access, refresh_token = @new_refresh, id_token = @new_id
     WHERE connection_id = @connection_id AND access_token = @access_token AND refresh_token = @refresh_token
       AND id_token IS @id_token`,
  );
  const current = (row: TokenColumns) =>
    [row.access_token, row.refresh_token, row.id_token].every((v) => v === null || sealedKeyId(v) === target);

  const done = new Set<string>();
  const refused = new Map<string, UnreadableTokenSetError>();
  let reencrypted = 0;
  let unchanged = 0;
  for (let pass = 0; pass < (options.maxPasses ?? 5); pass++) {
    let pending = 0;
    let after = 0;
    for (;;) {
      const rows = select.all(after, batchSize) as Array<TokenColumns & { rowid: number }>;
      if (rows.length === 0) break;
      after = rows[rows.length - 1]!.rowid;
      db.transaction(() => {
        for (const row of rows) {
          refused.delete(row.connection_id);
          if (current(row)) {
            if (!done.has(row.connection_id)) unchanged++;
            done.add(row.connection_id);
            continue;
          }
          let opened: TokenColumns;
          try {
            opened = openTokenColumns(row, options.from, { allowPlainText: true });
          } catch (e) {
            if (!(e instanceof UnreadableTokenSetError)) throw e;
            refused.set(row.connection_id, e);
            continue;
          }
          const sealed = sealTokenColumns(opened, options.to);
          const result = update.run({
            ...row,
            new_access: sealed.access_token,
            new_refresh: sealed.refresh_token,
            new_id: sealed.id_token,
          });
          if (result.changes === 1) {
            reencrypted++;
            done.add(row.connection_id);
          } else {
            pending++; // rewritten by a refresh meanwhile: read again in the next pass
          }
        }
      })();
    }
    const stale = (db.prepare(`SELECT connection_id FROM token_sets WHERE key_id IS NOT ?`).pluck().all(target) as string[]).filter(
      (id) => !refused.has(id),
    );
    if (pending === 0 && stale.length === 0) {
      if (refused.size === 0) return { reencrypted, unchanged };
      const [first, ...more] = [...refused.values()];
      throw new RotationIncompleteError(
        `${refused.size} token set${refused.size === 1 ? " was" : "s were"} not re-encrypted (${reencrypted} were): ${first!.message}` +
          (more.length > 0 ? ` (also refused: ${more.map((e) => e.connectionId).join(", ")})` : ""),
      );
    }
  }
  throw new RotationIncompleteError(
    `token sets keep being written under another key than ${target}: give every running broker the new key first ` +
      `(as its current key, the old one as an old key), then run rotate-key again`,
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
