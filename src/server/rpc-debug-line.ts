import type { RequestSelector } from "../auth/first-message.js";
import type { Logger } from "../logger.js";

/**
 * Starts the debug line of one TokenService call, shared by the Connect
 * interceptor and the gRPC fast path: the returned function, called
 * once the call ended (streams: when they end) with its status (`ok`,
 * `PermissionDenied`…), logs method, key name, tenant or connection, status
 * and duration (since `started`, default now); never a header or a token.
 */
export function startRpcDebugLine(
  logger: Logger,
  method: string,
  selector: RequestSelector,
  key: () => string | undefined,
  started: number = performance.now(),
): (code: string) => void {
  return (code) =>
    logger.debug(
      {
        event: "rpc",
        method,
        key: key(),
        [selector.case ?? "selector"]: selector.case === undefined ? "none" : selector.value.slice(0, 128),
        code,
        ms: Math.round(performance.now() - started),
      },
      `${method} ${code}`,
    );
}
