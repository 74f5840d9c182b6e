/** Settings of the quota keeper: Xero's call limits for this app's tier, and how long a call may wait for its turn. */
import type { Setting, SettingSection } from "./setting.js";
import { wholeNumberValue } from "./value-types.js";

/** The quota section. */
export const QUOTA: SettingSection = {
  title: "Xero's call limits",
  about:
    "The budgets every channel calling Xero through the broker shares, per organisation and per app, counted in the database " +
    "so that brokers sharing it share them. Xero's defaults are those of its Core and higher tiers; set yours for your tier. " +
    "How calls wait and what they are answered: [Call limits](call-limits.md).",
};

/** `TOKENBROKER_TENANT_CALLS_IN_FLIGHT`. */
export const TENANT_CALLS_IN_FLIGHT = {
  section: QUOTA,
  env: "TOKENBROKER_TENANT_CALLS_IN_FLIGHT",
  type: wholeNumberValue(),
  default: "5",
  description: "calls to one organisation in flight at once (Xero allows 5 concurrent calls per organisation)",
} satisfies Setting<number>;

/** `TOKENBROKER_TENANT_CALLS_PER_MINUTE`. */
export const TENANT_CALLS_PER_MINUTE = {
  section: QUOTA,
  env: "TOKENBROKER_TENANT_CALLS_PER_MINUTE",
  type: wholeNumberValue(),
  default: "60",
  description: "calls to one organisation in any minute, counted over any 61 s so that no minute Xero might count holds more (Xero: 60)",
} satisfies Setting<number>;

/** `TOKENBROKER_TENANT_CALLS_PER_DAY`. */
export const TENANT_CALLS_PER_DAY = {
  section: QUOTA,
  env: "TOKENBROKER_TENANT_CALLS_PER_DAY",
  type: wholeNumberValue(),
  default: "5000",
  description: "calls to one organisation in any 24 h, counted in whole hours (Xero: 5,000; its Starter tier allows 1,000 a day)",
} satisfies Setting<number>;

/** `TOKENBROKER_APP_CALLS_PER_MINUTE`. */
export const APP_CALLS_PER_MINUTE = {
  section: QUOTA,
  env: "TOKENBROKER_APP_CALLS_PER_MINUTE",
  type: wholeNumberValue(),
  default: "10000",
  description: "calls of the whole app, every organisation together, in any minute (Xero: 10,000)",
} satisfies Setting<number>;

/** `TOKENBROKER_QUOTA_WAIT_MS`. */
export const QUOTA_WAIT_MS = {
  section: QUOTA,
  env: "TOKENBROKER_QUOTA_WAIT_MS",
  type: wholeNumberValue(),
  default: "10000",
  description:
    "the longest a call over budget waits, first in first out with its organisation's other calls; past it (or when the " +
    "budget frees later than that, or Xero's 429 holds it longer) the broker answers 429 with Retry-After without calling Xero",
} satisfies Setting<number>;

/** Every setting of this section, in `--help` order. */
export const QUOTA_SETTINGS = [
  TENANT_CALLS_IN_FLIGHT,
  TENANT_CALLS_PER_MINUTE,
  TENANT_CALLS_PER_DAY,
  APP_CALLS_PER_MINUTE,
  QUOTA_WAIT_MS,
] as const;
