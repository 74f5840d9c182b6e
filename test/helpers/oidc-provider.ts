/**
 * Test harness: a real, independent OAuth 2.0 / OpenID Connect authorization
 * server (`oidc-provider`) on loopback, configured with rotating refresh tokens
 * so that tests can prove the broker refreshes each token set exactly once.
 *
 * oidc-provider behaviour this relies on (see
 * `node_modules/oidc-provider/lib/actions/grants/refresh_token.js`):
 * - `rotateRefreshToken: true`: every successful refresh consumes the presented
 *   refresh token and issues a new one (same grant, `rotations + 1`).
 * - Presenting an already-consumed refresh token destroys it and revokes the
 *   whole grant (all its access and refresh tokens, and the grant itself), then
 *   answers `invalid_grant` ("refresh token already used"). Every later refresh
 *   with any token of that grant fails with `invalid_grant` too.
 * - Concurrent reuse is caught too: with the in-memory adapter everything from
 *   loading the token to marking it consumed runs without yielding to I/O, so
 *   of N simultaneous refreshes with one token exactly one succeeds, the others
 *   get `invalid_grant` and revoke the grant, killing the winner's new refresh
 *   token as well. (With a real, I/O-bound adapter this check would be racy.)
 * - The response's `error_description` is always the generic "grant request is
 *   invalid"; the reason ("refresh token already used", "refresh token not found", ...)
 *   is only in `error_detail`, surfaced here as `tokenEndpointErrors`.
 */
import { generateKeyPair, randomBytes, randomUUID } from "node:crypto";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { promisify } from "node:util";

import type { Account, Provider as OidcProvider } from "oidc-provider";

/** A running oidc-provider instance plus the single client registered with it. */
export interface OidcProviderHarness {
  /** Issuer identifier, `"http://127.0.0.1:PORT"` (no trailing slash). */
  readonly issuer: string;
  /** The confidential client's id (authenticates with `client_secret_basic`). */
  readonly clientId: string;
  /** The confidential client's secret. */
  readonly clientSecret: string;
  /** POSTs seen at the token endpoint so far (successful or not). */
  readonly tokenEndpointCalls: number;
  /** Token-endpoint errors so far, oldest first, with oidc-provider's internal detail. */
  readonly tokenEndpointErrors: readonly TokenEndpointError[];
  /** Grants revoked so far (e.g. by refresh-token reuse). */
  readonly revokedGrants: number;
  /** With `customConnectionClient`: a second confidential client that may use only the `client_credentials` grant (as a Xero custom connection app). */
  readonly customClient: { clientId: string; clientSecret: string } | undefined;
  /** Access tokens issued by the `client_credentials` grant so far. */
  readonly clientCredentialsGrants: number;
  /**
   * Mint a grant for `accountId` with scopes `"openid offline_access"` (plus
   * any `extraScopes`) and return its first refresh token, as if the user had
   * just consented and the client had redeemed the authorization code.
   */
  mintRefreshToken(accountId: string, extraScopes?: readonly string[]): Promise<string>;
  /** Stop the server (dropping open keep-alive connections). Idempotent. */
  close(): Promise<void>;
}

/** One failed token-endpoint request, as seen by the provider. */
export interface TokenEndpointError {
  /** OAuth error code sent to the client, e.g. `"invalid_grant"`. */
  readonly error: string;
  /** Reason not sent to the client, e.g. `"refresh token already used"`. */
  readonly detail: string | undefined;
}

/** Options for {@link startOidcProvider}. */
export interface StartOidcProviderOptions {
  /** Access-token lifetime in seconds (`ttl.AccessToken`, and `ttl.ClientCredentials`); default 60. */
  accessTokenTtlSeconds?: number;
  /** Also register a client for the `client_credentials` grant (see {@link OidcProviderHarness.customClient}). */
  customConnectionClient?: boolean;
}

const FOURTEEN_DAYS = 14 * 24 * 60 * 60;
const TOKEN_PATH = "/token";
const BASE_SCOPE = "openid offline_access";

type OidcProviderModules = {
  Provider: typeof OidcProvider;
  createMemoryAdapter: (clockTolerance?: number) => (model: string) => unknown;
};

let modules: Promise<OidcProviderModules> | undefined;

/**
 * Runs `fn` with oidc-provider's console notices/warnings dropped. On Node 20
 * it prints "Unsupported runtime" when first imported; everything else it would
 * warn about is configured away below, this only catches leftovers.
 */
async function withoutOidcProviderNotices<T>(fn: () => Promise<T> | T): Promise<T> {
  const { warn, info } = console;
  const filter =
    (original: (...args: unknown[]) => void) =>
    (...args: unknown[]): void => {
      const first = args[0];
      if (typeof first === "string" && /oidc-provider (WARNING|NOTICE):/.test(first)) return;
      original.apply(console, args);
    };
  console.warn = filter(warn);
  console.info = filter(info);
  try {
    return await fn();
  } finally {
    console.warn = warn;
    console.info = info;
  }
}

function loadModules(): Promise<OidcProviderModules> {
  modules ??= withoutOidcProviderNotices(async () => {
    const [{ Provider }, { createMemoryAdapter }] = await Promise.all([
      import("oidc-provider"),
      import("oidc-provider/lib/adapters/memory_adapter.js"),
    ]);
    return { Provider, createMemoryAdapter };
  });
  return modules;
}

/**
 * Start oidc-provider on 127.0.0.1:0 with one confidential client
 * (client_secret_basic), refresh tokens that rotate on every use (reuse of a
 * spent one revokes the grant), and a short access-token lifetime.
 */
export async function startOidcProvider(options: StartOidcProviderOptions = {}): Promise<OidcProviderHarness> {
  const accessTokenTtl = options.accessTokenTtlSeconds ?? 60;
  if (!Number.isInteger(accessTokenTtl) || accessTokenTtl <= 0) {
    throw new RangeError(`accessTokenTtlSeconds must be a positive integer, got ${accessTokenTtl}`);
  }

  const { Provider, createMemoryAdapter } = await loadModules();

  const { privateKey } = await promisify(generateKeyPair)("rsa", { modulusLength: 2048 });
  const signingKey = { ...privateKey.export({ format: "jwk" }), kid: "harness-rs256", alg: "RS256", use: "sig" };

  const clientId = `client-${randomUUID()}`;
  const clientSecret = randomBytes(32).toString("base64url");
  const customClient = options.customConnectionClient
    ? { clientId: `custom-${randomUUID()}`, clientSecret: randomBytes(32).toString("base64url") }
    : undefined;

  const server: Server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const issuer = `http://127.0.0.1:${port}`;

  let provider: OidcProvider;
  try {
    provider = await withoutOidcProviderNotices(
      () =>
        new Provider(issuer, {
          // Same store as the default, minus the "development-only adapter" warning.
          adapter: createMemoryAdapter(0),
          jwks: { keys: [signingKey] },
          clients: [
            {
              client_id: clientId,
              client_secret: clientSecret,
              token_endpoint_auth_method: "client_secret_basic",
              grant_types: ["authorization_code", "refresh_token"],
              redirect_uris: ["http://127.0.0.1/cb"],
              response_types: ["code"],
            },
            ...(customClient
              ? [
                  {
                    client_id: customClient.clientId,
                    client_secret: customClient.clientSecret,
                    token_endpoint_auth_method: "client_secret_basic",
                    grant_types: ["client_credentials"],
                    redirect_uris: [],
                    response_types: [],
                  },
                ]
              : []),
          ],
          cookies: { keys: [randomBytes(32).toString("base64url")] },
          // No interactive login: grants are minted programmatically.
          features: { devInteractions: { enabled: false }, clientCredentials: { enabled: customClient !== undefined } },
          routes: { token: TOKEN_PATH },
          findAccount: (_ctx: unknown, sub: string): Account => ({
            accountId: sub,
            claims: () => ({ sub }),
          }),
          issueRefreshToken: () => true,
          rotateRefreshToken: true,
          clientBasedCORS: () => false,
          ttl: {
            AccessToken: accessTokenTtl,
            ClientCredentials: accessTokenTtl,
            AuthorizationCode: 60,
            IdToken: 300,
            RefreshToken: FOURTEEN_DAYS,
            Grant: FOURTEEN_DAYS,
            Session: FOURTEEN_DAYS,
            Interaction: 3600,
          },
        }),
    );
  } catch (error) {
    server.close();
    throw error;
  }

  let tokenEndpointCalls = 0;
  let revokedGrants = 0;
  const tokenEndpointErrors: TokenEndpointError[] = [];
  provider.use(async (ctx, next) => {
    if (ctx.method === "POST" && ctx.path === TOKEN_PATH) tokenEndpointCalls += 1;
    return next();
  });
  const recordError = (fallbackCode: string) => (ctx: unknown, err: unknown) => {
    if ((ctx as { path?: unknown }).path !== TOKEN_PATH) return;
    const e = (err ?? {}) as { error?: unknown; error_detail?: unknown; message?: unknown };
    const detail = typeof e.error_detail === "string" ? e.error_detail : typeof e.message === "string" ? e.message : undefined;
    tokenEndpointErrors.push({ error: typeof e.error === "string" ? e.error : fallbackCode, detail });
  };
  provider.on("grant.error", recordError("invalid_request"));
  provider.on("server_error", recordError("server_error"));
  provider.on("grant.revoked", () => {
    revokedGrants += 1;
  });
  let clientCredentialsGrants = 0;
  provider.on("client_credentials.saved", () => {
    clientCredentialsGrants += 1;
  });
  server.on("request", provider.callback());

  let closing: Promise<void> | undefined;

  return {
    issuer,
    clientId,
    clientSecret,
    get tokenEndpointCalls() {
      return tokenEndpointCalls;
    },
    get tokenEndpointErrors() {
      return tokenEndpointErrors.slice();
    },
    get revokedGrants() {
      return revokedGrants;
    },
    customClient,
    get clientCredentialsGrants() {
      return clientCredentialsGrants;
    },
    async mintRefreshToken(accountId: string, extraScopes: readonly string[] = []): Promise<string> {
      const client = await provider.Client.find(clientId);
      if (!client) throw new Error(`oidc-provider harness: client ${clientId} not found`);
      const scope = [...new Set([...BASE_SCOPE.split(" "), ...extraScopes])].join(" ");

      const grant = new provider.Grant({ accountId, clientId });
      grant.addOIDCScope(scope);
      const grantId = await grant.save();

      // Mirrors what the authorization_code grant handler stores
      // (lib/helpers/grant_common.js issueTokens) for a code-flow refresh token.
      const refreshToken = new provider.RefreshToken({
        accountId,
        client,
        grantId,
        scope,
        gty: "authorization_code",
        rotations: 0,
        authTime: Math.floor(Date.now() / 1000),
        sessionUid: randomUUID(),
        // Not bound to a browser session: survives without one.
        expiresWithSession: false,
      });
      return refreshToken.save();
    },
    close(): Promise<void> {
      closing ??= new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
