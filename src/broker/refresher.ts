import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import type { Clock } from "../clock.js";
import { BrokerError, customReauthorizationAdvice, needsReauthorizationError } from "../errors.js";
import type { Store } from "../store/store.js";
import { LeaseLostError } from "../store/token-set-store.js";
import { readStoredToken } from "./stored-token.js";
import type { TokenRecord } from "../token-set.js";
import { UpstreamError, type IdentityServer, type ObtainedTokenSet } from "../upstream/identity-server.js";
import { abortable, sleep } from "./abortable.js";
import { backoffDelay } from "./backoff.js";
import type { RefreshCause, RefreshListener, RefreshOutcome } from "./refresh-events.js";
import { SingleFlight } from "./single-flight.js";
import type { WatchHub } from "./watch-hub.js";

/** Tuning of {@link Refresher}. */
export interface RefresherOptions {
  /** How long a refresh lease lasts before another process may take over, ms (default 30 000). Keep it above the upstream timeout. */
  leaseTtlMs?: number;
  /** Upstream attempts within one refresh on transient errors (default 3). */
  attempts?: number;
  /** First retry delay, ms (default 250); doubles each attempt, with jitter. */
  retryBaseMs?: number;
  /** After a refresh failed transiently, no new attempt for this long, ms (default 1000, doubling per failure up to 60 000). */
  cooldownMs?: number;
  /** How often to look at another process's lease while waiting for it, ms (default 50). */
  leasePollMs?: number;
  /** Identifies this process in leases; default host:pid:random. */
  holderId?: string;
  /**
   * TEST-ONLY fault injection, never set in production: awaited after the
   * lease is committed and before the first request leaves, and after the
   * identity server answered and before the commit, so that a test can kill
   * the process at exactly those points (see `test/crash-safety.test.ts`).
   */
  testHooks?: RefreshTestHooks;
}

/** TEST-ONLY points of a refresh where a test may pause it (see {@link RefresherOptions.testHooks}). */
export interface RefreshTestHooks {
  /** The lease row is committed; nothing has been sent upstream yet. */
  afterLease?: (connectionId: string) => Promise<void>;
  /** The identity server answered (the old refresh token is spent); nothing is committed yet. */
  beforeCommit?: (connectionId: string) => Promise<void>;
}

/**
 * Performs refreshes: at most one per token set at a time in this process
 * (single-flight), and one across processes (a lease row in the store). The
 * new token set is committed before anyone sees it. A refresh is tied to the
 * version the caller saw: if the stored version has moved on, the stored token
 * is returned and nothing is sent upstream, so there is one refresh per expiry.
 */
export class Refresher {
  private readonly flights = new SingleFlight<string, TokenRecord>();
  private readonly failures = new Map<string, { count: number; at: number; waitMs: number; error: BrokerError }>();
  private readonly leaseTtlMs: number;
  private readonly attempts: number;
  private readonly retryBaseMs: number;
  private readonly cooldownMs: number;
  private readonly leasePollMs: number;
  private readonly testHooks: RefreshTestHooks;
  /** This process's name in leases. */
  readonly holderId: string;
  /** Set when the identity server rejected the client itself (invalid_client). */
  misconfiguration: string | undefined;
  /** Aborted by {@link stop}: no upstream attempt starts from then on. */
  private readonly stopping = new AbortController();
  /** Aborted at the shutdown deadline ({@link drain}): the requests still in flight are abandoned. */
  private readonly abandon = new AbortController();
  /** The version whose refresh token this process sent without committing an answer, by connection (see {@link spentByAnotherClient}). */
  private readonly sentUncommitted = new Map<string, number>();

  constructor(
    private readonly store: Pick<Store, "tokens" | "connections">,
    private readonly identity: IdentityServer,
    private readonly hub: WatchHub,
    private readonly clock: Clock,
    private readonly listener: RefreshListener = () => {},
    options: RefresherOptions = {},
  ) {
    this.leaseTtlMs = options.leaseTtlMs ?? 30_000;
    this.attempts = Math.max(1, options.attempts ?? 3);
    this.retryBaseMs = options.retryBaseMs ?? 250;
    this.cooldownMs = options.cooldownMs ?? 1000;
    this.leasePollMs = options.leasePollMs ?? 50;
    this.holderId = options.holderId ?? `${hostname()}:${process.pid}:${randomBytes(4).toString("hex")}`;
    this.testHooks = options.testHooks ?? {};
  }

  /**
   * Refreshes the connection's token set unless its stored version is already
   * newer than `seenVersion`. Concurrent calls for one connection share one
   * refresh. Throws {@link BrokerError} (needs_reauthorization, unavailable,
   * misconfigured, not_found, unreadable).
   */
  refresh(connectionId: string, cause: RefreshCause, seenVersion: number): Promise<TokenRecord> {
    return this.flights.run(connectionId, () => this.refreshOnce(connectionId, cause, seenVersion));
  }

  /** True while a refresh of this connection runs in this process. */
  isRefreshing(connectionId: string): boolean {
    return this.flights.has(connectionId);
  }

  /**
   * Shutdown, first step: from now on no upstream attempt starts. Refreshes
   * waiting for a retry or for another process's lease end at once with
   * `unavailable` ("shutting down"), releasing their lease; a request already
   * sent may still be answered and committed until {@link drain}'s deadline.
   */
  stop(): void {
    this.stopping.abort();
  }

  /** True once {@link stop} was called. */
  get stopped(): boolean {
    return this.stopping.signal.aborted;
  }

  /**
   * Resolves when every refresh running now has been committed or has failed.
   * With `deadline` (a shutdown: {@link stop} is implied): when it aborts, the
   * requests still in flight are abandoned (their connections closed, their
   * leases released, nothing committed) and their refreshes fail with
   * `unavailable`, so this resolves soon after the deadline whatever the
   * identity server does. The refresh token such a request carried may have
   * been spent: the next refresh uses it again, inside the identity server's
   * grace period, as after a crash.
   */
  async drain(deadline?: AbortSignal): Promise<void> {
    if (!deadline) return this.flights.drain();
    this.stop();
    const abandon = () => this.abandon.abort();
    if (deadline.aborted) abandon();
    else deadline.addEventListener("abort", abandon, { once: true });
    try {
      await this.flights.drain();
    } finally {
      deadline.removeEventListener("abort", abandon);
    }
  }

  private async refreshOnce(connectionId: string, cause: RefreshCause, seenVersion: number): Promise<TokenRecord> {
    const startedReal = performance.now();
    let attempts = 0;
    let fromVersion = seenVersion;
    let upstreamRefreshes = 0;
    const report = (outcome: RefreshOutcome, version: number, error?: string, spentElsewhere = false, spentByAnotherClient = false) =>
      this.listener({
        connectionId,
        cause,
        outcome,
        attempts,
        durationMs: Math.round(performance.now() - startedReal),
        version,
        fromVersion,
        upstreamRefreshes,
        ...(spentElsewhere ? { spentElsewhere: true as const } : {}),
        ...(spentByAnotherClient ? { spentByAnotherClient: true as const } : {}),
        ...(error === undefined ? {} : { error }),
      });

    for (;;) {
      const current = await this.load(connectionId);
      if (current.version > seenVersion) {
        report("already_fresh", current.version);
        return current;
      }
      if (current.state === "needs_reauthorization") throw needsReauthorizationError(connectionId, current.custom);
      if (this.stopped) throw shuttingDown(connectionId);
      this.checkCooldown(connectionId);

      const lease = await this.store.tokens.tryAcquireLease(connectionId, this.holderId, this.leaseTtlMs);
      if (!lease.acquired) {
        // Another process is refreshing: wait for its commit or for its lease to lapse.
        await sleep(this.leasePollMs, this.stopping.signal);
        // Real time: a wall clock that jumps must neither cut this wait short nor stretch it.
        if (performance.now() - startedReal > 4 * this.leaseTtlMs) {
          throw new BrokerError("unavailable", `another broker process has held the refresh of ${connectionId} for too long`);
        }
        continue;
      }
      // Re-read under the lease: another process may have committed just before we took it.
      const leased = await this.load(connectionId);
      if (leased.version > seenVersion || leased.state !== "active") {
        await this.store.tokens.releaseLease(connectionId, this.holderId);
        continue;
      }
      fromVersion = leased.version;
      // Whether this process already sent this version's refresh token (a refresh that failed transiently or was
      // abandoned at a shutdown): then an invalid_grant may answer our own earlier use, not another client's.
      const sentBefore = this.sentUncommitted.get(connectionId) === leased.version;
      await this.testHooks.afterLease?.(connectionId);
      /** Ends this refresh for the shutdown: nothing committed, the lease released for the next holder. */
      const giveUp = async (why: string): Promise<never> => {
        await this.store.tokens.releaseLease(connectionId, this.holderId);
        report("transient_error", leased.version, why);
        throw shuttingDown(connectionId);
      };

      for (;;) {
        if (this.stopped) await giveUp("shutting down");
        attempts++;
        try {
          this.sentUncommitted.set(connectionId, leased.version);
          const obtained = await this.requestAbandonedAtDeadline((signal) => this.renew(leased, signal));
          upstreamRefreshes++;
          await this.testHooks.beforeCommit?.(connectionId);
          const { xeroUserId: _u, authEventId: _a, ...tokenSet } = obtained;
          const record = await this.store.tokens.commitRefresh(connectionId, this.holderId, leased.version, tokenSet);
          this.failures.delete(connectionId);
          this.sentUncommitted.delete(connectionId);
          this.misconfiguration = undefined;
          this.hub.publish(record);
          report("ok", record.version);
          return record;
        } catch (e) {
          // The shutdown deadline passed while the identity server had not answered: the request was abandoned.
          if (this.abandon.signal.aborted && !(e instanceof LeaseLostError)) await giveUp("abandoned at the shutdown deadline");
          if (e instanceof LeaseLostError) {
            // We stalled past the lease and another process took over: its answer, not ours, is the one to keep.
            // Both spent the refresh token of this version if ours was answered: a double refresh.
            report("transient_error", leased.version, "lease lost to another process", upstreamRefreshes > 0);
            throw new BrokerError("unavailable", `another broker process took over the refresh of ${connectionId}`);
          }
          if (!(e instanceof UpstreamError)) {
            await this.store.tokens.releaseLease(connectionId, this.holderId);
            // A commit lost to another holder's commit of the same version: the refresh token was spent twice.
            const raced = upstreamRefreshes > 0 && (await this.storedVersion(connectionId)) > leased.version;
            report("transient_error", leased.version, e instanceof Error ? e.name : "error", raced);
            throw e;
          }
          if (e.kind === "invalid_grant") {
            this.sentUncommitted.delete(connectionId);
            const ownUseExcluded = attempts === 1 && !sentBefore && cause !== "recovery";
            const copySpent = ownUseExcluded && (await this.spentByAnotherClient(leased));
            await this.store.connections.markNeedsReauthorization(connectionId, copySpent ? SPENT_BY_ANOTHER_CLIENT : e.message);
            const marked = await this.load(connectionId);
            this.hub.publish(marked);
            report("invalid_grant", marked.version, copySpent ? SPENT_BY_ANOTHER_CLIENT : e.message, false, copySpent);
            throw needsReauthorizationError(connectionId);
          }
          if (e.kind === "invalid_client" && leased.custom) {
            // A custom connection's own app was rejected (its secret rotated at Xero): this connection alone is affected.
            await this.store.connections.markNeedsReauthorization(connectionId, customReauthorizationAdvice(leased.custom));
            const marked = await this.load(connectionId);
            this.hub.publish(marked);
            report("invalid_client", marked.version, e.message);
            throw needsReauthorizationError(connectionId, leased.custom);
          }
          if (e.kind === "invalid_client") {
            this.misconfiguration = e.message;
            await this.store.connections.recordError(connectionId, e.message);
            await this.store.tokens.releaseLease(connectionId, this.holderId);
            const error = new BrokerError(
              "misconfigured",
              "the identity server rejected tokenbroker's client id or secret (invalid_client): check TOKENBROKER_CLIENT_ID and TOKENBROKER_CLIENT_SECRET",
            );
            this.noteFailure(connectionId, undefined, error);
            report("invalid_client", leased.version, e.message);
            throw error;
          }
          const delay = Math.max(e.retryAfterMs ?? 0, backoffDelay(attempts - 1, this.retryBaseMs));
          // Give up for now when out of attempts, or when the wait would outlast the lease.
          if (attempts >= this.attempts || delay > this.leaseTtlMs / 2) {
            const error = new BrokerError("unavailable", `refreshing ${connectionId} failed: ${e.message}; will retry`, {
              cause: e,
            });
            await this.store.connections.recordError(connectionId, e.message);
            await this.store.tokens.releaseLease(connectionId, this.holderId);
            this.noteFailure(connectionId, e.retryAfterMs, error);
            report("transient_error", leased.version, e.message);
            throw error;
          }
          await sleep(delay, this.stopping.signal);
          if (this.stopped) await giveUp(`shutting down after: ${e.message}`);
          // Renew the lease before trying again, so no other process starts a second refresh.
          const renewed = await this.store.tokens.tryAcquireLease(connectionId, this.holderId, this.leaseTtlMs);
          if (!renewed.acquired) {
            report("transient_error", leased.version, "lease lost to another process");
            throw new BrokerError("unavailable", `another broker process took over the refresh of ${connectionId}`);
          }
        }
      }
    }
  }

  /**
   * Makes an upstream request with a signal of its own that aborts at the shutdown deadline (one per request:
   * a composite of the broker's long-lived signal would be held until the broker ends). Raced with the deadline
   * as well, so an identity server that ignores the signal is left behind all the same.
   */
  private async requestAbandonedAtDeadline<T>(request: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const own = new AbortController();
    const abandon = () => own.abort();
    this.abandon.signal.addEventListener("abort", abandon, { once: true });
    try {
      return await abortable(request(own.signal), this.abandon.signal);
    } finally {
      this.abandon.signal.removeEventListener("abort", abandon);
    }
  }

  /**
   * One request for the next token set: a refresh-token grant for a user's grant; for a custom connection, the
   * `client_credentials` grant with its own app's credentials (the client secret, kept as the record's
   * `refreshToken`, stays as it is).
   */
  private async renew(record: TokenRecord, signal: AbortSignal): Promise<ObtainedTokenSet> {
    if (!record.custom) return this.identity.refresh(record.refreshToken, { signal });
    const credentials = { clientId: record.custom.clientId, clientSecret: record.refreshToken };
    const obtained = await this.identity.clientCredentials(credentials, { signal });
    return { ...obtained, refreshToken: record.refreshToken };
  }

  /**
   * After an invalid_grant for a refresh token this broker never sent: asks the connections list with the
   * access token of the same token set while it is still valid. Listed tenants mean the grant is alive, so
   * the refresh token was not revoked but spent by someone else holding a copy of it. An expired access
   * token, a refusal or an empty list: a revocation, as before. (Any earlier use by the brokers themselves,
   * e.g. a request sent before a crash, was less than an access token's lifetime ago: inside Xero's grace
   * period, within which Xero accepts the same refresh token again.)
   */
  private async spentByAnotherClient(leased: TokenRecord): Promise<boolean> {
    if (leased.expiresAt <= this.clock.now()) return false;
    try {
      const listed = await this.requestAbandonedAtDeadline(() => this.identity.listConnections(leased.accessToken));
      return listed.length > 0;
    } catch {
      return false;
    }
  }

  private async load(connectionId: string): Promise<TokenRecord> {
    return readStoredToken(this.store.tokens, connectionId);
  }

  /** The stored version, or -1 if it cannot be read (only used to explain a failed commit). */
  private async storedVersion(connectionId: string): Promise<number> {
    const record = await this.store.tokens.getToken(connectionId).catch(() => undefined);
    return record?.version ?? -1;
  }

  private checkCooldown(connectionId: string): void {
    const failure = this.failures.get(connectionId);
    const elapsed = failure ? this.clock.now() - failure.at : 0;
    // A clock that went back (elapsed < 0) ends the cool-down rather than stretching it.
    if (failure && elapsed >= 0 && elapsed < failure.waitMs) {
      // Callers during the cool-down learn what the last attempt learnt.
      const seconds = Math.ceil((failure.waitMs - elapsed) / 1000);
      throw new BrokerError(failure.error.kind, `${failure.error.message} (next attempt in ${seconds}s)`);
    }
  }

  private noteFailure(connectionId: string, retryAfterMs: number | undefined, error: BrokerError): void {
    const count = (this.failures.get(connectionId)?.count ?? 0) + 1;
    const wait = Math.max(retryAfterMs ?? 0, backoffDelay(count - 1, this.cooldownMs, 60_000));
    this.failures.set(connectionId, { count, at: this.clock.now(), waitMs: wait, error });
  }
}

/** The connection's last error when its refresh token was spent by another client (no secrets). */
export const SPENT_BY_ANOTHER_CLIENT =
  "Xero refused the refresh token (invalid_grant) although tokenbroker never used it and the grant is still alive: " +
  "another client holding a copy of this refresh token spent it (an old script, a second integration or a copied database). " +
  "Find and stop that client, then re-authorise the connection";

/** What the callers of a refresh ended by the shutdown get. */
function shuttingDown(connectionId: string): BrokerError {
  return new BrokerError(
    "unavailable",
    `tokenbroker is shutting down: the refresh of ${connectionId} was not finished (the next start or another broker process finishes it)`,
  );
}
