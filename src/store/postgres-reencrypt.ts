import { sealedKeyId } from "../crypto/token-cipher.js";
import type { PostgresDatabase } from "./postgres-database.js";
import { openTokenColumns, sealTokenColumns, type TokenColumns } from "./sealed-token-columns.js";
import { RotationIncompleteError, UnreadableTokenSetError, type ReencryptOptions, type ReencryptResult } from "./token-set-store.js";

/**
 * PostgreSQL's `TokenSetStore.reencrypt`, as SQLite's (reencrypt-token-sets.ts):
 * re-seals every token set under `to`'s current key, a batch per
 * transaction, while brokers keep serving. A row is rewritten only if it
 * still holds the values that were read (a refresh committed meanwhile is
 * re-read in the next pass), so no refresh is lost. Rows wholly in clear text
 * are encrypted; a row partly in clear text or that does not open is left as
 * it is and named in the {@link RotationIncompleteError} thrown at the end.
 */
export async function reencryptPostgresTokenSets(db: PostgresDatabase, options: ReencryptOptions): Promise<ReencryptResult> {
  const batchSize = options.batchSize ?? 100;
  const target = options.to.keyId;
  const current = (row: TokenColumns) =>
    [row.access_token, row.refresh_token, row.id_token].every((v) => v === null || sealedKeyId(v) === target);

  const done = new Set<string>();
  const refused = new Map<string, UnreadableTokenSetError>();
  let reencrypted = 0;
  let unchanged = 0;
  for (let pass = 0; pass < (options.maxPasses ?? 5); pass++) {
    let pending = 0;
    let after = "";
    for (;;) {
      const { rows } = await db.query<TokenColumns>(
        `SELECT connection_id, access_token, refresh_token, id_token FROM token_sets
         WHERE connection_id > $1 ORDER BY connection_id LIMIT $2`,
        [after, batchSize],
      );
      if (rows.length === 0) break;
      after = rows[rows.length - 1]!.connection_id;
      await db.transaction(async (client) => {
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
          const result = await client.query(
            `UPDATE token_sets SET access_token = $5, refresh_token = $6, id_token = $7
             WHERE connection_id = $1 AND access_token = $2 AND refresh_token = $3 AND id_token IS NOT DISTINCT FROM $4`,
            [
              row.connection_id,
              row.access_token,
              row.refresh_token,
              row.id_token,
              sealed.access_token,
              sealed.refresh_token,
              sealed.id_token,
            ],
          );
          if (result.rowCount === 1) {
            reencrypted++;
            done.add(row.connection_id);
          } else {
            pending++; // rewritten by a refresh meanwhile: read again in the next pass
          }
        }
      });
    }
    const { rows: staleRows } = await db.query<{ connection_id: string }>(
      `SELECT connection_id FROM token_sets WHERE key_id IS DISTINCT FROM $1`,
      [target],
    );
    const stale = staleRows.map((r) => r.connection_id).filter((id) => !refused.has(id));
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
