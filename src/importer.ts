import { storeGrant } from "./consent/store-grant.js";
import type { Store } from "./store/store.js";
import type { Tenant } from "./token-set.js";
import type { IdentityServer } from "./upstream/identity-server.js";

/** What {@link importRefreshToken} stored. */
export interface ImportResult {
  connectionId: string;
  /** False when the same Xero user's existing connection was replaced. */
  created: boolean;
  xeroUserId: string | undefined;
  tenants: Tenant[];
  /** Set when the token set was stored but the tenants could not be read. */
  tenantsError?: string;
}

/**
 * Takes over a token set from another system: spends its refresh token at once
 * (so the broker alone holds the live one), stores the new token set, then
 * reads the grant's tenants from the connections endpoint and stores them
 * (tenants the connection had that Xero no longer lists are marked gone).
 * The token set is stored before the tenants are read, so a failure there
 * loses nothing.
 */
export async function importRefreshToken(
  store: Pick<Store, "connections">,
  identity: IdentityServer,
  refreshToken: string,
): Promise<ImportResult> {
  const obtained = await identity.refresh(refreshToken);
  const { connectionId, created, xeroUserId, tenants, tenantsError } = await storeGrant(store, identity, obtained);
  return { connectionId, created, xeroUserId, tenants, ...(tenantsError === undefined ? {} : { tenantsError }) };
}
