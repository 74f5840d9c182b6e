import { sealedKeyId } from "../crypto/token-cipher.js";
import { openTokenColumns, sealTokenColumns, type TokenColumns } from "./sealed-token-columns.js";
import { RotationIncompleteError, UnreadableTokenSetError, type ReencryptOptions, type ReencryptResult } from "./token-set-store.js";

/** What {@link reencryptInPasses} needs of a database: reads in batches, conditional rewrites, and what is left. */
export interface ReencryptTable<Row extends TokenColumns> {
  /** Up to `limit` token sets after `after` (undefined: from the start), in a stable order. */
  readBatch(after: Row | undefined, limit: number): Promise<Row[]>;
  /**
   * Rewrites each row's columns to `sealed` in one transaction, but only where
   * the row still holds the values that were read; says which were rewritten.
   */
  rewrite(changes: ReadonlyArray<{ row: Row; sealed: TokenColumns }>): Promise<boolean[]>;
  /** Connection ids of token sets not sealed under `keyId`. */
  staleIds(keyId: string): Promise<string[]>;
}

/**
 * `TokenSetStore.reencrypt` on either database: re-seals every token set
 * under `to`'s current key, a batch per transaction, while brokers keep
 * serving. A row is rewritten only if it still holds the values that were read
 * (a refresh committed meanwhile is re-read and done in the next pass), so no
 * refresh is ever lost. Rows written wholly in clear text are encrypted; a row
 * partly in clear text (altered by someone without the key) or that does not
 * open is left as it is and named in the {@link RotationIncompleteError}
 * thrown once every other row is done.
 */
export async function reencryptInPasses<Row extends TokenColumns>(
  table: ReencryptTable<Row>,
  options: ReencryptOptions,
): Promise<ReencryptResult> {
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
    let after: Row | undefined;
    for (;;) {
      const rows = await table.readBatch(after, batchSize);
      if (rows.length === 0) break;
      after = rows[rows.length - 1];
      const changes: Array<{ row: Row; sealed: TokenColumns }> = [];
      for (const row of rows) {
        refused.delete(row.connection_id);
        if (current(row)) {
          if (!done.has(row.connection_id)) unchanged++;
          done.add(row.connection_id);
          continue;
        }
        try {
          changes.push({ row, sealed: sealTokenColumns(openTokenColumns(row, options.from, { allowPlainText: true }), options.to) });
        } catch (e) {
          if (!(e instanceof UnreadableTokenSetError)) throw e;
          refused.set(row.connection_id, e);
        }
      }
      if (changes.length === 0) continue;
      const rewritten = await table.rewrite(changes);
      changes.forEach(({ row }, i) => {
        if (rewritten[i]) {
          reencrypted++;
          done.add(row.connection_id);
        } else {
          pending++; // rewritten by a refresh meanwhile: read again in the next pass
        }
      });
    }
    const stale = (await table.staleIds(target)).filter((id) => !refused.has(id));
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
