import type { Tenant } from "../token-set.js";
import type { XeroConnection } from "./identity-server.js";
import { UpstreamError } from "./identity-server.js";

/**
 * Validates the JSON body of Xero's connections endpoint: an array of
 * `{ id, tenantId, tenantType, tenantName, authEventId, … }`.
 */
export function parseConnections(body: unknown): XeroConnection[] {
  if (!Array.isArray(body)) {
    throw new UpstreamError("transient", "connections endpoint returned something other than a list");
  }
  return body.map((entry: unknown) => {
    const e = (typeof entry === "object" && entry !== null ? entry : {}) as Record<string, unknown>;
    if (typeof e["tenantId"] !== "string" || typeof e["id"] !== "string") {
      throw new UpstreamError("transient", "connections endpoint returned an entry without id or tenantId");
    }
    return {
      id: e["id"],
      tenantId: e["tenantId"],
      tenantType: typeof e["tenantType"] === "string" ? e["tenantType"] : "ORGANISATION",
      tenantName: typeof e["tenantName"] === "string" ? e["tenantName"] : undefined,
      authEventId: typeof e["authEventId"] === "string" ? e["authEventId"] : undefined,
    };
  });
}

/** One entry of Xero's connections list as the tenant the store keeps. */
export function tenantOf(c: XeroConnection): Tenant {
  return {
    tenantId: c.tenantId,
    xeroConnectionId: c.id,
    tenantName: c.tenantName,
    tenantType: c.tenantType,
    authEventId: c.authEventId,
  };
}
