import type { Logger } from "../logger.js";
import type { GuardCounts } from "./connection-guard.js";

/** What each counter of the connection limits means in a log line. */
const MESSAGES: Record<keyof GuardCounts, string> = {
  refusedConnections: "connection refused: its address has too many open (--max-connections-per-address)",
  headerTimeouts: "connection closed: no complete request headers in time (--header-timeout)",
  idleTimeouts: "connection closed: idle (--idle-timeout)",
  resetStreams: "HTTP/2 stream reset: its connection holds too many request bytes (--max-connection-buffer-kib)",
  requestTimeouts: "request dropped: its body did not arrive in time (--request-timeout)",
};

/**
 * A warning per kind of limit hit, at most one a minute per kind: the first
 * at once, then one saying how many more there were (a flood of slow sockets
 * writes a few lines, not one per socket). Idle timeouts are routine and
 * logged at debug level.
 */
export function limitLog(logger: Logger, everyMs = 60_000): (kind: keyof GuardCounts, address: string | undefined) => void {
  const last = new Map<keyof GuardCounts, { at: number; since: number }>();
  return (kind, address) => {
    const now = Date.now();
    const seen = last.get(kind);
    if (seen && now - seen.at < everyMs) {
      seen.since++;
      return;
    }
    last.set(kind, { at: now, since: 0 });
    const level = kind === "idleTimeouts" ? "debug" : "warn";
    logger[level]({ event: "limit", limit: kind, address, moreSinceLastLine: seen?.since ?? 0 }, MESSAGES[kind]);
  };
}
