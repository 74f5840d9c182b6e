import { BrokerError } from "../errors.js";
import { UnreadableTokenSetError, type TokenSetStore } from "../store/token-set-store.js";
import type { TokenRecord } from "../token-set.js";

/**
 * The stored token set of a connection, read for serving or refreshing:
 * `not_found` if there is none, `unreadable` (with the store's secret-free
 * message) if the store refused it, so that it is neither served nor
 * refreshed with and the caller learns what the operator must do.
 */
export async function readStoredToken(tokens: TokenSetStore, connectionId: string): Promise<TokenRecord> {
  let record: TokenRecord | undefined;
  try {
    record = await tokens.getToken(connectionId);
  } catch (e) {
    if (e instanceof UnreadableTokenSetError) throw new BrokerError("unreadable", e.message, { cause: e });
    throw e;
  }
  if (!record) throw new BrokerError("not_found", `connection ${connectionId} not found`);
  return record;
}
