import { AsyncLocalStorage } from "node:async_hooks";
import * as oidc from "openid-client";
import { systemClock, type Clock } from "../clock.js";
import type {
  AuthorizationRequest,
  ClientCredentials,
  CodeExchange,
  IdentityServer,
  ObtainedTokenSet,
  XeroConnection,
} from "./identity-server.js";
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
  // The caller's abort signal of the request being made: openid-client takes no signal per call, but every
  // request it makes goes through this fetch, in the caller's asynchronous context.
  const callerSignal = new AsyncLocalStorage<AbortSignal>();
  const fetchWithCallerSignal: oidc.CustomFetch = (url, { body, signal: timeout, ...init }) => {
    const caller = callerSignal.getStore();
    const signal = caller && timeout ? AbortSignal.any([timeout, caller]) : (caller ?? timeout);
    return fetch(url, { ...init, ...(body === undefined ? {} : { body }), ...(signal ? { signal } : {}) });
  };

  function discover(): Promise<oidc.Configuration> {
    configuration ??= oidc
      .discovery(options.issuer, options.clientId, undefined, oidc.ClientSecretBasic(options.clientSecret), {
        // openid-client counts in seconds and takes fractions (AbortSignal.timeout(timeout * 1000)).
        timeout: timeoutMs / 1000,
        [oidc.customFetch]: fetchWithCallerSignal,
        ...(options.allowInsecure ? { execute: [oidc.allowInsecureRequests] } : {}),
      })
      .then((config) => {
        config.timeout = timeoutMs / 1000; // every later request: refresh, code exchange, revocation
        config[oidc.customFetch] = fetchWithCallerSignal;
        return config;
      })
      .catch((e: unknown) => {
        configuration = undefined; // try again on the next call
        throw classify(e, "discovery");
      });
    return configuration;
  }

  return {
    async refresh(refreshToken: string, call: { signal?: AbortSignal | undefined } = {}): Promise<ObtainedTokenSet> {
      const { signal } = call;
      const requests = <T>(fn: () => Promise<T>) => (signal ? callerSignal.run(signal, fn) : fn());
      const config = await requests(discover);
      const sentAt = clock.now();
      let response: Awaited<ReturnType<typeof oidc.refreshTokenGrant>>;
      try {
        response = await requests(() => oidc.refreshTokenGrant(config, refreshToken));
      } catch (e) {
        if (signal?.aborted) throw new UpstreamError("transient", "refresh: abandoned", undefined, { cause: e });
        throw classify(e, "refresh");
      }
      // A server that does not rotate keeps the old refresh token alive.
      return toObtained(response, sentAt, refreshToken);
    },

    async clientCredentials(credentials: ClientCredentials, call: { signal?: AbortSignal | undefined } = {}): Promise<ObtainedTokenSet> {
      const { signal } = call;
      const requests = <T>(fn: () => Promise<T>) => (signal ? callerSignal.run(signal, fn) : fn());
      // The discovery document is the broker's (cached); the client is the custom connection's own app.
      const discovered = await requests(discover);
      const config = new oidc.Configuration(
        discovered.serverMetadata(),
        credentials.clientId,
        undefined,
        oidc.ClientSecretBasic(credentials.clientSecret),
      );
      config.timeout = timeoutMs / 1000;
      config[oidc.customFetch] = fetchWithCallerSignal;
      if (options.allowInsecure) oidc.allowInsecureRequests(config);
      const sentAt = clock.now();
      let response: Awaited<ReturnType<typeof oidc.clientCredentialsGrant>>;
      try {
        response = await requests(() => oidc.clientCredentialsGrant(config));
      } catch (e) {
        if (signal?.aborted) throw new UpstreamError("transient", "client credentials: abandoned", undefined, { cause: e });
        throw classify(e, "client credentials");
      }
      return toObtained(response, sentAt, "");
    },

    async listConnections(accessToken: string, filter: { authEventId?: string | undefined } = {}): Promise<XeroConnection[]> {
      const url = new URL(options.connectionsUrl);
      if (filter.authEventId !== undefined) url.searchParams.set("authEventId", filter.authEventId);
      let res: Response;
      try {
        res = await fetch(url, {
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

    async authorizationUrl(request: AuthorizationRequest): Promise<URL> {
      const config = await discover();
      return oidc.buildAuthorizationUrl(config, {
        response_type: "code",
        redirect_uri: request.redirectUri,
        scope: request.scopes.join(" "),
        state: request.state,
        code_challenge: request.codeChallenge,
        code_challenge_method: "S256",
      });
    },

    async exchangeCode(exchange: CodeExchange): Promise<ObtainedTokenSet> {
      const config = await discover();
      // openid-client takes the redirect_uri from this URL (without its query), so build
      // it from the configured redirect URI, whatever Host header the browser sent.
      const callback = new URL(exchange.redirectUri);
      for (const [name, value] of exchange.callbackParams) callback.searchParams.append(name, value);
      const sentAt = clock.now();
      let response: Awaited<ReturnType<typeof oidc.authorizationCodeGrant>>;
      try {
        response = await oidc.authorizationCodeGrant(config, callback, {
          expectedState: exchange.expectedState,
          pkceCodeVerifier: exchange.codeVerifier,
        });
      } catch (e) {
        throw classify(e, "code exchange");
      }
      if (response.refresh_token === undefined) {
        throw new UpstreamError("invalid_grant", "code exchange: no refresh token was issued (is offline_access among the scopes?)");
      }
      return toObtained(response, sentAt, response.refresh_token);
    },

    async revoke(refreshToken: string): Promise<void> {
      const config = await discover();
      try {
        await oidc.tokenRevocation(config, refreshToken, { token_type_hint: "refresh_token" });
      } catch (e) {
        throw classify(e, "revocation");
      }
    },

    async deleteConnection(accessToken: string, xeroConnectionId: string): Promise<boolean> {
      const url = new URL(`${options.connectionsUrl.href.replace(/\/+$/, "")}/${encodeURIComponent(xeroConnectionId)}`);
      let res: Response;
      try {
        res = await fetch(url, {
          method: "DELETE",
          headers: { authorization: `Bearer ${accessToken}` },
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (e) {
        throw new UpstreamError("transient", `connections endpoint unreachable: ${describe(e)}`, undefined, { cause: e });
      }
      await res.body?.cancel();
      if (res.status === 404) return false;
      if (!res.ok) {
        throw new UpstreamError(
          res.status === 429 || res.status >= 500 ? "transient" : "invalid_grant",
          `disconnecting the tenant: connections endpoint answered HTTP ${res.status}`,
          retryAfter(res),
        );
      }
      return true;
    },
  };
}

/** A token endpoint response as the broker keeps it, with the user it belongs to. */
function toObtained(
  response: oidc.TokenEndpointResponse & oidc.TokenEndpointResponseHelpers,
  sentAt: number,
  previousRefreshToken: string,
): ObtainedTokenSet {
  const access = readJwtClaims(response.access_token);
  const idClaims = response.claims() ?? {};
  // The raw expires_in: openid-client's expiresIn() counts down in real time and may lose a second.
  const expiresIn = typeof response.expires_in === "number" && response.expires_in > 0 ? response.expires_in : 1800;
  return {
    accessToken: response.access_token,
    refreshToken: response.refresh_token ?? previousRefreshToken,
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
    userName: stringClaim(idClaims, "email") ?? stringClaim(idClaims, "preferred_username") ?? stringClaim(idClaims, "name"),
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
    if (e.name === "TimeoutError" || e.name === "AbortError" || code === "OAUTH_TIMEOUT") return "timed out";
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
