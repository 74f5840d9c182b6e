import type { Store } from "../store/store.js";
import type { Tenant } from "../token-set.js";
import type { IdentityServer, XeroConnection } from "../upstream/identity-server.js";

/** What {@link addCustomConnection} is given: the operator's name for it and the custom connection app's credentials. */
export interface CustomConnectionInput {
  /** The operator's name for it; adding the same name again replaces it (how one brought back after a secret rotation). */
  name: string;
  /** The custom connection app's client id. */
  clientId: string;
  /** Its client secret: stored sealed, never shown. */
  clientSecret: string;
}

/** What {@link addCustomConnection} stored. */
export interface AddedCustomConnection {
  connectionId: string;
  /** False when a custom connection of that name was replaced. */
  created: boolean;
  /** The organisations its token reaches, as Xero's connections endpoint lists them. */
  tenants: Tenant[];
  /** Tenants it had that Xero no longer lists: now marked gone. */
  gone: Tenant[];
}

/**
 * Registers a Xero custom connection: obtains a token with the `client_credentials` grant and the app's own
 * credentials, reads Xero's connections endpoint to learn its organisation(s), then stores the connection (the
 * client secret sealed as its token set's renewal credential) with its tenants. Nothing is stored when either call
 * fails: the {@link UpstreamError} is thrown (its message names no secret).
 */
export async function addCustomConnection(
  store: Pick<Store, "connections">,
  identity: IdentityServer,
  input: CustomConnectionInput,
): Promise<AddedCustomConnection> {
  const obtained = await identity.clientCredentials({ clientId: input.clientId, clientSecret: input.clientSecret });
  const tenants = (await identity.listConnections(obtained.accessToken)).map(toTenant);
  const { xeroUserId: _u, authEventId: _a, userName: _n, ...tokenSet } = obtained;
  const { connectionId, created } = await store.connections.saveConnection({
    xeroUserId: undefined,
    tokenSet: { ...tokenSet, refreshToken: input.clientSecret },
    tenants: [],
    custom: { name: input.name, clientId: input.clientId },
  });
  const { gone } = await store.connections.syncTenants(connectionId, tenants);
  return { connectionId, created, tenants, gone };
}

function toTenant(c: XeroConnection): Tenant {
  return { tenantId: c.tenantId, xeroConnectionId: c.id, tenantName: c.tenantName, tenantType: c.tenantType, authEventId: c.authEventId };
}
