import { Code } from "@connectrpc/connect";
import type { RequestSelector } from "../auth/first-message.js";
import type { GuardStep } from "../server/call-guard.js";
import type { AuditLog } from "./audit-log.js";

/**
 * The guard step of the audit log: one entry per token handed out (one per
 * unary answer, one per message of a WatchToken stream) and one per request
 * a key was not allowed to make, with the key's name, the tenant or
 * connection and the time, never the token. Unauthenticated calls are not
 * recorded: they have no name to record, and anyone could fill the log.
 */
export function createAuditStep(audit: AuditLog): GuardStep {
  const actions = new Map<string, string>();
  const actionOf = (method: string): string => {
    let action = actions.get(method);
    if (action === undefined) {
      action = snakeCase(method);
      actions.set(method, action);
    }
    return action;
  };
  return {
    name: "audit",
    sent(call, token) {
      if (!token) return;
      audit.record({
        actor: call.principal?.name,
        action: actionOf(call.method),
        tenantId: tenantOf(call.selector),
        connectionId: token.connectionId,
        outcome: "ok",
      });
    },
    ended(call, error) {
      if (error?.code !== Code.PermissionDenied) return;
      const asked = call.selector.case === "connectionId" ? call.selector.value.slice(0, 128) : undefined;
      audit.record({
        actor: call.principal?.name,
        action: actionOf(call.method),
        tenantId: tenantOf(call.selector),
        connectionId: asked,
        outcome: "permission_denied",
      });
    },
  };
}

/** `GetToken` → `get_token`. */
function snakeCase(method: string): string {
  return method.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
}

function tenantOf(selector: RequestSelector): string | undefined {
  return selector.case === "tenantId" ? selector.value.slice(0, 128) : undefined;
}
