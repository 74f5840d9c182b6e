import type { AccessTokenIssuer, TokenResponseBody } from "./access-tokens.js";
import type { GrantBook } from "./grants.js";
import type { JwtSigner } from "./jwt.js";

/** A scripted token-endpoint failure (see `FakeXero.failNext`). */
export interface TokenEndpointFailure {
  /** HTTP status to answer with, e.g. 503, 429, 400, 401. */
  status: number;
  /** OAuth `error` for the JSON body; without it the body is plain text. */
  error?: string;
  /** Sent as `Retry-After`; a 429 without it says 1. */
  retryAfterSeconds?: number;
}

/** Counters the public API exposes. */
export interface FakeXeroCounters {
  tokenEndpointCalls: number;
  refreshes: number;
  graceViolations: number;
  invalidGrants: number;
}

/** The state every endpoint handler of one fake server shares. */
export interface FakeXeroContext {
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly scopes: readonly string[];
  readonly signer: JwtSigner;
  readonly grants: GrantBook<TokenResponseBody>;
  readonly tokens: AccessTokenIssuer;
  readonly counters: FakeXeroCounters;
  /** Scripted failures, first one next. */
  readonly failures: TokenEndpointFailure[];
  /** Aborts when the server closes, so delayed answers give up. */
  readonly closing: AbortSignal;
  /** Token-endpoint delay in ms. */
  latencyMs: number;
}
