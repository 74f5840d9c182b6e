import { ConfigError, upstreamFromEnv, type ListenAddress, type UpstreamConfig } from "../config.js";
import { consentFromEnv, type ConsentConfig } from "../consent/consent-config.js";
import { notificationsFromEnv } from "../notify/notify-config.js";
import type { NotifierOptions } from "../notify/notifier.js";
import { quotaConfigFrom, type QuotaConfig } from "../quota/quota-config.js";
import type { ConnectionLimits } from "../server/connection-limits.js";
import { SERVE_SETTINGS } from "../settings/all-settings.js";
import { KEEPALIVE_DAYS, LEAD_TIME, LEASE_TTL, TENANT_CHECK_INTERVAL } from "../settings/refresh-settings.js";
import { DB_POOL_SIZE, LISTEN, LOG_FORMAT, LOG_LEVEL, SHUTDOWN_GRACE } from "../settings/server-settings.js";
import { flagOptions, readSetting, settingName, type SettingsSource } from "../settings/setting.js";
import { UPSTREAM_TIMEOUT_MS } from "../settings/upstream-settings.js";
import { limitsFromFlags } from "./limit-options.js";
import { proxyFromEnv } from "./proxy-config.js";
import type { XeroProxyOptions } from "../proxy/create-proxy.js";
import { serveSecurityFromFlags, type ServeSecurityConfig } from "./security-options.js";
import { dbPath } from "./store-options.js";

/** The `parseArgs` options of `tokenbroker serve`: one flag per setting that has one. */
export const SERVE_FLAGS = flagOptions(SERVE_SETTINGS);

/** The values `parseArgs` gives for {@link SERVE_FLAGS}. */
export type ServeFlagValues = {
  [K in keyof typeof SERVE_FLAGS]?: (typeof SERVE_FLAGS)[K]["type"] extends "boolean" ? boolean | undefined : string | undefined;
};

/** Everything `tokenbroker serve` is configured with, checked before anything is opened or listened on. */
export interface ServeConfig {
  listen: ListenAddress;
  db: string;
  /** PostgreSQL: connections in each process's pool. */
  dbPoolSize: number;
  upstream: UpstreamConfig;
  consent: ConsentConfig;
  leadTimeMs: number;
  keepAliveAfterMs: number;
  leaseTtlMs: number;
  /** How often each connection's organisations are re-read from Xero, ms. */
  tenantCheckIntervalMs: number;
  shutdownGraceMs: number;
  logLevel: string;
  logFormat: "json" | "pretty";
  notifications: NotifierOptions;
  limits: ConnectionLimits;
  /** Xero's call limits the quota keeper keeps, and the longest wait. */
  quota: QuotaConfig;
  /** Reads the TLS files and the encryption keys. */
  security: ServeSecurityConfig;
  /** The Xero API proxy at `/xero/*`; undefined when `TOKENBROKER_PROXY` is off. */
  proxy: XeroProxyOptions | undefined;
}

/**
 * Reads every setting of `tokenbroker serve` from its flags and the
 * environment, through the settings schema; the first missing or bad one is a
 * ConfigError naming it.
 */
export function serveConfigFrom(values: ServeFlagValues, env: NodeJS.ProcessEnv): ServeConfig {
  const source: SettingsSource = { flags: values, env };
  const listen = readSetting(LISTEN, source);
  const upstream = upstreamFromEnv(env);
  const consent = consentFromEnv(env);
  const leadTimeMs = 1000 * readSetting(LEAD_TIME, source);
  const keepAliveAfterMs = 86_400_000 * readSetting(KEEPALIVE_DAYS, source);
  const leaseTtlMs = 1000 * readSetting(LEASE_TTL, source);
  if (leaseTtlMs <= upstream.timeoutMs) {
    // A lease that lapses while its request may still be answered would let a second process spend the same refresh token.
    throw new ConfigError(
      `${settingName(LEASE_TTL)} (${leaseTtlMs / 1000} s) must be longer than ${settingName(UPSTREAM_TIMEOUT_MS)} (${upstream.timeoutMs} ms)`,
    );
  }
  const shutdownGraceMs = 1000 * readSetting(SHUTDOWN_GRACE, source);
  const logLevel = readSetting(LOG_LEVEL, source);
  const logFormat = readSetting(LOG_FORMAT, source);
  const notifications = notificationsFromEnv(env);
  const limits = limitsFromFlags(values, env);
  const quota = quotaConfigFrom(source);
  const security = serveSecurityFromFlags(values, env, listen.host);
  const proxy = proxyFromEnv(env, upstream);
  return {
    listen,
    db: dbPath(values.db, env),
    dbPoolSize: readSetting(DB_POOL_SIZE, source),
    upstream,
    consent,
    leadTimeMs,
    keepAliveAfterMs,
    leaseTtlMs,
    tenantCheckIntervalMs: 1000 * readSetting(TENANT_CHECK_INTERVAL, source),
    shutdownGraceMs,
    logLevel,
    logFormat,
    notifications,
    limits,
    quota,
    security,
    proxy,
  };
}
