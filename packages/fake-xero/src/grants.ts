import { randomBytes, randomUUID } from "node:crypto";
import { FakeXeroError } from "./errors.js";

/** One organisation (or practice) a user connected to the app. */
export interface TenantRecord {
  readonly tenantId: string;
  readonly tenantName: string;
  readonly tenantType: "ORGANISATION" | "PRACTICE";
  /** The connection's own id: the `id` of `/connections`, used by `DELETE /connections/{id}`. */
  readonly connectionId: string;
  /** The consent that added this tenant. */
  readonly authEventId: string;
  /** When the connection was made, ms since the epoch. */
  readonly createdAt: number;
}

/** What a consent asks for: tenants to connect, each field defaulted. */
export interface TenantInit {
  tenantId?: string;
  tenantName?: string;
  tenantType?: "ORGANISATION" | "PRACTICE";
}

/** A read-only view of one user's grant (one token set). */
export interface GrantView {
  readonly grantId: string;
  readonly userId: string;
  /** The latest consent; new access tokens carry it as `authentication_event_id`. */
  readonly authEventId: string;
  /** When the user last consented, ms since the epoch (`auth_time`). */
  readonly authTime: number;
  /** The one refresh token that is unused and valid (unless revoked). */
  readonly currentRefreshToken: string;
  readonly revoked: boolean;
  readonly tenants: readonly TenantRecord[];
}

/** Why a refresh token was refused (all are `invalid_grant` on the wire). */
export type RefreshRefusal =
  /** Never issued by this server. */
  | "unknown"
  /** Its grant was revoked. */
  | "revoked"
  /** Used before, and its grace period has ended. */
  | "grace_expired"
  /** Never used, but a later pair replaced it (a retry in "new" mode). */
  | "superseded"
  /** Never used, and older than the unused-refresh-token lifetime (60 days). */
  | "expired";

/** Result of presenting a refresh token; `T` is whatever the caller minted for the new pair. */
export type RefreshOutcome<T> =
  | { ok: true; grant: GrantView; issued: T; retry: boolean }
  | { ok: false; reason: RefreshRefusal; grant?: GrantView };

/** Options for {@link createGrantBook}. */
export interface GrantBookOptions {
  /** Clock in ms. */
  now: () => number;
  /** How long a used refresh token may be retried after its first use. */
  graceSeconds: number;
  /** A retry in the grace period returns the same pair ("same") or a new one that supersedes it ("new"). */
  graceRetry: "same" | "new";
  /** How long an unused refresh token stays valid (Xero: 60 days). */
  refreshTokenLifetimeSeconds: number;
}

/**
 * The grant and refresh-token model, without HTTP: who consented to which
 * tenants, which refresh token is current, which were used and when.
 * Each grant has at most one current (unused) refresh token.
 */
export interface GrantBook<T> {
  addGrant(init?: { userId?: string; tenants?: TenantInit[] }): GrantView;
  /**
   * A new consent on an existing grant: connects tenants under a new authEventId.
   * A tenant already connected keeps its connection id and gets the new authEventId.
   */
  addTenants(grantId: string, tenants: TenantInit[]): TenantRecord[];
  /** The user's newest grant that is not revoked, if any. */
  grantOfUser(userId: string): GrantView | undefined;
  /**
   * Issues a new pair for a grant without a refresh token (an authorization
   * code was redeemed): the new refresh token supersedes the current one.
   */
  issue(grantId: string, mint: (grant: GrantView, newRefreshToken: string) => T): T;
  getGrant(grantId: string): GrantView | undefined;
  /** The grant a refresh token (used or not) belongs to. */
  grantIdOf(refreshToken: string): string | undefined;
  /**
   * Presents a refresh token. When a new pair is due, `mint(grant, newRefreshToken)`
   * builds it; in "same" mode a retry returns what `mint` returned the first time.
   */
  refresh(refreshToken: string, mint: (grant: GrantView, newRefreshToken: string) => T): RefreshOutcome<T>;
  /** Revokes a grant and removes all its connections; false if already revoked. */
  revoke(grantId: string): boolean;
  /** Removes one connection from a grant; false if the grant has no such connection. */
  removeConnection(grantId: string, connectionId: string): boolean;
}

interface GrantState {
  grantId: string;
  userId: string;
  authEventId: string;
  authTime: number;
  currentRefreshToken: string;
  revoked: boolean;
  tenants: TenantRecord[];
}

interface RefreshTokenState<T> {
  grantId: string;
  issuedAt: number;
  /** First use, ms since the epoch. */
  usedAt?: number;
  /** What its first use (or, in "new" mode, its latest retry) issued. */
  issued?: T;
}

/** Creates an empty grant book. */
export function createGrantBook<T>(options: GrantBookOptions): GrantBook<T> {
  const { now, graceRetry } = options;
  const graceMs = options.graceSeconds * 1000;
  const lifetimeMs = options.refreshTokenLifetimeSeconds * 1000;
  const grants = new Map<string, GrantState>();
  const tokens = new Map<string, RefreshTokenState<T>>();
  let tenantCount = 0;

  const view = (g: GrantState): GrantView => ({ ...g, tenants: [...g.tenants] });
  const mustGet = (grantId: string): GrantState => {
    const g = grants.get(grantId);
    if (!g) throw new FakeXeroError("grant_not_found", `no grant ${grantId}`);
    return g;
  };
  const newRefreshToken = (grantId: string): string => {
    const token = randomBytes(32).toString("hex");
    tokens.set(token, { grantId, issuedAt: now() });
    return token;
  };
  const connect = (authEventId: string, inits: TenantInit[]): TenantRecord[] =>
    inits.map((t) => ({
      tenantId: t.tenantId ?? randomUUID(),
      tenantName: t.tenantName ?? `Demo Company ${++tenantCount}`,
      tenantType: t.tenantType ?? "ORGANISATION",
      connectionId: randomUUID(),
      authEventId,
      createdAt: now(),
    }));
  const issue = (g: GrantState, mint: (grant: GrantView, rt: string) => T): T => {
    // The new token becomes the grant's only current one: an unused
    // predecessor (possible after a retry in "new" mode) is superseded.
    g.currentRefreshToken = newRefreshToken(g.grantId);
    return mint(view(g), g.currentRefreshToken);
  };

  return {
    addGrant(init = {}) {
      const grantId = randomUUID();
      const authEventId = randomUUID();
      const g: GrantState = {
        grantId,
        userId: init.userId ?? randomUUID(),
        authEventId,
        authTime: now(),
        currentRefreshToken: "",
        revoked: false,
        tenants: connect(authEventId, init.tenants ?? [{}]),
      };
      grants.set(grantId, g);
      g.currentRefreshToken = newRefreshToken(grantId);
      return view(g);
    },

    addTenants(grantId, inits) {
      const g = mustGet(grantId);
      if (g.revoked) throw new FakeXeroError("invalid_argument", `grant ${grantId} is revoked`);
      g.authEventId = randomUUID();
      g.authTime = now();
      const added = connect(g.authEventId, inits).map((t) => {
        const i = g.tenants.findIndex((old) => old.tenantId === t.tenantId);
        if (i < 0) return t;
        const again = { ...g.tenants[i]!, authEventId: t.authEventId };
        g.tenants.splice(i, 1);
        return again;
      });
      g.tenants.push(...added);
      return added;
    },

    grantOfUser(userId) {
      const mine = [...grants.values()].filter((g) => g.userId === userId && !g.revoked);
      const newest = mine.at(-1);
      return newest && view(newest);
    },

    issue(grantId, mint) {
      return issue(mustGet(grantId), mint);
    },

    getGrant(grantId) {
      const g = grants.get(grantId);
      return g && view(g);
    },

    grantIdOf(refreshToken) {
      return tokens.get(refreshToken)?.grantId;
    },

    refresh(refreshToken, mint) {
      const t = tokens.get(refreshToken);
      if (!t) return { ok: false, reason: "unknown" };
      const g = mustGet(t.grantId);
      if (g.revoked) return { ok: false, reason: "revoked", grant: view(g) };
      const at = now();
      if (t.usedAt !== undefined) {
        if (at >= t.usedAt + graceMs) return { ok: false, reason: "grace_expired", grant: view(g) };
        if (graceRetry === "new" || t.issued === undefined) t.issued = issue(g, mint);
        return { ok: true, grant: view(g), issued: t.issued, retry: true };
      }
      if (refreshToken !== g.currentRefreshToken) return { ok: false, reason: "superseded", grant: view(g) };
      if (at >= t.issuedAt + lifetimeMs) return { ok: false, reason: "expired", grant: view(g) };
      t.usedAt = at;
      t.issued = issue(g, mint);
      return { ok: true, grant: view(g), issued: t.issued, retry: false };
    },

    revoke(grantId) {
      const g = mustGet(grantId);
      if (g.revoked) return false;
      g.revoked = true;
      g.tenants = [];
      return true;
    },

    removeConnection(grantId, connectionId) {
      const g = mustGet(grantId);
      const i = g.tenants.findIndex((t) => t.connectionId === connectionId);
      if (i < 0) return false;
      g.tenants.splice(i, 1);
      return true;
    },
  };
}
