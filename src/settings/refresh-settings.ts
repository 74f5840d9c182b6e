/** Settings of when tokens are refreshed and how long a refresh may hold its lease. */
import type { Setting, SettingSection } from "./setting.js";
import { positiveNumberValue } from "./value-types.js";

/** The refresh section. */
export const REFRESH: SettingSection = {
  title: "Refreshing",
  about:
    "When tokens are refreshed ahead of need, and how long a refresh holds its lease on a token set: see " +
    "[How it refreshes](design.md#how-it-refreshes) and [Crash safety](high-availability.md#crash-safety).",
};

/** `--lead-time`, in seconds. */
export const LEAD_TIME = {
  section: REFRESH,
  flag: "--lead-time",
  placeholder: "SECONDS",
  env: "TOKENBROKER_LEAD_TIME_SECONDS",
  type: positiveNumberValue(),
  default: "300",
  description: "refresh tokens in use this long before they expire (at most half a token's lifetime)",
} satisfies Setting<number>;

/** `--keepalive-days`. */
export const KEEPALIVE_DAYS = {
  section: REFRESH,
  flag: "--keepalive-days",
  placeholder: "DAYS",
  env: "TOKENBROKER_KEEPALIVE_DAYS",
  type: positiveNumberValue(),
  default: "30",
  description: "refresh idle token sets when their refresh token is this old (Xero's die at 60 days)",
} satisfies Setting<number>;

/** `--lease-ttl`, in seconds. */
export const LEASE_TTL = {
  section: REFRESH,
  flag: "--lease-ttl",
  placeholder: "SECONDS",
  env: "TOKENBROKER_LEASE_TTL_SECONDS",
  type: positiveNumberValue(),
  default: "30",
  description:
    "how long a refresh lease lasts: a crashed process's refresh is finished by another (or the restarted) process " +
    "this long after it began, plus at most 1 s; must exceed TOKENBROKER_UPSTREAM_TIMEOUT_MS",
} satisfies Setting<number>;

/** `--tenant-check-interval`, in seconds. */
export const TENANT_CHECK_INTERVAL = {
  section: REFRESH,
  flag: "--tenant-check-interval",
  placeholder: "SECONDS",
  env: "TOKENBROKER_TENANT_CHECK_INTERVAL_SECONDS",
  type: positiveNumberValue(),
  default: "3600",
  description:
    "re-read each connection's organisations from Xero's connections list this often (spread out, one broker per " +
    "connection, with a still-valid access token): organisations removed at Xero are marked removed, new ones served",
} satisfies Setting<number>;

/** Every setting of this section, in `--help` order. */
export const REFRESH_SETTINGS = [LEAD_TIME, KEEPALIVE_DAYS, LEASE_TTL, TENANT_CHECK_INTERVAL] as const;
