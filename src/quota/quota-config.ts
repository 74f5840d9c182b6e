import {
  APP_CALLS_PER_MINUTE,
  QUOTA_WAIT_MS,
  TENANT_CALLS_IN_FLIGHT,
  TENANT_CALLS_PER_DAY,
  TENANT_CALLS_PER_MINUTE,
} from "../settings/quota-settings.js";
import { readSetting, type SettingsSource } from "../settings/setting.js";
import type { QuotaLimits } from "../store/quota-store.js";

/** What the quota keeper is configured with (see `createCallBudget`). */
export interface QuotaConfig {
  limits: QuotaLimits;
  /** `TOKENBROKER_QUOTA_WAIT_MS`. */
  maxWaitMs: number;
}

/** Reads the quota settings (`TOKENBROKER_TENANT_CALLS_IN_FLIGHT`, `_PER_MINUTE`, `_PER_DAY`, `TOKENBROKER_APP_CALLS_PER_MINUTE`, `TOKENBROKER_QUOTA_WAIT_MS`). */
export function quotaConfigFrom(source: SettingsSource): QuotaConfig {
  return {
    limits: {
      inFlight: readSetting(TENANT_CALLS_IN_FLIGHT, source),
      perMinute: readSetting(TENANT_CALLS_PER_MINUTE, source),
      perDay: readSetting(TENANT_CALLS_PER_DAY, source),
      appPerMinute: readSetting(APP_CALLS_PER_MINUTE, source),
    },
    maxWaitMs: readSetting(QUOTA_WAIT_MS, source),
  };
}
