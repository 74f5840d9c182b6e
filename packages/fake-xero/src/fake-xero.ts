import { randomBytes, randomUUID } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { createAccessTokenIssuer, type TokenResponseBody } from "./access-tokens.js";
import { createCodeBook } from "./authorization-codes.js";
import type { InvoiceJson } from "./accounting-data.js";
import { createApiState } from "./api-state.js";
import type { FakeXeroContext, OrganisationRecord, TokenEndpointFailure } from "./context.js";
import { PATHS } from "./discovery.js";
import { FakeXeroError } from "./errors.js";
import { createGrantBook, type GrantView, type TenantInit } from "./grants.js";
import { createJwtSigner } from "./jwt.js";
import type { AppApiUsage, InjectedRateLimit, TenantApiUsage, XeroApiLimits } from "./rate-limits.js";
import { createFakeXeroHandler } from "./routes.js";

/** Options for {@link startFakeXero}. */
export interface FakeXeroOptions {
  /** Interface to listen on; default "127.0.0.1". */
  host?: string;
  /** Port; default 0 (an ephemeral port). */
  port?: number;
  /** The one client the fake knows; default "fake-client-id". */
  clientId?: string;
  /** That client's secret; default "fake-client-secret". */
  clientSecret?: string;
  /** Access token lifetime (`expires_in`); default 1800, as Xero. */
  accessTokenLifetimeSeconds?: number;
  /** How long a used refresh token may be retried after its first use; default 1800, as Xero. */
  graceSeconds?: number;
  /**
   * What a retry inside the grace period gets (Xero does not document it):
   * "same" (default) returns the pair the first use returned; "new" issues
   * another new pair, which supersedes the earlier one (its refresh token,
   * if unused, then gets invalid_grant).
   */
  graceRetry?: "same" | "new";
  /** How long an unused refresh token stays valid; default 60 days, as Xero. */
  refreshTokenLifetimeSeconds?: number;
  /** Delay before answering the token endpoint, in ms; default 0. */
  latencyMs?: number;
  /** Scopes granted to every token; default a typical Xero accounting app's. */
  scopes?: string[];
  /** Clock in ms; default Date.now. Token timestamps and grace periods follow it. */
  now?: () => number;
  /** The organisations the consent page offers (any user may pick any); default three demo companies. */
  organisations?: TenantInit[];
  /** How long an authorization code may wait to be redeemed; default 300, as Xero. */
  authorizationCodeLifetimeSeconds?: number;
  /**
   * Limits of the accounting API and `/connections`, over Xero's defaults
   * (5 in flight, 60 a minute and 5,000 a day per tenant, 10,000 a minute per app;
   * a 60,000 ms minute, an 86,400,000 ms day), e.g. `{ tenantCallsPerMinute: 10, minuteMs: 2000 }`.
   */
  apiLimits?: Partial<XeroApiLimits>;
  /** Delay before an admitted API call is answered, ms (it stays in flight meanwhile, so calls overlap); default 0. */
  apiLatencyMs?: number;
}

/** An organisation users can choose on the consent page. */
export type FakeOrganisation = OrganisationRecord;

/** A tenant connected to a grant. */
export interface FakeTenant {
  tenantId: string;
  tenantName: string;
  tenantType: "ORGANISATION" | "PRACTICE";
  /** The connection id (`id` in `/connections`). */
  connectionId: string;
  /** The consent that connected it. */
  authEventId: string;
}

/** A custom connection app registered with {@link FakeXero.addCustomConnection}. */
export interface FakeCustomConnection {
  clientId: string;
  /** Its current secret. */
  clientSecret: string;
  /** Its one organisation. */
  tenant: FakeTenant;
}

/** One user's grant (token set). */
export interface FakeGrant {
  grantId: string;
  userId: string;
  /** From `addGrant`: the first refresh token; from `getGrant`: the current one. */
  refreshToken: string;
  tenants: FakeTenant[];
  /** The latest consent (the `authentication_event_id` of new access tokens). */
  authEventId: string;
  revoked: boolean;
}

/** A running fake Xero identity server (and the bit of Xero's API that lists connections). */
export interface FakeXero {
  /** e.g. "http://127.0.0.1:PORT" (no trailing slash). */
  readonly issuer: string;
  /** issuer + "/connections". */
  readonly connectionsUrl: string;
  /** Origin of the API (`/connections`, `/api.xro/2.0/...`): what `TOKENBROKER_API_URL` points at. The same origin as the issuer. */
  readonly apiUrl: string;
  readonly clientId: string;
  readonly clientSecret: string;
  /** Token-endpoint calls so far (every POST to /connect/token, whatever the outcome). */
  readonly tokenEndpointCalls: number;
  /** Successful refresh_token grants so far (grace retries included). */
  readonly refreshes: number;
  /** Refresh tokens presented after their grace period had ended (each a lost connection in real life). */
  readonly graceViolations: number;
  /** Every invalid_grant answer so far (unknown, revoked, superseded, expired or past grace; bad authorization codes). */
  readonly invalidGrants: number;
  /** Authorization codes redeemed for a token set so far. */
  readonly codeExchanges: number;
  /** Successful client_credentials grants (custom connections) so far. */
  readonly clientCredentialsGrants: number;
  /**
   * Registers a custom connection app (Xero's client_credentials grant for one organisation): its own client id and
   * secret (random unless given) and one tenant. Its access tokens list that tenant at `/connections`.
   */
  addCustomConnection(init?: { clientId?: string; clientSecret?: string; tenant?: TenantInit }): FakeCustomConnection;
  /** Gives a custom connection app a new secret (random unless given), as rotating it at Xero does: the old one gets invalid_client. */
  rotateCustomConnectionSecret(clientId: string, newSecret?: string): string;
  /** The organisations the consent page offers. */
  readonly organisations: readonly FakeOrganisation[];
  /** Offers one more organisation on the consent page. */
  addOrganisation(init?: TenantInit): FakeOrganisation;
  /** Simulate a user consenting: creates a grant with a user id and tenants, returns its first refresh token. */
  addGrant(init?: { userId?: string; tenants?: TenantInit[] }): FakeGrant;
  /** Simulate the same user consenting again to more tenants: they get a new authEventId, as do later access tokens. */
  addTenants(grantId: string, tenants: TenantInit[]): FakeTenant[];
  /** The grant as it is now, with its current refresh token; undefined if unknown. */
  getGrant(grantId: string): FakeGrant | undefined;
  /** Revoke a grant: its refresh tokens get invalid_grant from now on and its connections are removed. */
  revokeGrant(grantId: string): void;
  setLatency(ms: number): void;
  setAccessTokenLifetime(seconds: number): void;
  /** The next n token-endpoint calls fail with this HTTP status and OAuth error body (e.g. 503, or 429 with retryAfterSeconds, or 400 "invalid_grant", or 401 "invalid_client"), or with `{ reset: true }` are cut off without an answer (a connection reset). */
  failNext(n: number, failure: TokenEndpointFailure): void;
  /** The API limits in force. */
  readonly apiLimits: Readonly<XeroApiLimits>;
  /** Changes some API limits from now on (counts so far are kept). */
  setApiLimits(limits: Partial<XeroApiLimits>): void;
  /** Delay before an admitted API call is answered, ms. */
  setApiLatency(ms: number): void;
  /** What the API saw of one tenant: calls, in flight now, most in flight ever, 429s by problem. */
  apiUsage(tenantId: string): TenantApiUsage;
  /** What the API saw of the whole app (all tenants and `/connections`): calls, 429s by problem. */
  appApiUsage(): AppApiUsage;
  /**
   * From now until `retryAfterS` has passed, every call to `tenantId` (or, without
   * it, every API call of the app) gets 429 with `X-Rate-Limit-Problem: problem`
   * and a `Retry-After` of the seconds left, as a real Xero 429 does.
   */
  injectRateLimit(hold: InjectedRateLimit): void;
  /** Forgets API counts, limit windows and injected 429s (not the limits, the delay or the data). */
  resetApiUsage(): void;
  /**
   * Every access token issued so far gets 401 `TokenExpired` from now on, as
   * when Xero's clock passes a token's expiry before its holder's does (tokens
   * issued later are valid); returns how many were ended.
   */
  expireAccessTokens(): number;
  /** The invoices of a tenant, oldest first (empty if its API was never called). */
  invoices(tenantId: string): InvoiceJson[];
  /** Resolves after the server stopped (also destroys open sockets). */
  close(): Promise<void>;
}

/** Scopes of a typical Xero accounting integration. */
export const DEFAULT_SCOPES: readonly string[] = [
  "openid",
  "profile",
  "email",
  "offline_access",
  "accounting.transactions",
  "accounting.settings",
  "accounting.contacts",
];

/** Starts a fake Xero on `host:port`; resolves once it is listening. */
export async function startFakeXero(options: FakeXeroOptions = {}): Promise<FakeXero> {
  const host = options.host ?? "127.0.0.1";
  const now = options.now ?? Date.now;
  const graceRetry = options.graceRetry ?? "same";
  if (graceRetry !== "same" && graceRetry !== "new") throw invalid("graceRetry", graceRetry);
  const graceSeconds = nonNegative("graceSeconds", options.graceSeconds ?? 1800);
  const refreshTokenLifetimeSeconds = nonNegative("refreshTokenLifetimeSeconds", options.refreshTokenLifetimeSeconds ?? 60 * 86400);
  const latencyMs = nonNegative("latencyMs", options.latencyMs ?? 0);
  const codeLifetimeSeconds = nonNegative("authorizationCodeLifetimeSeconds", options.authorizationCodeLifetimeSeconds ?? 300);
  let lifetime = nonNegative("accessTokenLifetimeSeconds", options.accessTokenLifetimeSeconds ?? 1800);
  const apiLatencyMs = nonNegative("apiLatencyMs", options.apiLatencyMs ?? 0);
  const api = createApiState({ limits: options.apiLimits ?? {}, latencyMs: apiLatencyMs, now });
  const port = options.port ?? 0;
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw invalid("port", port);

  const signer = await createJwtSigner();
  const closing = new AbortController();
  const server = createServer();
  // Above Node's 1 s margin: an http.Agent does not reuse a connection whose server says `Keep-Alive: timeout=1`
  // (so with 1000 every call through the broker's proxy opened a new connection). `close()` ends idle ones at once.
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e) => reject(new FakeXeroError("listen_failed", `cannot listen on ${host}:${port}`, { cause: e })));
    server.listen(port, host, resolve);
  });
  const address = server.address() as AddressInfo;
  const issuer = `http://${address.family === "IPv6" ? `[${address.address}]` : address.address}:${address.port}`;
  const clientId = options.clientId ?? "fake-client-id";
  const clientSecret = options.clientSecret ?? "fake-client-secret";
  const scopes = [...(options.scopes ?? DEFAULT_SCOPES)];

  const ctx: FakeXeroContext = {
    issuer,
    clientId,
    clientSecret,
    scopes,
    signer,
    customApps: new Map(),
    grants: createGrantBook<TokenResponseBody>({
      now,
      graceRetry,
      graceSeconds,
      refreshTokenLifetimeSeconds,
    }),
    tokens: createAccessTokenIssuer({ signer, issuer, clientId, now, scopes, accessTokenLifetimeSeconds: () => lifetime }),
    counters: { tokenEndpointCalls: 0, refreshes: 0, graceViolations: 0, invalidGrants: 0, codeExchanges: 0, clientCredentialsGrants: 0 },
    codes: createCodeBook({ now, lifetimeSeconds: codeLifetimeSeconds }),
    organisations: (options.organisations ?? DEMO_ORGANISATIONS).map(organisation),
    lastUser: "demo@example.com",
    failures: [],
    closing: closing.signal,
    latencyMs,
    api,
  };
  server.on("request", createFakeXeroHandler(ctx));
  let closed: Promise<void> | undefined;

  return {
    issuer,
    connectionsUrl: issuer + PATHS.connections,
    apiUrl: issuer,
    clientId,
    clientSecret,
    get tokenEndpointCalls() {
      return ctx.counters.tokenEndpointCalls;
    },
    get refreshes() {
      return ctx.counters.refreshes;
    },
    get graceViolations() {
      return ctx.counters.graceViolations;
    },
    get invalidGrants() {
      return ctx.counters.invalidGrants;
    },
    get codeExchanges() {
      return ctx.counters.codeExchanges;
    },
    get clientCredentialsGrants() {
      return ctx.counters.clientCredentialsGrants;
    },
    get organisations() {
      return ctx.organisations.map((o) => ({ ...o }));
    },
    addCustomConnection(init = {}) {
      const clientId = init.clientId ?? randomUUID().replaceAll("-", "").toUpperCase();
      if (ctx.customApps.has(clientId) || clientId === ctx.clientId) throw invalid("clientId", clientId);
      const clientSecret = init.clientSecret ?? randomBytes(36).toString("base64url");
      const grant = ctx.grants.addGrant({ userId: `custom-connection:${clientId}`, tenants: [init.tenant ?? {}] });
      ctx.customApps.set(clientId, { clientId, clientSecret, grantId: grant.grantId });
      return { clientId, clientSecret, tenant: toFakeTenant(grant.tenants[0]!) };
    },
    rotateCustomConnectionSecret(clientId, newSecret) {
      const app = ctx.customApps.get(clientId);
      if (!app) throw new FakeXeroError("invalid_argument", `no custom connection app ${clientId}`);
      app.clientSecret = newSecret ?? randomBytes(36).toString("base64url");
      return app.clientSecret;
    },
    addOrganisation(init = {}) {
      const added = organisation(init);
      ctx.organisations.push(added);
      return { ...added };
    },
    addGrant(init) {
      const g = ctx.grants.addGrant(init);
      return toFakeGrant(g);
    },
    addTenants(grantId, tenants) {
      return ctx.grants.addTenants(grantId, tenants).map(toFakeTenant);
    },
    getGrant(grantId) {
      const g = ctx.grants.getGrant(grantId);
      return g && toFakeGrant(g);
    },
    revokeGrant(grantId) {
      ctx.grants.revoke(grantId);
    },
    setLatency(ms) {
      ctx.latencyMs = nonNegative("latencyMs", ms);
    },
    setAccessTokenLifetime(s) {
      lifetime = nonNegative("accessTokenLifetimeSeconds", s);
    },
    failNext(n, failure) {
      if (!Number.isInteger(n) || n < 0) throw invalid("n", n);
      if ("reset" in failure) {
        if (failure.reset !== true) throw invalid("reset", failure.reset);
      } else if (!Number.isInteger(failure.status) || failure.status < 100 || failure.status > 599) {
        throw invalid("status", failure.status);
      }
      for (let i = 0; i < n; i++) ctx.failures.push({ ...failure });
    },
    get apiLimits() {
      return api.limiter.limits;
    },
    setApiLimits(limits) {
      api.limiter.setLimits(limits);
    },
    setApiLatency(ms) {
      api.latencyMs = nonNegative("apiLatencyMs", ms);
    },
    apiUsage(tenantId) {
      return api.limiter.usage(tenantId);
    },
    appApiUsage() {
      return api.limiter.appUsage();
    },
    injectRateLimit(hold) {
      api.limiter.inject(hold);
    },
    resetApiUsage() {
      api.limiter.reset();
    },
    expireAccessTokens() {
      return ctx.tokens.expireIssued();
    },
    invoices(tenantId) {
      return structuredClone(api.existingBook(tenantId)?.invoices ?? []);
    },
    close() {
      closed ??= new Promise<void>((resolve) => {
        closing.abort();
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closed;
    },
  };
}

/** The consent page's organisations unless told otherwise. */
const DEMO_ORGANISATIONS: TenantInit[] = [
  { tenantName: "Demo Company (AU)" },
  { tenantName: "Demo Company (NZ)" },
  { tenantName: "Demo Company (UK)" },
];

function organisation(init: TenantInit): OrganisationRecord {
  return {
    tenantId: init.tenantId ?? randomUUID(),
    tenantName: init.tenantName ?? "Demo Company",
    tenantType: init.tenantType ?? "ORGANISATION",
  };
}

function toFakeTenant(t: FakeTenant): FakeTenant {
  const { tenantId, tenantName, tenantType, connectionId, authEventId } = t;
  return { tenantId, tenantName, tenantType, connectionId, authEventId };
}

function toFakeGrant(g: GrantView): FakeGrant {
  return {
    grantId: g.grantId,
    userId: g.userId,
    refreshToken: g.currentRefreshToken,
    tenants: g.tenants.map(toFakeTenant),
    authEventId: g.authEventId,
    revoked: g.revoked,
  };
}

/** Validates a non-negative finite number option (validated before listening, so a bad option leaks nothing). */
function nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw invalid(name, value);
  return value;
}

function invalid(name: string, value: unknown): FakeXeroError {
  return new FakeXeroError("invalid_argument", `invalid ${name}: ${String(value)}`);
}
