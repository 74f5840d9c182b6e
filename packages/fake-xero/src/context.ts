import type { AccessTokenIssuer, TokenResponseBody } from "./access-tokens.js";
import type { ApiState } from "./api-state.js";
import type { CodeBook } from "./authorization-codes.js";
import type { CustomAppRecord } from "./client-credentials.js";
import type { GrantBook } from "./grants.js";
import type { JwtSigner } from "./jwt.js";

/** A scripted token-endpoint failure (see `FakeXero.failNext`): an HTTP error, or a connection reset. */
export type TokenEndpointFailure = TokenEndpointHttpFailure | TokenEndpointReset;

/** The token endpoint answers with an HTTP error. */
export interface TokenEndpointHttpFailure {
  /** HTTP status to answer with, e.g. 503, 429, 400, 401. */
  status: number;
  /** OAuth `error` for the JSON body; without it the body is plain text. */
  error?: string;
  /** Sent as `Retry-After`; a 429 without it says 1. */
  retryAfterSeconds?: number;
}

/** The connection is destroyed without an answer (after the latency), as by a reset; no state changes. */
export interface TokenEndpointReset {
  reset: true;
}

/** Counters the public API exposes. */
export interface FakeXeroCounters {
  tokenEndpointCalls: number;
  refreshes: number;
  graceViolations: number;
  invalidGrants: number;
  /** Successful authorization_code grants. */
  codeExchanges: number;
  /** Successful client_credentials grants (custom connections). */
  clientCredentialsGrants: number;
}

/** An organisation a user can choose on the consent page. */
export interface OrganisationRecord {
  tenantId: string;
  tenantName: string;
  tenantType: "ORGANISATION" | "PRACTICE";
}

/** The state every endpoint handler of one fake server shares. */
export interface FakeXeroContext {
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly scopes: readonly string[];
  readonly signer: JwtSigner;
  readonly grants: GrantBook<TokenResponseBody>;
  /** Custom connection apps (client_credentials), by client id. */
  readonly customApps: Map<string, CustomAppRecord>;
  readonly tokens: AccessTokenIssuer;
  /** Authorization codes issued by the consent page. */
  readonly codes: CodeBook;
  /** The organisations the consent page offers (every user may pick any). */
  readonly organisations: OrganisationRecord[];
  /** The user the sign-in field is prefilled with: the last one who consented. */
  lastUser: string;
  readonly counters: FakeXeroCounters;
  /** Scripted failures, first one next. */
  readonly failures: TokenEndpointFailure[];
  /** Aborts when the server closes, so delayed answers give up. */
  readonly closing: AbortSignal;
  /** Token-endpoint delay in ms. */
  latencyMs: number;
  /** The accounting API: limits, counts, delay and data. */
  readonly api: ApiState;
}
