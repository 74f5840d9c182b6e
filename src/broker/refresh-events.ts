/** Why a refresh was started. */
export type RefreshCause =
  /** A caller needed a token that was expired or about to expire. */
  | "caller"
  /** A caller reported the current token as rejected (401). */
  | "report"
  /** The scheduler refreshed a token set in use shortly before it expired. */
  | "proactive"
  /** The scheduler refreshed an idle token set before its refresh token dies. */
  | "keepalive"
  /** A refresh interrupted by a crash or a dead process is being finished. */
  | "recovery";

/** How a refresh ended. */
export type RefreshOutcome =
  | "ok"
  /** Another process (or an earlier task) had already refreshed: no upstream call. */
  | "already_fresh"
  | "invalid_grant"
  | "invalid_client"
  | "transient_error";

/** One finished refresh, reported to logs and metrics. No secrets. */
export interface RefreshEvent {
  connectionId: string;
  cause: RefreshCause;
  outcome: RefreshOutcome;
  /** Upstream attempts made (0 when another holder refreshed first). */
  attempts: number;
  durationMs: number;
  /** The version now stored. */
  version: number;
  /** Safe description of the last error, if any. */
  error?: string;
}

/** Receives refresh events; must not throw. */
export type RefreshListener = (event: RefreshEvent) => void;
