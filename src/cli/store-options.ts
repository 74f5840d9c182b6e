import { ConfigError } from "../config.js";
import type { TokenCipher } from "../crypto/token-cipher.js";
import type { Logger } from "../logger.js";
import { openSqliteStore, type SqliteStore } from "../store/sqlite-store.js";
import { DB } from "../settings/server-settings.js";
import { readSetting } from "../settings/setting.js";

/** The database path from `--db`, `TOKENBROKER_DB` or the default. */
export function dbPath(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  return readSetting(DB, { flags: { db: flag }, env });
}

/**
 * Opens the store (sealing tokens with `encryption` if given; `logger` hears
 * of refused token sets and files made private), turning a file-system
 * failure into a one-line ConfigError.
 */
export function openStoreOrExplain(path: string, encryption?: TokenCipher, logger?: Logger): SqliteStore {
  try {
    return openSqliteStore({ path, ...(encryption ? { encryption } : {}), ...(logger ? { logger } : {}) });
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new ConfigError(`cannot open database ${path}: ${why}`);
  }
}
