import * as oidc from "openid-client";
import { systemClock, type Clock } from "../clock.js";
import type { IdentityServer, ObtainedTokenSet, XeroConnection } from "./identity-server.js";
import { UpstreamError } from "./identity-server.js";
import { readJwtClaims, stringClaim } from "./jwt-claims.js";
import { parseConnections } from "./parse-connections.js";

/** Options for {@link createOidcIdentityServer}. */
export interface OidcIdentityServerOptions {
  /** The issuer, e.g. `https://identity.xero.com`; discovered once and cached. */
  issuer: URL;
  /** Xero's connections endpoint, e.g. `https://api.xero.com/connections`. */
  connectionsUrl: URL;
  /** The app's client id. */
  clientId: string;
  /** The app's client secret, sent with `client_secret_basic`. */
  clientSecret: string;
  /** Allow `http://` issuers (local tests and the demo only). */
  allowInsecure?: boolean;
  /** Timeout of each upstream request, ms (default 10 000). */
  timeoutMs?: number;
  /** Time source for expiry. */
  clock?: Clock;
}

/**
 * An {@link IdentityServer} on openid-client v6: discovery done once and
 * cached (Xero's firewall has answered repeated discovery with 403), client
 * authentication `client_secret_basic`, every failure classified as an
 * {@link UpstreamError}.
 */
export function createOidcIdentityServer(options: OidcIdentityServerOptions): IdentityServer {
  const clock = options.clock ?? systemClock;
  const timeoutMs = options.timeoutMs ?? 10_000;
  let configuration: Promise<oidc.Configuration> | undefined;

  function discover(): Promise<oidc.Configuration> {
    configuration ??= oidc
      .discovery(
        options.issuer,
        options.clientId,
        undefined,
        oidc.ClientSecretBasic(options.clientSecret),
        {
          timeout: Math.ceil(timeoutMs / 1000),
          ...(options.allowInsecure ? { execute: [oidc.allowInsecureRequests] } : {}),
        },
      )
      .then((config) => {
        config.timeout = Math.ceil(timeoutMs / 1000);
        return config;
      })
      .catch((e: unknown) => {
        configuration = undefined; // try again on the next call
        throw classify(e, "discovery");
      });
    return configuration;
  }

  return {
    async refresh(refreshToken: string): Promise<ObtainedTokenSet> {
      const config = await discover();
      const sentAt = clock.now();
      let response: Awaited<ReturnType<typeof oidc.refreshTokenGrant>>;
      try {
        response = await oidc.refreshTokenGrant(config, refreshToken);
      } catch (e) {
        throw classify(e, "refresh");
      }
      const access = readJwtClaims(response.access_token);
      const idClaims = response.claims() ?? {};
      // The raw expires_in: openid-client's expiresIn() counts down in real time and may lose a second.
      const expiresIn = typeof response.expires_in === "number" && response.expires_in > 0 ? response.expires_in : 1800;
      return {
        accessToken: response.access_token,
        // A server that does not rotate keeps the old refresh token alive.
        refreshToken: response.refresh_token ?? refreshToken,
        idToken: response.id_token,
        // openid-client lower-cases token_type; channels send it back as Xero spells it.
        tokenType: response.token_type === undefined || response.token_type.toLowerCase() === "bearer" ? "Bearer" : response.token_type,
        scopes: (response.scope ?? "").split(" ").filter((s) => s !== ""),
        obtainedAt: sentAt,
        // Measured from when the request was sent, so network time only shortens it.
        expiresAt: sentAt + expiresIn * 1000,
        refreshTokenIssuedAt: sentAt,
        xeroUserId:
          stringClaim(access, "xero_userid") ??
          stringClaim(idClaims, "xero_userid") ??
          stringClaim(idClaims, "sub") ??
          stringClaim(access, "sub"),
        authEventId: stringClaim(access, "authentication_event_id"),
      };
    },

    async listConnections(accessToken: string): Promise<XeroConnection[]> {
      let res: Response;
      try {
        res = await fetch(options.connectionsUrl, {
          headers: { authorization: `Bearer ${accessToken}`, accept: "application/json" },
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (e) {
        throw new UpstreamError("transient", `connections endpoint unreachable: ${describe(e)}`, undefined, { cause: e });
      }
      if (!res.ok) {
        await res.body?.cancel();
        throw new UpstreamError(
          res.status === 429 || res.status >= 500 ? "transient" : "invalid_grant",
          `connections endpoint answered HTTP ${res.status}`,
          retryAfter(res),
        );
      }
      return parseConnections(await res.json());
    },
  };
}

/** Turns whatever openid-client threw into an UpstreamError with a safe message. */
function classify(e: unknown, what: string): UpstreamError {
  if (e instanceof UpstreamError) return e;
  if (e instanceof oidc.ResponseBodyError) {
    const error = e.error;
    if (error === "invalid_grant") {
      return new UpstreamError("invalid_grant", `${what}: the refresh token was rejected (invalid_grant)`);
    }
    if (error === "invalid_client" || error === "unauthorized_client") {
      return new UpstreamError("invalid_client", `${what}: the client id or secret was rejected (${error})`);
    }
    return new UpstreamError("transient", `${what}: HTTP ${e.status} ${safeCode(error)}`, retryAfter(e.response));
  }
  if (e instanceof oidc.WWWAuthenticateChallengeError && e.status === 401) {
    return new UpstreamError("invalid_client", `${what}: the client id or secret was rejected (HTTP 401)`);
  }
  if (e instanceof oidc.ClientError && e.cause instanceof Response) {
    const status = e.cause.status;
    if (status === 401) {
      return new UpstreamError("invalid_client", `${what}: the client id or secret was rejected (HTTP 401)`);
    }
    return new UpstreamError("transient", `${what}: HTTP ${status}`, retryAfter(e.cause));
  }
  return new UpstreamError("transient", `${what}: ${describe(e)}`, undefined, { cause: e });
}

/** An error's name and code, never its message body (which could echo a response). */
function describe(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code ?? (e.cause as { code?: unknown } | undefined)?.code;
    if (e.name === "TimeoutError" || e.name === "AbortError") return "timed out";
    return typeof code === "string" ? `${e.name} ${code}` : e.name;
  }
  return "unknown error";
}

function safeCode(error: string): string {
  return /^[\w.-]{1,64}$/.test(error) ? error : "error";
}

function retryAfter(res: Response | undefined): number | undefined {
  const header = res?.headers.get("retry-after");
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - Date.now());
}
