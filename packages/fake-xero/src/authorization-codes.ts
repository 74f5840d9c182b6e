import { createHash, randomBytes } from "node:crypto";

/** What a consent granted, waiting to be redeemed at the token endpoint. */
export interface AuthorizationCodeGrant {
  grantId: string;
  clientId: string;
  /** The redirect URI of the authorization request: the token request must name it again. */
  redirectUri: string;
  /** PKCE S256 challenge, when the request sent one. */
  codeChallenge: string | undefined;
}

/** Why a code was refused (all are `invalid_grant` on the wire). */
export type CodeRefusal =
  | "unknown"
  /** Presented before: codes are single use. */
  | "used"
  | "expired"
  | "redirect_uri_mismatch"
  | "client_mismatch"
  /** The request carried a challenge and the verifier is missing or does not match it. */
  | "pkce_failed";

/** Options for {@link createCodeBook}. */
export interface CodeBookOptions {
  now: () => number;
  /** How long a code may wait to be redeemed, s (Xero: 5 minutes). */
  lifetimeSeconds: number;
}

/** Authorization codes: issued by the consent page, redeemed once at the token endpoint. No HTTP. */
export interface CodeBook {
  issue(grant: AuthorizationCodeGrant): string;
  /**
   * Redeems a code: it is spent on its first presentation, whatever the
   * outcome, so a replayed or guessed-at code never works twice.
   */
  redeem(
    code: string,
    request: { clientId: string; redirectUri: string | null; codeVerifier: string | null },
  ): { ok: true; grant: AuthorizationCodeGrant } | { ok: false; reason: CodeRefusal };
}

/** Creates an empty code book. */
export function createCodeBook(options: CodeBookOptions): CodeBook {
  const codes = new Map<string, AuthorizationCodeGrant & { issuedAt: number; used: boolean }>();
  return {
    issue(grant) {
      const code = randomBytes(24).toString("base64url");
      codes.set(code, { ...grant, issuedAt: options.now(), used: false });
      return code;
    },

    redeem(code, request) {
      const entry = codes.get(code);
      if (!entry) return { ok: false, reason: "unknown" };
      if (entry.used) return { ok: false, reason: "used" };
      entry.used = true;
      if (options.now() >= entry.issuedAt + options.lifetimeSeconds * 1000) return { ok: false, reason: "expired" };
      if (request.clientId !== entry.clientId) return { ok: false, reason: "client_mismatch" };
      if (request.redirectUri !== entry.redirectUri) return { ok: false, reason: "redirect_uri_mismatch" };
      if (entry.codeChallenge !== undefined) {
        if (!request.codeVerifier || s256(request.codeVerifier) !== entry.codeChallenge) {
          return { ok: false, reason: "pkce_failed" };
        }
      }
      const { issuedAt: _i, used: _u, ...grant } = entry;
      return { ok: true, grant };
    },
  };
}

/** The PKCE S256 transformation: base64url(SHA-256(verifier)). */
export function s256(verifier: string): string {
  return createHash("sha256").update(verifier, "ascii").digest("base64url");
}
