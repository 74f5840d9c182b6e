/** Settings of the identity server (Xero): the app's credentials and where to reach it. */
import type { Setting, SettingSection } from "./setting.js";
import { httpUrl, onOff, positiveNumberValue, textValue } from "./value-types.js";

/** The upstream section. */
export const UPSTREAM: SettingSection = {
  title: "Xero (the identity server)",
  about:
    "Your Xero app's credentials and where Xero is. Environment only, so that the secret stays out of the process list; " +
    "needed by `serve`, `import`, `connect`, `disconnect` and `revoke`.",
};

/** `TOKENBROKER_CLIENT_ID`. */
export const CLIENT_ID = {
  section: UPSTREAM,
  env: "TOKENBROKER_CLIENT_ID",
  type: textValue(),
  required: "set it to your Xero app's client id",
  description: "your Xero app's client id",
} satisfies Setting<string>;

/** `TOKENBROKER_CLIENT_SECRET`. */
export const CLIENT_SECRET = {
  section: UPSTREAM,
  env: "TOKENBROKER_CLIENT_SECRET",
  type: textValue(),
  required: "set it to your Xero app's client secret",
  secret: true,
  description: "your Xero app's client secret",
} satisfies Setting<string>;

/** `TOKENBROKER_ISSUER`. */
export const ISSUER = {
  section: UPSTREAM,
  env: "TOKENBROKER_ISSUER",
  type: httpUrl(),
  default: "https://identity.xero.com",
  description: "OpenID issuer, discovered once; https:// unless TOKENBROKER_ALLOW_INSECURE_ISSUER is on",
} satisfies Setting<URL>;

/** `TOKENBROKER_CONNECTIONS_URL`. */
export const CONNECTIONS_URL = {
  section: UPSTREAM,
  env: "TOKENBROKER_CONNECTIONS_URL",
  type: httpUrl(),
  default: "https://api.xero.com/connections",
  description: "where a grant's tenants are listed; https:// unless TOKENBROKER_ALLOW_INSECURE_ISSUER is on",
} satisfies Setting<URL>;

/** `TOKENBROKER_UPSTREAM_TIMEOUT_MS`. */
export const UPSTREAM_TIMEOUT_MS = {
  section: UPSTREAM,
  env: "TOKENBROKER_UPSTREAM_TIMEOUT_MS",
  type: positiveNumberValue(),
  default: "10000",
  description: "milliseconds per upstream request (each of the up to 3 attempts of a refresh)",
} satisfies Setting<number>;

/** `TOKENBROKER_ALLOW_INSECURE_ISSUER`. */
export const ALLOW_INSECURE_ISSUER = {
  section: UPSTREAM,
  env: "TOKENBROKER_ALLOW_INSECURE_ISSUER",
  type: onOff,
  unset: "off",
  description: "allow http:// issuer, connections and redirect URLs (local tests only)",
} satisfies Setting<boolean>;

/** Every setting of this section, in `--help` order. */
export const UPSTREAM_SETTINGS = [CLIENT_ID, CLIENT_SECRET, ISSUER, CONNECTIONS_URL, UPSTREAM_TIMEOUT_MS, ALLOW_INSECURE_ISSUER] as const;
