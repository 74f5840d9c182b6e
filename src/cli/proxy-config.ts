import { ConfigError, type UpstreamConfig } from "../config.js";
import type { XeroProxyOptions } from "../proxy/create-proxy.js";
import { API_URL, PROXY_ON, PROXY_REPLAY_KIB, PROXY_TIMEOUT_MS } from "../settings/proxy-settings.js";
import { readSetting, settingName, type SettingsSource } from "../settings/setting.js";
import { ALLOW_INSECURE_ISSUER } from "../settings/upstream-settings.js";

/**
 * The Xero API proxy of `tokenbroker serve` from its settings, or undefined
 * when `TOKENBROKER_PROXY` is off. The identity server's endpoints are
 * refused even if they share the API's origin (as the fake Xero's do): under
 * an issuer at a root, its `/connect`, `/identity` and `/.well-known`
 * paths (Xero's token, revocation, authorisation and discovery); under an
 * issuer with a path, everything under that path.
 */
export function proxyFromEnv(env: NodeJS.ProcessEnv, upstream: UpstreamConfig): XeroProxyOptions | undefined {
  const source: SettingsSource = { flags: {}, env };
  if (!readSetting(PROXY_ON, source)) return undefined;
  const apiUrl = readSetting(API_URL, source);
  if (apiUrl.protocol === "http:" && !upstream.allowInsecureIssuer) {
    throw new ConfigError(
      `${settingName(API_URL)} uses http://; set ${settingName(ALLOW_INSECURE_ISSUER)}=1 to allow it (local tests only)`,
    );
  }
  if (apiUrl.username !== "" || apiUrl.password !== "") throw new ConfigError(`${settingName(API_URL)} must not hold a user or password`);
  const issuer = upstream.issuer;
  const root = issuer.pathname.replace(/\/+$/, "");
  const refused =
    root === "" ? ["/connect", "/identity", "/.well-known"].map((p) => new URL(p, issuer.origin)) : [new URL(root, issuer.origin)];
  return {
    apiUrl,
    refused,
    replayMaxBytes: 1024 * readSetting(PROXY_REPLAY_KIB, source),
    timeoutMs: readSetting(PROXY_TIMEOUT_MS, source),
  };
}
