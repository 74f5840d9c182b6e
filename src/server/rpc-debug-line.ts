import type { Logger } from "../logger.js";
import { statusName, type GuardStep } from "./call-guard.js";

/**
 * The guard step of the debug log: one line per TokenService call once it
 * ended (streams: when they end), refusals included: method, key name,
 * tenant or connection, status (`ok`, `PermissionDenied`…) and duration;
 * never a header or a token. Nothing is done unless the logger's level is
 * debug.
 */
export function createDebugLineStep(logger: Logger): GuardStep {
  return {
    name: "debug-line",
    ended(call, error) {
      if (!logger.isLevelEnabled("debug")) return;
      const { selector } = call;
      const code = statusName(error);
      logger.debug(
        {
          event: "rpc",
          method: call.method,
          key: call.principal?.name,
          [selector.case ?? "selector"]: selector.case === undefined ? "none" : selector.value.slice(0, 128),
          code,
          ms: Math.round(performance.now() - call.started),
        },
        `${call.method} ${code}`,
      );
    },
  };
}
