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
  /** The stored version this refresh replaced, or tried to (the expiry it is for). */
  fromVersion: number;
  /** Token responses the identity server returned in this refresh: each spent the refresh token once (normally 1 for `ok`, 0 otherwise). */
  upstreamRefreshes: number;
  /**
   * Set when this refresh spent the refresh token and another holder refreshed
   * the same version too (it took over the lease, or committed first): the
   * refresh token was spent twice for one expiry.
   */
  spentElsewhere?: true;
  /**
   * Set with `invalid_grant` when the refused refresh token was one the brokers never sent and the grant is
   * still alive (its access token still lists tenants): another client holding a copy of the refresh token
   * spent it. The connection needs re-authorisation; an operator should find that client.
   */
  spentByAnotherClient?: true;
  /** Safe description of the last error, if any. */
  error?: string;
}

/** Receives refresh events; must not throw. */
export type RefreshListener = (event: RefreshEvent) => void;

/** A caller that had to wait for a refresh before it got its token. */
export interface RefreshWaitEvent {
  connectionId: string;
  /** `caller` (GetToken, WatchToken's first token) or `report` (ReportExpired). */
  cause: Extract<RefreshCause, "caller" | "report">;
  /** How long the caller waited, ms (real time). */
  waitedMs: number;
  /** `ok` when the caller got a refreshed token; `error` when the refresh failed or the caller gave up. */
  outcome: "ok" | "error";
}

/** Receives a wait event each time a caller waited for a refresh; must not throw. */
export type RefreshWaitListener = (event: RefreshWaitEvent) => void;
