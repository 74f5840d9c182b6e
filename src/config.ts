/**
 * The upstream configuration of the commands that talk to Xero, read through
 * the settings schema (src/settings/), and the names other modules import
 * from here.
 */
import { ConfigError } from "./settings/config-error.js";
import { readSetting, settingName, type SettingsSource } from "./settings/setting.js";
import {
  ALLOW_INSECURE_ISSUER,
  CLIENT_ID,
  CLIENT_SECRET,
  CONNECTIONS_URL,
  ISSUER,
  UPSTREAM_TIMEOUT_MS,
} from "./settings/upstream-settings.js";

export { ConfigError } from "./settings/config-error.js";
export { DEFAULT_DB, parseListen, type ListenAddress } from "./settings/server-settings.js";
export { positiveNumber } from "./settings/value-types.js";

/** Everything needed to reach the identity server. */
export interface UpstreamConfig {
  issuer: URL;
  connectionsUrl: URL;
  clientId: string;
  clientSecret: string;
  allowInsecureIssuer: boolean;
  timeoutMs: number;
}

/** Where the identity server is, without the broker's own client: what `custom add` needs (it brings its own). */
export type IssuerConfig = Omit<UpstreamConfig, "clientId" | "clientSecret">;

/** Reads the upstream settings from the environment. */
export function upstreamFromEnv(env: NodeJS.ProcessEnv): UpstreamConfig {
  const source: SettingsSource = { flags: {}, env };
  const clientId = readSetting(CLIENT_ID, source);
  const clientSecret = readSetting(CLIENT_SECRET, source);
  return { ...issuerFromEnv(env), clientId, clientSecret };
}

/** Reads where the identity server is (issuer, connections endpoint, timeout) from the environment. */
export function issuerFromEnv(env: NodeJS.ProcessEnv): IssuerConfig {
  const source: SettingsSource = { flags: {}, env };
  const allowInsecureIssuer = readSetting(ALLOW_INSECURE_ISSUER, source) ?? false;
  const issuer = readSetting(ISSUER, source);
  const connectionsUrl = readSetting(CONNECTIONS_URL, source);
  for (const [setting, url] of [
    [ISSUER, issuer],
    [CONNECTIONS_URL, connectionsUrl],
  ] as const) {
    if (url.protocol === "http:" && !allowInsecureIssuer) {
      throw new ConfigError(
        `${settingName(setting)} uses http://; set ${settingName(ALLOW_INSECURE_ISSUER)}=1 to allow it (local tests only)`,
      );
    }
  }
  const timeoutMs = readSetting(UPSTREAM_TIMEOUT_MS, source);
  return { issuer, connectionsUrl, allowInsecureIssuer, timeoutMs };
}
