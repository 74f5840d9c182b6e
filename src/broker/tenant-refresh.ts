import { tenantOf } from "../upstream/parse-connections.js";
import { createHash } from "node:crypto";
import type { Clock } from "../clock.js";
import { tenantRemovedError } from "../errors.js";
import type { TenantCheckState } from "../store/connection-store.js";
import type { Store } from "../store/store.js";
import type { Tenant } from "../token-set.js";
import type { IdentityServer } from "../upstream/identity-server.js";
import type { WatchHub } from "./watch-hub.js";

/** Options for {@link TenantRefresh}. */
export interface TenantRefreshOptions {
  /** How often each active connection's organisations are re-read from Xero's `/connections`, ms (default 1 hour). */
  intervalMs?: number;
  /** How often the connections are looked at for a re-read that is due, ms (default a sixtieth of the interval, between 1 s and 60 s). */
  tickMs?: number;
  /** {@link TenantRefresh.recheck} re-reads a connection at most this often, ms (default 60 000): a burst of 403s makes one call. */
  minRecheckMs?: number;
  /** The access token must stay valid this long to be used for a re-read, ms (default 60 000); else the re-read waits for the next refresh. */
  validityMarginMs?: number;
  /** Told of every re-read (logs, metrics). Must not throw. */
  listener?: TenantCheckListener;
}

/** How one re-read of a connection's organisations went. No secrets. */
export interface TenantCheckEvent {
  connectionId: string;
  /** `periodic`: the hourly re-read; `recheck`: asked for (a 403 from Xero for one of its tenants). */
  cause: "periodic" | "recheck";
  /**
   * `checked`: Xero's list was read and stored; `no_valid_token`: skipped, the access token is expired or about
   * to (never refreshed just for this: the re-read happens after the next refresh); `failed`: Xero's list could
   * not be read (`error` says why); the next re-read is an interval later.
   */
  outcome: "checked" | "no_valid_token" | "failed";
  /** Tenants Xero no longer lists: now marked removed at Xero. */
  removed: Tenant[];
  /** Tenants the grant gained (a consent elsewhere, a demo company reset to a new tenant id): now served. */
  added: Tenant[];
  error?: string;
}

/** Receives {@link TenantCheckEvent}s; must not throw. */
export type TenantCheckListener = (event: TenantCheckEvent) => void;

/** What {@link TenantRefresh.recheck} did. */
export interface RecheckResult {
  /** False when nothing was read: no valid access token, a re-read less than `minRecheckMs` ago, or another broker's at that moment. */
  checked: boolean;
  removed: Tenant[];
  added: Tenant[];
}

/**
 * Re-reads every active connection's organisations from Xero's connections
 * list: periodically (each connection once per interval, spread over it, one
 * connection at a time), and when asked ({@link recheck}: the API proxy got a
 * 403 for a tenant). A tenant Xero no longer lists is marked removed
 * (GetToken answers `not_found` "disconnected at Xero", its watchers are ended
 * with that error); one the grant gained is added. Uses the stored access
 * token only while it is valid, never refreshing for this. Among brokers
 * sharing a store, one does each re-read: a compare-and-set on the
 * connection's last claim.
 */
export class TenantRefresh {
  private readonly intervalMs: number;
  private readonly tickMs: number;
  private readonly minRecheckMs: number;
  private readonly validityMarginMs: number;
  private readonly listener: TenantCheckListener;
  private readonly startedAt: number;
  private readonly running = new Map<string, Promise<RecheckResult>>();
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private stopped = false;

  constructor(
    private readonly store: Pick<Store, "tokens" | "connections">,
    private readonly identity: Pick<IdentityServer, "listConnections">,
    private readonly hub: WatchHub,
    private readonly clock: Clock,
    options: TenantRefreshOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 60 * 60_000;
    this.tickMs = options.tickMs ?? Math.min(60_000, Math.max(1000, this.intervalMs / 60));
    this.minRecheckMs = options.minRecheckMs ?? 60_000;
    this.validityMarginMs = options.validityMarginMs ?? 60_000;
    this.listener = options.listener ?? (() => {});
    this.startedAt = clock.now();
  }

  /** Runs {@link tick} every `tickMs` until {@link stop}. */
  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => void this.tick(), this.tickMs);
    this.timer.unref();
  }

  /** Stops the timer and waits for the re-reads under way; {@link tick} and {@link recheck} still work when called. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    await Promise.allSettled([this.ticking, ...this.running.values()]);
  }

  /**
   * One pass: re-reads each connection whose re-read is due, one at a time,
   * and ends this process's watchers of tenants another broker found removed.
   * Overlapping calls share the running pass. Never throws.
   */
  tick(): Promise<void> {
    this.ticking ??= this.pass().finally(() => (this.ticking = undefined));
    return this.ticking;
  }

  /**
   * Re-reads the connection's organisations now, whatever the interval (the
   * entry point for a 403 `AuthenticationUnsuccessful` from Xero's API for one
   * of its tenants). At most once per `minRecheckMs` per connection across the
   * brokers sharing the store, and only with a valid access token; concurrent
   * calls share one re-read. Never throws: a failure is reported to the
   * listener and answered `checked: false`.
   */
  recheck(connectionId: string): Promise<RecheckResult> {
    return this.once(connectionId, "recheck", this.minRecheckMs);
  }

  /**
   * {@link recheck} for the connection that serves `tenantId` (what a 403 for that tenant names); `checked:
   * false` when no connection serves it.
   */
  async recheckTenant(tenantId: string): Promise<RecheckResult> {
    const connectionId = await this.store.connections.findConnectionByTenant(tenantId).catch(() => undefined);
    return connectionId === undefined ? { checked: false, removed: [], added: [] } : this.recheck(connectionId);
  }

  private async pass(): Promise<void> {
    try {
      for (const c of await this.store.connections.listTenantChecks()) {
        if (this.due(c.connectionId, c.claimedAt)) await this.once(c.connectionId, "periodic", this.intervalMs, c);
      }
      await this.endRemovedWatchers();
    } catch {
      // The store is unreachable: the next pass tries again.
    }
  }

  /**
   * Due once an interval has passed since the last claim. A connection never
   * checked (stored before this existed) is due at a moment of the first
   * interval picked from its id, so that not all are re-read at once.
   */
  private due(connectionId: string, claimedAt: number | undefined): boolean {
    const now = this.clock.now();
    if (claimedAt !== undefined) return now - claimedAt >= this.intervalMs;
    const spread = createHash("sha256").update(connectionId).digest().readUInt32BE(0) / 2 ** 32;
    return now >= this.startedAt + spread * this.intervalMs;
  }

  private once(connectionId: string, cause: TenantCheckEvent["cause"], minGapMs: number, known?: TenantCheckState): Promise<RecheckResult> {
    let run = this.running.get(connectionId);
    if (!run) {
      run = this.check(connectionId, cause, minGapMs, known).finally(() => this.running.delete(connectionId));
      this.running.set(connectionId, run);
    }
    return run;
  }

  private async check(
    connectionId: string,
    cause: TenantCheckEvent["cause"],
    minGapMs: number,
    known: TenantCheckState | undefined,
  ): Promise<RecheckResult> {
    const none: RecheckResult = { checked: false, removed: [], added: [] };
    const report = (outcome: TenantCheckEvent["outcome"], removed: Tenant[] = [], added: Tenant[] = [], error?: string) =>
      this.listener({ connectionId, cause, outcome, removed, added, ...(error === undefined ? {} : { error }) });
    try {
      const record = await this.store.tokens.getToken(connectionId);
      if (record?.state !== "active") return none;
      if (record.expiresAt - this.clock.now() < this.validityMarginMs) {
        report("no_valid_token");
        return none;
      }
      const claim = known ?? (await this.store.connections.listTenantChecks()).find((c) => c.connectionId === connectionId);
      if (!claim) return none;
      if (claim.claimedAt !== undefined && this.clock.now() - claim.claimedAt < minGapMs) return none;
      // One broker of those sharing the store: the claim is a compare-and-set on what was just read.
      if (!(await this.store.connections.claimTenantCheck(connectionId, claim.claimedAt))) return none;
      const listed = (await this.identity.listConnections(record.accessToken)).map(tenantOf);
      if (listed.length === 0) {
        // Xero lists nothing when the grant was revoked (or lost its last organisation, which ends it too): that
        // is the refresh's to find (needs re-authorisation), not a reason to call every organisation removed.
        report("failed", [], [], "Xero lists no organisation for this grant (revoked?): left to the next refresh");
        return none;
      }
      const { gone, added } = await this.store.connections.syncTenants(connectionId, listed);
      const goneAt = this.clock.now();
      for (const t of gone) {
        this.hub.endTenant(connectionId, t.tenantId, tenantRemovedError({ ...t, connectionId, goneAt }));
      }
      report("checked", gone, added);
      return { checked: true, removed: gone, added };
    } catch (e) {
      report("failed", [], [], e instanceof Error ? e.message : "unknown error");
      return none;
    }
  }

  /** Watchers in this process of a tenant no longer served (another broker may have found it removed) are ended. */
  private async endRemovedWatchers(): Promise<void> {
    for (const connectionId of [...this.hub.watched()]) {
      const watched = this.hub.tenantsWatched(connectionId);
      if (watched.size === 0) continue;
      const record = await this.store.tokens.getToken(connectionId).catch(() => undefined);
      if (!record) continue;
      for (const tenantId of watched) {
        if (record.tenantIds.includes(tenantId)) continue;
        const removed = await this.store.connections.findRemovedTenant(tenantId);
        if (removed?.connectionId === connectionId) this.hub.endTenant(connectionId, tenantId, tenantRemovedError(removed));
      }
    }
  }
}
