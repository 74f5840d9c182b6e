import { isSealed, type TokenCipher } from "../crypto/token-cipher.js";

/** The secret columns of a `token_sets` row. */
export interface TokenColumns {
  connection_id: string;
  access_token: string;
  refresh_token: string;
  id_token: string | null;
}

/** The columns of `token_sets` that hold secrets, sealed at rest when a cipher is configured. */
export const SECRET_TOKEN_COLUMNS = ["access_token", "refresh_token", "id_token"] as const;

/** What a sealed column of a row is bound to: moving it to another row or column makes it unreadable. */
export function sealContext(column: string, connectionId: string): string {
  return `token_sets.${column}:${connectionId}`;
}

/** The row with its secret columns sealed under the cipher's current key (unchanged without a cipher). */
export function sealTokenColumns<T extends TokenColumns>(row: T, cipher: TokenCipher | undefined): T {
  if (!cipher) return row;
  const id = row.connection_id;
  return {
    ...row,
    access_token: cipher.seal(row.access_token, sealContext("access_token", id)),
    refresh_token: cipher.seal(row.refresh_token, sealContext("refresh_token", id)),
    id_token: row.id_token === null ? null : cipher.seal(row.id_token, sealContext("id_token", id)),
  };
}

/**
 * The row with its secret columns opened. Plain-text values (a database from
 * before encryption was turned on) are returned as they are; sealed values
 * without a cipher are an error that says what to configure.
 */
export function openTokenColumns<T extends TokenColumns>(row: T, cipher: TokenCipher | undefined): T {
  const id = row.connection_id;
  const open = (value: string, column: string): string => {
    if (!isSealed(value)) return value;
    if (!cipher) {
      throw new Error(
        `token set ${id} is encrypted: give tokenbroker the encryption key (--encryption-key-file or TOKENBROKER_ENCRYPTION_KEY)`,
      );
    }
    return cipher.open(value, sealContext(column, id));
  };
  return {
    ...row,
    access_token: open(row.access_token, "access_token"),
    refresh_token: open(row.refresh_token, "refresh_token"),
    id_token: row.id_token === null ? null : open(row.id_token, "id_token"),
  };
}
