import type { PostgresDatabase } from "./postgres-database.js";
import { reencryptInPasses } from "./reencrypt-passes.js";
import type { TokenColumns } from "./sealed-token-columns.js";
import type { ReencryptOptions, ReencryptResult } from "./token-set-store.js";

/** PostgreSQL's `TokenSetStore.reencrypt` (see {@link reencryptInPasses}): batches by connection id, each batch's rewrites one transaction. */
export function reencryptPostgresTokenSets(db: PostgresDatabase, options: ReencryptOptions): Promise<ReencryptResult> {
  return reencryptInPasses<TokenColumns>(
    {
      readBatch: async (after, limit) =>
        (
          await db.query<TokenColumns>(
            `SELECT connection_id, access_token, refresh_token, id_token FROM token_sets
             WHERE connection_id > $1 ORDER BY connection_id LIMIT $2`,
            [after?.connection_id ?? "", limit],
          )
        ).rows,
      rewrite: (changes) =>
        db.transaction(async (client) => {
          const rewritten: boolean[] = [];
          for (const { row, sealed } of changes) {
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
            rewritten.push(result.rowCount === 1);
          }
          return rewritten;
        }),
      staleIds: async (keyId) =>
        (
          await db.query<{ connection_id: string }>(`SELECT connection_id FROM token_sets WHERE key_id IS DISTINCT FROM $1`, [keyId])
        ).rows.map((r) => r.connection_id),
    },
    options,
  );
}
