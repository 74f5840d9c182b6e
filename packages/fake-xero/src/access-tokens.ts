import { createHash, randomUUID } from "node:crypto";
import type { GrantView } from "./grants.js";
import type { JwtSigner } from "./jwt.js";

/** The body of a successful token-endpoint answer, as Xero sends it. */
export interface TokenResponseBody {
  id_token: string;
  access_token: string;
  expires_in: number;
  token_type: "Bearer";
  refresh_token: string;
  scope: string;
}

/** What a bearer token check found. */
export type BearerCheck =
  | { ok: true; grantId: string }
  | { ok: false; reason: "invalid" }
  | { ok: false; reason: "expired"; expiredAt: number };

/** Options for {@link createAccessTokenIssuer}. */
export interface AccessTokenIssuerOptions {
  signer: JwtSigner;
  /** The issuer identifier (`iss`); the access token's `aud` is `issuer + "/resources"`. */
  issuer: string;
  clientId: string;
  /** Clock in ms. */
  now: () => number;
  /** Read at every mint, so the lifetime can change while the server runs. */
  accessTokenLifetimeSeconds: () => number;
  /** Scopes granted to every token. */
  scopes: readonly string[];
}

/** Mints Xero-shaped token responses and recognises the access tokens it minted. */
export interface AccessTokenIssuer {
  /** Builds a full token response for `grant`, carrying `refreshToken`. */
  mint(grant: GrantView, refreshToken: string): TokenResponseBody;
  /** Checks a bearer access token: signed here, minted here, and not expired. */
  check(accessToken: string): BearerCheck;
  /** Makes every access token minted so far expired from now on (tokens minted later are not); returns how many. */
  expireIssued(): number;
}

/** ID tokens live 5 minutes, like Xero's. */
const ID_TOKEN_LIFETIME_SECONDS = 300;

/** Creates an issuer that remembers every access token it minted. */
export function createAccessTokenIssuer(options: AccessTokenIssuerOptions): AccessTokenIssuer {
  const { signer, issuer, clientId, now, scopes } = options;
  const minted = new Map<string, string>(); // jti -> grantId
  const expiredEarly = new Map<string, number>(); // jti -> when expireIssued() ended it, ms

  return {
    mint(grant, refreshToken) {
      const iat = Math.floor(now() / 1000);
      const authTime = Math.floor(grant.authTime / 1000);
      const lifetime = options.accessTokenLifetimeSeconds();
      const jti = randomUUID();
      const accessToken = signer.sign({
        nbf: iat,
        exp: iat + lifetime,
        iss: issuer,
        aud: `${issuer}/resources`,
        client_id: clientId,
        sub: grant.userId,
        auth_time: authTime,
        xero_userid: grant.userId,
        global_session_id: grant.grantId,
        jti,
        authentication_event_id: grant.authEventId,
        scope: [...scopes],
        iat,
      });
      minted.set(jti, grant.grantId);
      const idToken = signer.sign({
        nbf: iat,
        exp: iat + ID_TOKEN_LIFETIME_SECONDS,
        iss: issuer,
        aud: clientId,
        iat,
        at_hash: atHash(accessToken),
        sub: grant.userId,
        auth_time: authTime,
        xero_userid: grant.userId,
        global_session_id: grant.grantId,
        preferred_username: emailOf(grant.userId),
        email: emailOf(grant.userId),
        given_name: "Fake",
        family_name: "User",
      });
      return {
        id_token: idToken,
        access_token: accessToken,
        expires_in: lifetime,
        token_type: "Bearer",
        refresh_token: refreshToken,
        scope: scopes.join(" "),
      };
    },

    check(accessToken) {
      const claims = signer.verify(accessToken);
      const jti = claims?.["jti"];
      const grantId = typeof jti === "string" ? minted.get(jti) : undefined;
      const exp = claims?.["exp"];
      if (grantId === undefined || typeof exp !== "number") return { ok: false, reason: "invalid" };
      const endedAt = expiredEarly.get(jti as string);
      if (endedAt !== undefined) return { ok: false, reason: "expired", expiredAt: endedAt };
      if (now() >= exp * 1000) return { ok: false, reason: "expired", expiredAt: exp * 1000 };
      return { ok: true, grantId };
    },

    expireIssued() {
      const at = now();
      let count = 0;
      for (const jti of minted.keys()) {
        if (expiredEarly.has(jti)) continue;
        expiredEarly.set(jti, at);
        count++;
      }
      return count;
    },
  };
}

/** The user's email: the user id itself when it looks like one (users of the consent page sign in with one). */
function emailOf(userId: string): string {
  return userId.includes("@") ? userId : `${userId}@example.com`;
}

/** OIDC `at_hash`: the left half of SHA-256 of the access token, base64url. */
function atHash(accessToken: string): string {
  return createHash("sha256").update(accessToken).digest().subarray(0, 16).toString("base64url");
}
