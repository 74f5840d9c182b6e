import { Code, ConnectError } from "@connectrpc/connect";
import type { RequestSelector } from "../auth/first-message.js";
import type { AuditLog } from "./audit-log.js";

/** What one TokenService call records in the audit log (see {@link auditCall}). */
export interface CallAudit {
  /** Records a token handed out (nothing for a message without a token). */
  handedOut(token: { connectionId: string } | undefined): void;
  /** Records the call's error if it is PERMISSION_DENIED (other errors are not audited). */
  failed(error: unknown): void;
}

/** `GetToken` → `get_token`. */
function actionOf(method: string): string {
  return method.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
}

/**
 * The audit entries of one TokenService call, shared by the Connect
 * interceptor and the gRPC fast path: the key's name (`actor`, read
 * when an entry is written), the tenant or connection asked for and the
 * outcome, never the token.
 */
export function auditCall(
  audit: AuditLog,
  method: string,
  selector: RequestSelector,
  actor: () => string | undefined,
): CallAudit {
  const action = actionOf(method);
  const tenantId = selector.case === "tenantId" ? selector.value.slice(0, 128) : undefined;
  const asked = selector.case === "connectionId" ? selector.value.slice(0, 128) : undefined;
  return {
    handedOut(token) {
      if (token) audit.record({ actor: actor(), action, tenantId, connectionId: token.connectionId, outcome: "ok" });
    },
    failed(e) {
      if (e instanceof ConnectError && e.code === Code.PermissionDenied) {
        audit.record({ actor: actor(), action, tenantId, connectionId: asked, outcome: "permission_denied" });
      }
    },
  };
}
