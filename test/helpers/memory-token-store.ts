/**
 * An in-memory {@link TokenStore} for unit tests of the token logic: the token sets, their versions and the
 * refresh leases behave as in the SQLite store (same lease rules, same version check at commit), with no file
 * and no driver. Several brokers may share one instance, as processes share a database file.
 *
 * Only what the broker, refresher and scheduler use is implemented; the consent, tenant-sync and removal methods
 * throw. (When the store is split into interfaces, this implements the token-set part only.)
 */
import { randomUUID } from "node:crypto";
import type { Clock } from "../../src/clock.js";
import type { ConnectionStore, ConnectionSummary, SaveConnectionInput } from "../../src/store/connection-store.js";
import type { Store } from "../../src/store/store.js";
import { LeaseLostError, type LeaseResult, type TokenSetStore, type TokenState } from "../../src/store/token-set-store.js";

/** The two parts of the store the token logic uses, as one object (what the memory store implements). */
export type TokenStore = TokenSetStore & ConnectionStore;
import type { ConnectionState, CustomConnection, NewTokenSet, Tenant, TokenRecord, TokenSet } from "../../src/token-set.js";

interface Row {
  connectionId: string;
  xeroUserId: string | undefined;
  authorizedAt: number;
  state: ConnectionState;
  version: number;
  tokenSet: TokenSet;
  tenants: Tenant[];
  lastRefreshAt: number | undefined;
  lastError: string | undefined;
  /** Set for a custom connection (found again by its name). */
  custom?: CustomConnection;
}

interface Lease {
  holder: string;
  acquiredAt: number;
  expiresAt: number;
}

/** Counts of what the store was asked, for tests that prove something was not done. */
export interface MemoryStoreCounts {
  commits: number;
  leasesTaken: number;
  getToken: number;
}

/** See the file comment. */
export class MemoryTokenStore implements TokenStore {
  /** This store as the parts `TokenBroker` and `Refresher` take. */
  get parts(): Pick<Store, "tokens" | "connections"> {
    return { tokens: this, connections: this };
  }

  private readonly rows = new Map<string, Row>();
  private readonly leases = new Map<string, Lease>();
  readonly counts: MemoryStoreCounts = { commits: 0, leasesTaken: 0, getToken: 0 };

  constructor(private readonly clock: Clock) {}

  /** The lease of a connection as stored (holder and times), or undefined. */
  lease(connectionId: string): Readonly<Lease> | undefined {
    return this.leases.get(connectionId);
  }

  /** The last refresh error recorded for operators. */
  lastError(connectionId: string): string | undefined {
    return this.rows.get(connectionId)?.lastError;
  }

  async findConnectionByTenant(tenantId: string): Promise<string | undefined> {
    let found: Row | undefined;
    for (const row of this.rows.values()) {
      if (!row.tenants.some((t) => t.tenantId === tenantId)) continue;
      const better = !found || (row.state === "active" && (found.state !== "active" || row.authorizedAt >= found.authorizedAt));
      if (better) found = row;
    }
    return found?.connectionId;
  }

  async getToken(connectionId: string): Promise<TokenRecord | undefined> {
    this.counts.getToken++;
    const row = this.rows.get(connectionId);
    return row && toRecord(row);
  }

  async saveConnection(input: SaveConnectionInput): Promise<{ connectionId: string; created: boolean }> {
    const now = this.clock.now();
    const custom = input.custom;
    const existing = custom
      ? [...this.rows.values()].find((r) => r.custom?.name === custom.name)
      : input.xeroUserId === undefined
        ? undefined
        : [...this.rows.values()].find((r) => r.xeroUserId === input.xeroUserId);
    if (existing) {
      Object.assign(existing, { state: "active", authorizedAt: now, tokenSet: { ...input.tokenSet }, lastError: undefined });
      if (custom) existing.custom = { ...custom };
      existing.version++;
      this.leases.delete(existing.connectionId);
      this.mergeTenants(existing, input.tenants);
      return { connectionId: existing.connectionId, created: false };
    }
    const row: Row = {
      connectionId: randomUUID(),
      xeroUserId: input.xeroUserId,
      authorizedAt: now,
      state: "active",
      version: 1,
      tokenSet: { ...input.tokenSet },
      tenants: [],
      lastRefreshAt: undefined,
      lastError: undefined,
      ...(custom ? { custom: { ...custom } } : {}),
    };
    this.mergeTenants(row, input.tenants);
    this.rows.set(row.connectionId, row);
    return { connectionId: row.connectionId, created: true };
  }

  async saveTenants(connectionId: string, tenants: Tenant[]): Promise<void> {
    this.mergeTenants(this.row(connectionId), tenants);
  }

  async tryAcquireLease(connectionId: string, holder: string, ttlMs: number): Promise<LeaseResult> {
    const now = this.clock.now();
    const lease = this.leases.get(connectionId);
    // As the SQLite store: free, lapsed, already ours, or taken further "in the future" than a lease lasts (the clock went back).
    if (!lease || lease.expiresAt <= now || lease.holder === holder || wentBack(lease, now)) {
      this.leases.set(connectionId, { holder, acquiredAt: now, expiresAt: now + ttlMs });
      this.counts.leasesTaken++;
      return { acquired: true };
    }
    return { acquired: false, holder: lease.holder, expiresAt: lease.expiresAt };
  }

  async releaseLease(connectionId: string, holder: string): Promise<void> {
    if (this.leases.get(connectionId)?.holder === holder) this.leases.delete(connectionId);
  }

  async commitRefresh(connectionId: string, holder: string, fromVersion: number, tokenSet: NewTokenSet): Promise<TokenRecord> {
    // A lapsed lease nobody took over still counts as held.
    if (this.leases.get(connectionId)?.holder !== holder) {
      throw new LeaseLostError(`the refresh lease of ${connectionId} is no longer held by this process`);
    }
    const row = this.row(connectionId);
    if (row.version !== fromVersion) {
      throw new Error(`token set ${connectionId} changed while it was being refreshed (expected version ${fromVersion})`);
    }
    row.tokenSet = { ...tokenSet };
    row.version++;
    row.lastRefreshAt = this.clock.now();
    row.lastError = undefined;
    this.leases.delete(connectionId);
    this.counts.commits++;
    return toRecord(row);
  }

  async markNeedsReauthorization(connectionId: string, reason: string): Promise<void> {
    const row = this.row(connectionId);
    row.state = "needs_reauthorization";
    row.lastError = reason;
    this.leases.delete(connectionId);
  }

  async recordError(connectionId: string, reason: string): Promise<void> {
    this.row(connectionId).lastError = reason;
  }

  async listLapsedLeases(now: number): Promise<string[]> {
    return [...this.leases]
      .filter(([id, l]) => this.rows.get(id)?.state === "active" && (l.expiresAt <= now || wentBack(l, now)))
      .map(([id]) => id);
  }

  async listTokenStates(): Promise<TokenState[]> {
    return [...this.rows.values()].map((r) => ({
      connectionId: r.connectionId,
      version: r.version,
      state: r.state,
      expiresAt: r.tokenSet.expiresAt,
      obtainedAt: r.tokenSet.obtainedAt,
      refreshTokenIssuedAt: r.tokenSet.refreshTokenIssuedAt,
    }));
  }

  async listConnections(): Promise<ConnectionSummary[]> {
    return [...this.rows.values()].map((r) => ({
      connectionId: r.connectionId,
      xeroUserId: r.xeroUserId,
      userName: undefined,
      authorizedAt: r.authorizedAt,
      state: r.state,
      version: r.version,
      expiresAt: r.tokenSet.expiresAt,
      refreshTokenIssuedAt: r.tokenSet.refreshTokenIssuedAt,
      lastRefreshAt: r.lastRefreshAt,
      lastError: r.lastError,
      tenants: r.tenants.map((t) => ({ ...t, state: "active" as const, goneAt: undefined, checkedAt: undefined })),
      ...(r.custom ? { custom: { ...r.custom } } : {}),
    }));
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {}

  syncTenants(): Promise<{ gone: Tenant[]; added: Tenant[] }> {
    return notInMemory("syncTenants");
  }
  listTenantChecks(): Promise<never> {
    return notInMemory("listTenantChecks");
  }
  claimTenantCheck(): Promise<boolean> {
    return notInMemory("claimTenantCheck");
  }
  async findRemovedTenant(): Promise<undefined> {
    return undefined;
  }
  removeTenant(): Promise<boolean> {
    return notInMemory("removeTenant");
  }
  removeConnection(): Promise<boolean> {
    return notInMemory("removeConnection");
  }
  reencrypt(): Promise<never> {
    return notInMemory("reencrypt");
  }
  keyIds(): Promise<Array<string | null>> {
    return notInMemory("keyIds");
  }
  unsealed(): Promise<string[]> {
    return notInMemory("unsealed");
  }

  private row(connectionId: string): Row {
    const row = this.rows.get(connectionId);
    if (!row) throw new Error(`no connection ${connectionId}`);
    return row;
  }

  private mergeTenants(row: Row, tenants: Tenant[]): void {
    for (const t of tenants) {
      row.tenants = [...row.tenants.filter((k) => k.tenantId !== t.tenantId), { ...t }];
    }
  }
}

/** A frozen copy, as the SQLite store hands every caller of the moment the same read-only record. */
function toRecord(row: Row): TokenRecord {
  return Object.freeze({
    ...row.tokenSet,
    scopes: [...row.tokenSet.scopes],
    connectionId: row.connectionId,
    version: row.version,
    state: row.state,
    tenantIds: row.tenants.map((t) => t.tenantId),
    ...(row.custom ? { custom: { ...row.custom } } : {}),
  });
}

function notInMemory(method: string): Promise<never> {
  return Promise.reject(new Error(`MemoryTokenStore.${method} is not implemented: use the SQLite store`));
}

/** Whether a lease was stamped further after `now` than it lasts: the clock went back (a moment after is another holder's, taken meanwhile). */
function wentBack(lease: { acquiredAt: number; expiresAt: number }, now: number): boolean {
  return lease.acquiredAt - now > lease.expiresAt - lease.acquiredAt;
}
