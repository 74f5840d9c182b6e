import type { Interceptor } from "@connectrpc/connect";
import { principalKey } from "../auth/auth-interceptor.js";
import { firstMessage, selectorOf } from "../auth/first-message.js";
import { auditCall } from "./audit-call.js";
import type { AuditLog } from "./audit-log.js";

/** Options for {@link createAuditInterceptor}. */
export interface AuditInterceptorOptions {
  audit: AuditLog;
  /** Services whose calls are audited (default `tokenbroker.v1.TokenService`). */
  services?: readonly string[];
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
    const { message, request } = await firstMessage(req);
    const call = auditCall(audit, req.method.name, selectorOf(message), () => request.contextValues.get(principalKey)?.name);
    let res;
    try {
      res = await next(request);
    } catch (e) {
      call.failed(e);
      throw e;
    }
    if (!res.stream) {
      call.handedOut((res.message as { token?: { connectionId: string } }).token);
      return res;
    }
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        for await (const m of messages) {
          call.handedOut((m as { token?: { connectionId: string } }).token);
          yield m;
        }
      })(),
    };
  };
}
