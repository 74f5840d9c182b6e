import { DecryptionError, isSealed, type TokenCipher } from "../crypto/token-cipher.js";
import { UnreadableTokenSetError } from "./token-set-store.js";

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

/** Options for {@link openTokenColumns}. */
export interface OpenTokenColumnsOptions {
  /**
   * Return the values of a row written wholly in clear text as they are
   * although a cipher is given: only for `rotate-key`, which encrypts a
   * database written with `--insecure-no-encryption`. A row partly in clear
   * text is refused all the same: someone without the key altered it.
   */
  allowPlainText?: boolean;
}

/**
 * The row with its secret columns opened. Without a cipher, clear-text values
 * (`--insecure-no-encryption`) are returned as they are. Fails closed with
 * {@link UnreadableTokenSetError}, whose message names the connection and
 * column and never a value: a clear-text value although a cipher is given
 * (written by someone without the key), a sealed value without a cipher, or
 * one that does not open (unknown key id, altered, moved from another row).
 */
export function openTokenColumns<T extends TokenColumns>(
  row: T,
  cipher: TokenCipher | undefined,
  options: OpenTokenColumnsOptions = {},
): T {
  const id = row.connection_id;
  const wholeRowClear = [row.access_token, row.refresh_token, row.id_token].every((v) => v === null || !isSealed(v));
  const open = (value: string, column: string): string => {
    if (!isSealed(value)) {
      if (!cipher || (options.allowPlainText && wholeRowClear)) return value;
      if (!wholeRowClear) {
        throw new UnreadableTokenSetError(
          id,
          column,
          "not_sealed",
          `the stored token set of connection ${id} is refused: its ${column} is in clear text while its other tokens are ` +
            `encrypted, so someone without the key altered it. Re-authorise the connection (\`tokenbroker connect\`, or ` +
            `\`tokenbroker import\` of a new refresh token); rotate-key does not encrypt it`,
        );
      }
      throw new UnreadableTokenSetError(
        id,
        column,
        "not_sealed",
        `the stored token set of connection ${id} is refused: its ${column} is in clear text although an encryption key ` +
          `is configured (it was not written by a broker with the key). If this database was written with ` +
          `--insecure-no-encryption, encrypt it with \`tokenbroker rotate-key --new-key-file <key file>\`; otherwise ` +
          `re-authorise the connection (\`tokenbroker connect\`, or \`tokenbroker import\` of a new refresh token)`,
      );
    }
    if (!cipher) {
      throw new UnreadableTokenSetError(
        id,
        column,
        "no_key",
        `token set ${id} is encrypted: give tokenbroker the encryption key (--encryption-key-file or TOKENBROKER_ENCRYPTION_KEY)`,
      );
    }
    try {
      return cipher.open(value, sealContext(column, id));
    } catch (e) {
      if (!(e instanceof DecryptionError)) throw e;
      throw new UnreadableTokenSetError(
        id,
        column,
        "cannot_open",
        `the stored token set of connection ${id} is refused: its ${column} ${e.message}. Add a missing key as an old ` +
          `key (a further line of the key file, or TOKENBROKER_OLD_ENCRYPTION_KEYS); otherwise re-authorise the connection`,
      );
    }
  };
  return {
    ...row,
    access_token: open(row.access_token, "access_token"),
    refresh_token: open(row.refresh_token, "refresh_token"),
    id_token: row.id_token === null ? null : open(row.id_token, "id_token"),
  };
}
