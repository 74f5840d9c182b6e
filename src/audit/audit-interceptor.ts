import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import { principalKey } from "../auth/auth-interceptor.js";
import { firstMessage, selectorOf } from "../auth/first-message.js";
import type { AuditLog } from "./audit-log.js";

/** Options for {@link createAuditInterceptor}. */
export interface AuditInterceptorOptions {
  audit: AuditLog;
  /** Services whose calls are audited (default `tokenbroker.v1.TokenService`). */
  services?: readonly string[];
}

/** `GetToken` → `get_token`. */
function actionOf(method: string): string {
  return method.replace(/([a-z0-9])([A-Z])/g, "$1_$2").toLowerCase();
}

/**
 * A Connect interceptor that records every token handed out (one entry per
 * unary answer, one per message of a WatchToken stream) and every request a
 * key was not allowed to make, with the key's name, the tenant or connection
 * and the time, never the token. Place it before (outside) the auth
 * interceptor so that it sees PERMISSION_DENIED. Unauthenticated calls are not
 * recorded: they have no name to record, and anyone could fill the log.
 */
export function createAuditInterceptor(options: AuditInterceptorOptions): Interceptor {
  const services = new Set(options.services ?? ["tokenbroker.v1.TokenService"]);
  const { audit } = options;
  return (next) => async (req) => {
    if (!services.has(req.service.typeName)) return next(req);
    const action = actionOf(req.method.name);
    const { message, request } = await firstMessage(req);
    const selector = selectorOf(message);
    const tenantId = selector.case === "tenantId" ? selector.value.slice(0, 128) : undefined;
    const asked = selector.case === "connectionId" ? selector.value.slice(0, 128) : undefined;
    const actor = () => request.contextValues.get(principalKey)?.name;
    const handedOut = (token: { connectionId: string } | undefined) => {
      if (token) audit.record({ actor: actor(), action, tenantId, connectionId: token.connectionId, outcome: "ok" });
    };
    let res;
    try {
      res = await next(request);
    } catch (e) {
      if (e instanceof ConnectError && e.code === Code.PermissionDenied) {
        audit.record({ actor: actor(), action, tenantId, connectionId: asked, outcome: "permission_denied" });
      }
      throw e;
    }
    if (!res.stream) {
      handedOut((res.message as { token?: { connectionId: string } }).token);
      return res;
    }
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        for await (const m of messages) {
          handedOut((m as { token?: { connectionId: string } }).token);
          yield m;
        }
      })(),
    };
  };
}
