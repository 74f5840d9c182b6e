/** Settings of notifications: the webhook, and when a dying refresh token is reported. */
import type { Setting, SettingSection } from "./setting.js";
import { httpUrl, positiveNumberValue, textValue } from "./value-types.js";

/** The notifications section. */
export const NOTIFY: SettingSection = {
  title: "Notifications",
  about:
    "Connection events (a connection needs re-authorisation, a refresh token is about to die) are logged as warnings, " +
    "and POSTed, signed, to a webhook if one is set: see [Alerts (webhooks)](observability.md#alerts-webhooks).",
};

/** `TOKENBROKER_WEBHOOK_URL`. */
export const WEBHOOK_URL = {
  section: NOTIFY,
  env: "TOKENBROKER_WEBHOOK_URL",
  type: httpUrl(),
  secret: true,
  unset: "log only",
  description: "where connection events are POSTed; never logged, since its path may hold a token",
} satisfies Setting<URL>;

/** `TOKENBROKER_WEBHOOK_SECRET`. */
export const WEBHOOK_SECRET = {
  section: NOTIFY,
  env: "TOKENBROKER_WEBHOOK_SECRET",
  type: textValue("text", { raw: true }),
  secret: true,
  description: "HMAC-SHA256 key of the tokenbroker-signature header; required with TOKENBROKER_WEBHOOK_URL",
} satisfies Setting<string>;

/** `TOKENBROKER_REFRESH_TOKEN_WARN_DAYS`. */
export const REFRESH_TOKEN_WARN_DAYS = {
  section: NOTIFY,
  env: "TOKENBROKER_REFRESH_TOKEN_WARN_DAYS",
  type: positiveNumberValue({ below: { limit: 60, why: "refresh tokens live 60 days" } }),
  default: "7",
  description: "warn this many days before an unrefreshed refresh token dies (day 60)",
} satisfies Setting<number>;

/** Every setting of this section, in `--help` order. */
export const NOTIFY_SETTINGS = [WEBHOOK_URL, WEBHOOK_SECRET, REFRESH_TOKEN_WARN_DAYS] as const;
