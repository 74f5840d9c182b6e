import { ConfigError } from "../config.js";
import { REDIRECT_URI, SCOPES } from "../settings/consent-settings.js";
import { readSetting, settingName, type SettingsSource } from "../settings/setting.js";
import { ALLOW_INSECURE_ISSUER } from "../settings/upstream-settings.js";

/** Where the issuer sends the browser back, and what the broker asks for. */
export interface ConsentConfig {
  /** Must be registered, exactly, with the Xero app. */
  redirectUri: string;
  /** Always includes `offline_access` (without it Xero issues no refresh token). */
  scopes: string[];
}

/** `TOKENBROKER_SCOPES` unless set. */
export const DEFAULT_CONSENT_SCOPES: readonly string[] = Object.freeze(withOfflineAccess(readSetting(SCOPES, { flags: {}, env: {} })));

/** Reads `TOKENBROKER_REDIRECT_URI` and `TOKENBROKER_SCOPES` (space- or comma-separated). */
export function consentFromEnv(env: NodeJS.ProcessEnv): ConsentConfig {
  const source: SettingsSource = { flags: {}, env };
  const allowInsecure = readSetting(ALLOW_INSECURE_ISSUER, source) ?? false;
  return {
    redirectUri: checkRedirectUri(readSetting(REDIRECT_URI, source), allowInsecure),
    scopes: withOfflineAccess(readSetting(SCOPES, source)),
  };
}

function withOfflineAccess(scopes: string[]): string[] {
  if (!scopes.includes("offline_access")) scopes.push("offline_access");
  return [...new Set(scopes)];
}

/**
 * Checks a redirect URI (absolute, no query or fragment, which the value type
 * checks): https unless the host is this machine (Xero accepts
 * `http://localhost`) or insecure URLs are allowed for tests.
 */
function checkRedirectUri(url: URL, allowInsecure: boolean): string {
  const loopback = ["localhost", "127.0.0.1", "[::1]"].includes(url.hostname);
  if (url.protocol === "http:" && !loopback && !allowInsecure) {
    throw new ConfigError(`${settingName(REDIRECT_URI)} must use https:// unless its host is localhost`);
  }
  return url.href;
}
