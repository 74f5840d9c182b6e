/** Every setting of tokenbroker, section by section: what docs/settings.md lists. */
import { CONSENT_SETTINGS } from "./consent-settings.js";
import { LIMIT_SETTINGS } from "./limit-settings.js";
import { NOTIFY_SETTINGS } from "./notify-settings.js";
import { PROXY_SETTINGS } from "./proxy-settings.js";
import { QUOTA_SETTINGS } from "./quota-settings.js";
import { REFRESH_SETTINGS } from "./refresh-settings.js";
import { ACCESS_SETTINGS, ENCRYPTION_SETTINGS } from "./security-settings.js";
import { DB, DEBUG, SERVER_SETTINGS } from "./server-settings.js";
import type { Setting } from "./setting.js";
import { ALLOW_INSECURE_ISSUER, CONNECTIONS_URL, ISSUER, UPSTREAM_SETTINGS, UPSTREAM_TIMEOUT_MS } from "./upstream-settings.js";

/** The settings `tokenbroker serve` reads, in `--help` order. */
export const SERVE_SETTINGS = [
  ...SERVER_SETTINGS,
  ...REFRESH_SETTINGS,
  ...ENCRYPTION_SETTINGS,
  ...ACCESS_SETTINGS,
  ...LIMIT_SETTINGS,
  ...UPSTREAM_SETTINGS,
  ...PROXY_SETTINGS,
  ...QUOTA_SETTINGS,
  ...NOTIFY_SETTINGS,
  ...CONSENT_SETTINGS,
] as const;

/** The settings of the commands that reach Xero and the stored tokens: `import`, `disconnect`, `revoke`. */
export const UPSTREAM_COMMAND_SETTINGS = [DB, ...ENCRYPTION_SETTINGS, ...UPSTREAM_SETTINGS] as const;

/** The settings of `tokenbroker custom`: the store, and the identity server without the broker's own client (a custom connection brings its own). */
export const CUSTOM_COMMAND_SETTINGS = [
  DB,
  ...ENCRYPTION_SETTINGS,
  ISSUER,
  CONNECTIONS_URL,
  UPSTREAM_TIMEOUT_MS,
  ALLOW_INSECURE_ISSUER,
] as const;

/** The settings of `tokenbroker connect`. */
export const CONNECT_SETTINGS = [...UPSTREAM_COMMAND_SETTINGS, ...CONSENT_SETTINGS] as const;

/** Every setting, in docs order. */
export const ALL_SETTINGS: readonly Setting<unknown>[] = [...SERVE_SETTINGS, DEBUG];
