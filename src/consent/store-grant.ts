import { tenantOf } from "../upstream/parse-connections.js";
import type { Store } from "../store/store.js";
import type { Tenant } from "../token-set.js";
import type { IdentityServer, ObtainedTokenSet } from "../upstream/identity-server.js";

/** What {@link storeGrant} stored. */
export interface StoredGrant {
  connectionId: string;
  /** False when the same Xero user's existing connection got the new token set. */
  created: boolean;
  xeroUserId: string | undefined;
  /** Every tenant the grant reaches now, as Xero lists them. */
  tenants: Tenant[];
  /** The tenants this consent connected (its `authentication_event_id`); empty when not asked for. */
  added: Tenant[];
  /** Tenants the connection had that Xero no longer lists: now marked gone. */
  gone: Tenant[];
  /** Set when the token set was stored but the tenants could not be read. */
  tenantsError?: string;
}

/**
 * Stores a token set just obtained (by an import or a consent) and the
 * grant's tenants. A token set of a Xero user the broker already holds
 * replaces that user's token set: two users' token sets never mix, one user
 * never has two. The token set is committed before the tenants are read, so a
 * failure there loses nothing. The full connections list is read every time,
 * so tenants that vanished at Xero are marked gone; with `addedBy`, the
 * tenants of that consent are read too (`?authEventId=`).
 */
export async function storeGrant(
  store: Pick<Store, "connections">,
  identity: IdentityServer,
  obtained: ObtainedTokenSet,
  options: { addedBy?: string | undefined } = {},
): Promise<StoredGrant> {
  const { xeroUserId, authEventId: _event, userName, ...tokenSet } = obtained;
  const { connectionId, created } = await store.connections.saveConnection({ xeroUserId, userName, tokenSet, tenants: [] });
  const result: StoredGrant = { connectionId, created, xeroUserId, tenants: [], added: [], gone: [] };
  try {
    const all = (await identity.listConnections(tokenSet.accessToken)).map(tenantOf);
    const { gone } = await store.connections.syncTenants(connectionId, all);
    result.tenants = all;
    result.gone = gone;
    if (options.addedBy !== undefined) {
      const event = options.addedBy;
      const added = await identity.listConnections(tokenSet.accessToken, { authEventId: event });
      // Filtered here too: a proxy or an older server may ignore the query parameter.
      result.added = added.filter((c) => c.authEventId === event).map(tenantOf);
    }
  } catch (e) {
    result.tenantsError = e instanceof Error ? e.message : "unknown error";
  }
  return result;
}
