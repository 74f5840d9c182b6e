import { ConfigError, positiveNumber } from "../config.js";
import type { NotifierOptions } from "./notifier.js";

/**
 * Notification settings from the environment: `TOKENBROKER_WEBHOOK_URL`,
 * `TOKENBROKER_WEBHOOK_SECRET` (required with the URL) and
 * `TOKENBROKER_REFRESH_TOKEN_WARN_DAYS` (default 7).
 */
export function notificationsFromEnv(env: NodeJS.ProcessEnv): NotifierOptions {
  const warnDays = positiveNumber("TOKENBROKER_REFRESH_TOKEN_WARN_DAYS", env["TOKENBROKER_REFRESH_TOKEN_WARN_DAYS"], 7);
  if (warnDays >= 60) throw new ConfigError("TOKENBROKER_REFRESH_TOKEN_WARN_DAYS must be less than 60 (refresh tokens live 60 days)");
  const rawUrl = env["TOKENBROKER_WEBHOOK_URL"]?.trim();
  if (!rawUrl) return { warnDays };
  let webhookUrl: URL;
  try {
    webhookUrl = new URL(rawUrl);
  } catch {
    throw new ConfigError("TOKENBROKER_WEBHOOK_URL is not a URL");
  }
  if (webhookUrl.protocol !== "https:" && webhookUrl.protocol !== "http:") {
    throw new ConfigError("TOKENBROKER_WEBHOOK_URL must be an http:// or https:// URL");
  }
  const webhookSecret = env["TOKENBROKER_WEBHOOK_SECRET"];
  if (!webhookSecret) {
    throw new ConfigError("TOKENBROKER_WEBHOOK_SECRET is not set: webhooks to TOKENBROKER_WEBHOOK_URL are signed with it");
  }
  return { webhookUrl, webhookSecret, warnDays };
}
