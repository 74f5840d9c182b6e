import { ConfigError } from "../config.js";

/** Where the issuer sends the browser back, and what the broker asks for. */
export interface ConsentConfig {
  /** Must be registered, exactly, with the Xero app. */
  redirectUri: string;
  /** Always includes `offline_access` (without it Xero issues no refresh token). */
  scopes: string[];
}

/** `TOKENBROKER_REDIRECT_URI` unless set. */
export const DEFAULT_REDIRECT_URI = "http://localhost:50051/oauth/callback";
/** `TOKENBROKER_SCOPES` unless set. */
export const DEFAULT_CONSENT_SCOPES: readonly string[] = [
  "openid",
  "profile",
  "email",
  "accounting.transactions",
  "accounting.settings",
  "offline_access",
];

/** Reads `TOKENBROKER_REDIRECT_URI` and `TOKENBROKER_SCOPES` (space- or comma-separated). */
export function consentFromEnv(env: NodeJS.ProcessEnv): ConsentConfig {
  const allowInsecure = ["1", "true", "yes", "on"].includes((env["TOKENBROKER_ALLOW_INSECURE_ISSUER"] ?? "").toLowerCase());
  return {
    redirectUri: parseRedirectUri(env["TOKENBROKER_REDIRECT_URI"] || DEFAULT_REDIRECT_URI, allowInsecure),
    scopes: parseScopes(env["TOKENBROKER_SCOPES"]),
  };
}

/** The configured scopes, with `offline_access` added when missing. */
export function parseScopes(value: string | undefined): string[] {
  const scopes = value === undefined || value.trim() === "" ? [...DEFAULT_CONSENT_SCOPES] : value.split(/[\s,]+/).filter((s) => s !== "");
  for (const scope of scopes) {
    // RFC 6749 §3.3 scope-token: printable ASCII except space, `"` and `\`.
    if (!/^[\x21\x23-\x5B\x5D-\x7E]+$/.test(scope)) {
      throw new ConfigError(`TOKENBROKER_SCOPES has an invalid scope ${JSON.stringify(scope)}`);
    }
  }
  if (!scopes.includes("offline_access")) scopes.push("offline_access");
  return [...new Set(scopes)];
}

/**
 * Checks a redirect URI: absolute, no query or fragment (the issuer appends
 * its own), and https unless the host is this machine (Xero accepts
 * `http://localhost`) or insecure URLs are allowed for tests.
 */
export function parseRedirectUri(value: string, allowInsecure: boolean): string {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`TOKENBROKER_REDIRECT_URI ${JSON.stringify(value)} is not a URL`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new ConfigError("TOKENBROKER_REDIRECT_URI must be an http:// or https:// URL");
  }
  if (url.search !== "" || url.hash !== "") {
    throw new ConfigError("TOKENBROKER_REDIRECT_URI must have no query or fragment");
  }
  const loopback = ["localhost", "127.0.0.1", "[::1]"].includes(url.hostname);
  if (url.protocol === "http:" && !loopback && !allowInsecure) {
    throw new ConfigError("TOKENBROKER_REDIRECT_URI must use https:// unless its host is localhost");
  }
  return url.href;
}
