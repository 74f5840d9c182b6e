import { ConfigError } from "../config.js";
import type { TokenCipher } from "../crypto/token-cipher.js";
import type { Logger } from "../logger.js";
import { openStore } from "../store/open-store.js";
import type { Store, StoreOptions } from "../store/store.js";
import { describeLocation, withoutPassword } from "../store/store-location.js";
import { DB } from "../settings/server-settings.js";
import { readSetting } from "../settings/setting.js";

/** The database path from `--db`, `TOKENBROKER_DB` or the default. */
export function dbPath(flag: string | undefined, env: NodeJS.ProcessEnv): string {
  return readSetting(DB, { flags: { db: flag }, env });
}

/**
 * Opens the store (sealing tokens with `encryption` if given; `logger` hears
 * of refused token sets and files made private), turning a file-system or
 * connection failure into a one-line ConfigError that shows no password.
 */
export async function openStoreOrExplain(
  path: string,
  encryption?: TokenCipher,
  logger?: Logger,
  options: StoreOptions = {},
): Promise<Store> {
  try {
    return await openStore(path, { ...options, ...(encryption ? { encryption } : {}), ...(logger ? { logger } : {}) });
  } catch (e) {
    const why = withoutPassword(e instanceof Error ? e.message : String(e), path);
    throw new ConfigError(`cannot open database ${describeLocation(path)}: ${why}`);
  }
}
