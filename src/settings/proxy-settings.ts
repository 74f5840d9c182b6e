/** Settings of the Xero API proxy (`/xero/*` on the broker's port). */
import type { Setting, SettingSection } from "./setting.js";
import { httpUrl, onOff, positiveNumberValue, wholeNumberValue } from "./value-types.js";

/** The proxy section. */
export const PROXY: SettingSection = {
  title: "Xero API proxy",
  about:
    "Channels call Xero's API through the broker at `/xero/{path}` with their API key; the broker adds the organisation's access token " +
    "and keeps its call budget. Environment only. What it forwards and refuses: [Xero API proxy](proxy.md).",
};

/** `TOKENBROKER_PROXY`. */
export const PROXY_ON = {
  section: PROXY,
  env: "TOKENBROKER_PROXY",
  type: onOff,
  default: "on",
  description: "serve the Xero API proxy at /xero/* on the broker's port (off: 404 there)",
} satisfies Setting<boolean>;

/** `TOKENBROKER_API_URL`. */
export const API_URL = {
  section: PROXY,
  env: "TOKENBROKER_API_URL",
  type: httpUrl({ noQuery: true }),
  default: "https://api.xero.com",
  description:
    "Xero's API: /xero/{path} is forwarded to this URL + /{path} and nowhere else; https:// unless TOKENBROKER_ALLOW_INSECURE_ISSUER is on",
} satisfies Setting<URL>;

/** `TOKENBROKER_PROXY_REPLAY_KIB`. */
export const PROXY_REPLAY_KIB = {
  section: PROXY,
  env: "TOKENBROKER_PROXY_REPLAY_KIB",
  type: wholeNumberValue(1024 * 1024),
  default: "1024",
  description:
    "request bodies up to this size are held in memory, so that a call Xero answers 401 is sent again once with a refreshed token; a longer body is streamed and Xero's 401 passes through",
} satisfies Setting<number>;

/** `TOKENBROKER_PROXY_TIMEOUT_MS`. */
export const PROXY_TIMEOUT_MS = {
  section: PROXY,
  env: "TOKENBROKER_PROXY_TIMEOUT_MS",
  type: positiveNumberValue(),
  default: "60000",
  description: "milliseconds without a byte from Xero before a proxied call ends: 504 before Xero's response headers, cut off after",
} satisfies Setting<number>;

/** Every setting of this section, in `--help` order. */
export const PROXY_SETTINGS = [PROXY_ON, API_URL, PROXY_REPLAY_KIB, PROXY_TIMEOUT_MS] as const;
