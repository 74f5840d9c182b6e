import { ConfigError } from "../config.js";
import { REFRESH_TOKEN_WARN_DAYS, WEBHOOK_SECRET, WEBHOOK_URL } from "../settings/notify-settings.js";
import { readSetting, settingName, type SettingsSource } from "../settings/setting.js";
import type { NotifierOptions } from "./notifier.js";

/**
 * Notification settings from the environment: `TOKENBROKER_WEBHOOK_URL`,
 * `TOKENBROKER_WEBHOOK_SECRET` (required with the URL) and
 * `TOKENBROKER_REFRESH_TOKEN_WARN_DAYS` (default 7).
 */
export function notificationsFromEnv(env: NodeJS.ProcessEnv): NotifierOptions {
  const source: SettingsSource = { flags: {}, env };
  const warnDays = readSetting(REFRESH_TOKEN_WARN_DAYS, source);
  const webhookUrl = readSetting(WEBHOOK_URL, source);
  const webhookSecret = readSetting(WEBHOOK_SECRET, source);
  if (!webhookUrl) return { warnDays };
  if (webhookSecret === undefined) {
    throw new ConfigError(`${settingName(WEBHOOK_SECRET)} is not set: webhooks to ${settingName(WEBHOOK_URL)} are signed with it`);
  }
  return { webhookUrl, webhookSecret, warnDays };
}
