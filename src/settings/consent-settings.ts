/** Settings of the consent flow: where Xero sends the browser back, and what is asked for. */
import { ConfigError } from "./config-error.js";
import type { Setting, SettingSection } from "./setting.js";
import { httpUrl, wordList } from "./value-types.js";

/** The consent section. */
export const CONSENT: SettingSection = {
  title: "Connecting an organisation",
  about:
    "The consent flow of the status page (`GET /connect`) and of `tokenbroker connect`: see " +
    "[Connecting an organisation](operations.md#connecting-an-organisation).",
};

/** `TOKENBROKER_REDIRECT_URI`. */
export const REDIRECT_URI = {
  section: CONSENT,
  env: "TOKENBROKER_REDIRECT_URI",
  type: httpUrl({ noQuery: true }),
  default: "http://localhost:50051/oauth/callback",
  description:
    "where Xero sends the browser back; register it, exactly, with your Xero app. https:// unless its host is localhost " +
    "(or TOKENBROKER_ALLOW_INSECURE_ISSUER is on)",
} satisfies Setting<URL>;

/** `TOKENBROKER_SCOPES`. */
export const SCOPES = {
  section: CONSENT,
  env: "TOKENBROKER_SCOPES",
  type: wordList("OAuth scopes separated by spaces or commas", (scope, ctx) => {
    // RFC 6749 §3.3 scope-token: printable ASCII except space, `"` and `\`.
    if (!/^[\x21\x23-\x5B\x5D-\x7E]+$/.test(scope)) throw new ConfigError(`${ctx.name} has an invalid scope ${JSON.stringify(scope)}`);
  }),
  default: "openid profile email accounting.transactions accounting.settings offline_access",
  description: "what the consent asks for; offline_access (the refresh token) is always added",
} satisfies Setting<string[]>;

/** Every setting of this section, in `--help` order. */
export const CONSENT_SETTINGS = [REDIRECT_URI, SCOPES] as const;
