/**
 * An identity server for unit tests of the token logic, without HTTP: refresh tokens rotate on every use (a used
 * one may be presented again within a grace period and gets the same answer, as Xero's), and a test can hold
 * answers back, make calls fail, and count every call.
 */
import type { Clock } from "../../src/clock.js";
import type { NewTokenSet } from "../../src/token-set.js";
import { UpstreamError, type ClientCredentials, type IdentityServer, type ObtainedTokenSet } from "../../src/upstream/identity-server.js";

/** Options for {@link MemoryIdentityServer}. */
export interface MemoryIdentityOptions {
  /** Lifetime of each access token, ms (default 30 minutes, as Xero's). */
  accessTokenLifetimeMs?: number;
  /** How long a used refresh token may be presented again, ms (default 30 minutes, as Xero's). */
  graceMs?: number;
}

interface IssuedRefreshToken {
  /** When it was first spent, and what that answered. */
  spent?: { at: number; answer: ObtainedTokenSet };
  revoked: boolean;
}

/** See the file comment. */
export class MemoryIdentityServer implements IdentityServer {
  /** Every call of `refresh`, answered or not. */
  refreshCalls = 0;
  /** Token responses given (each spent a refresh token, a grace retry included). */
  refreshes = 0;
  /** Refresh calls whose signal aborted while they waited for an answer. */
  abandoned = 0;
  /** Refresh tokens presented after their grace period had ended. */
  graceViolations = 0;
  /** Every call of `clientCredentials` (a custom connection's renewal), answered or not. */
  clientCredentialsCalls = 0;
  /** Custom connection apps: client id to its current secret. */
  private readonly customApps = new Map<string, string>();
  private readonly issued = new Map<string, IssuedRefreshToken>();
  private readonly failures: UpstreamError[] = [];
  private held: Array<() => void> | undefined;
  private serial = 0;
  private readonly lifetimeMs: number;
  private readonly graceMs: number;

  constructor(
    private readonly clock: Clock,
    options: MemoryIdentityOptions = {},
  ) {
    this.lifetimeMs = options.accessTokenLifetimeMs ?? 30 * 60_000;
    this.graceMs = options.graceMs ?? 30 * 60_000;
  }

  /** A token set as a consent would give it: what a test imports into the store. */
  grant(): NewTokenSet {
    const { xeroUserId: _u, authEventId: _a, userName: _n, ...tokenSet } = this.mint();
    return tokenSet;
  }

  /** The next `refresh` calls fail with these errors, in order (before their refresh token is looked at). */
  failNext(...errors: UpstreamError[]): void {
    this.failures.push(...errors);
  }

  /** From now on, `refresh` calls wait (their signal still aborts them) until {@link release}. */
  hold(): void {
    this.held ??= [];
  }

  /** Answers every held call, and stops holding. */
  release(): void {
    const waiting = this.held ?? [];
    this.held = undefined;
    for (const go of waiting) go();
  }

  /** Calls waiting for {@link release}. */
  get waiting(): number {
    return this.held?.length ?? 0;
  }

  /** Makes a refresh token unusable, as a user disconnecting the app does. */
  revokeToken(refreshToken: string): void {
    const known = this.issued.get(refreshToken);
    if (known) known.revoked = true;
  }

  async refresh(refreshToken: string, options: { signal?: AbortSignal | undefined } = {}): Promise<ObtainedTokenSet> {
    this.refreshCalls++;
    if (this.held) await this.waitForRelease(options.signal);
    const failure = this.failures.shift();
    if (failure) throw failure;
    const known = this.issued.get(refreshToken);
    if (!known || known.revoked) throw new UpstreamError("invalid_grant", "refresh: invalid_grant");
    const now = this.clock.now();
    if (known.spent) {
      if (now - known.spent.at > this.graceMs) {
        this.graceViolations++;
        throw new UpstreamError("invalid_grant", "refresh: invalid_grant");
      }
      this.refreshes++;
      return known.spent.answer;
    }
    const answer = this.mint();
    known.spent = { at: now, answer };
    this.refreshes++;
    return answer;
  }

  /** Registers (or gives a new secret to) a custom connection app, which `clientCredentials` then accepts. */
  setCustomApp(clientId: string, clientSecret: string): void {
    this.customApps.set(clientId, clientSecret);
  }

  async clientCredentials(credentials: ClientCredentials, options: { signal?: AbortSignal | undefined } = {}): Promise<ObtainedTokenSet> {
    this.clientCredentialsCalls++;
    if (this.held) await this.waitForRelease(options.signal);
    const failure = this.failures.shift();
    if (failure) throw failure;
    if (this.customApps.get(credentials.clientId) !== credentials.clientSecret) {
      throw new UpstreamError("invalid_client", "client credentials: the client id or secret was rejected (invalid_client)");
    }
    return { ...this.mint(), refreshToken: "" };
  }

  listConnections(): Promise<never> {
    return Promise.reject(new Error("not used by the token logic"));
  }
  authorizationUrl(): Promise<never> {
    return Promise.reject(new Error("not used by the token logic"));
  }
  exchangeCode(): Promise<never> {
    return Promise.reject(new Error("not used by the token logic"));
  }
  async revoke(refreshToken: string): Promise<void> {
    this.revokeToken(refreshToken);
  }
  deleteConnection(): Promise<never> {
    return Promise.reject(new Error("not used by the token logic"));
  }

  private waitForRelease(signal: AbortSignal | undefined): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        this.abandoned++;
        return reject(new UpstreamError("transient", "refresh: abandoned"));
      }
      const onAbort = () => {
        this.abandoned++;
        reject(new UpstreamError("transient", "refresh: abandoned"));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.held!.push(() => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      });
    });
  }

  private mint(): ObtainedTokenSet {
    const n = ++this.serial;
    const now = this.clock.now();
    const refreshToken = `rt-${n}`;
    this.issued.set(refreshToken, { revoked: false });
    return {
      accessToken: `at-${n}`,
      refreshToken,
      idToken: undefined,
      tokenType: "Bearer",
      scopes: ["offline_access", "accounting.transactions"],
      expiresAt: now + this.lifetimeMs,
      obtainedAt: now,
      refreshTokenIssuedAt: now,
      xeroUserId: "user-1",
      authEventId: undefined,
      userName: undefined,
    };
  }
}
