/** Settings of encryption at rest, API keys and TLS. */
import { ConfigError } from "./config-error.js";
import type { Setting, SettingSection, ValueType } from "./setting.js";
import { filePath, givenOrNot } from "./value-types.js";

/** Decodes one base64 (or base64url) key of exactly 32 bytes; `where` names its source in the error, never its value. */
export function parseEncryptionKey(text: string, where: string): Buffer {
  const trimmed = text.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(trimmed)) {
    throw new ConfigError(`${where} is not base64; create a key with \`tokenbroker keygen\``);
  }
  const key = Buffer.from(trimmed.replace(/-/g, "+").replace(/_/g, "/"), "base64");
  if (key.length !== 32) {
    throw new ConfigError(`${where} decodes to ${key.length} bytes, not 32; create a key with \`tokenbroker keygen\``);
  }
  return key;
}

const encryptionKey: ValueType<Buffer> = {
  accepts: "a base64 key of 32 bytes (`tokenbroker keygen`)",
  parse: (text, ctx) => parseEncryptionKey(text, ctx.name),
};

const encryptionKeyList: ValueType<Buffer[]> = {
  accepts: "base64 keys of 32 bytes, separated by commas or spaces",
  parse: (text, ctx) =>
    text
      .split(/[\s,]+/)
      .filter((k) => k !== "")
      .map((k, i) => parseEncryptionKey(k, `key ${i + 1} of ${ctx.name}`)),
};

/** The encryption section. */
export const ENCRYPTION: SettingSection = {
  title: "Encryption at rest",
  about:
    "The key(s) that encrypt tokens in the database: a key file, or the key in the environment. " +
    "Commands that read or write tokens (`serve`, `import`, `connect`, `disconnect`, `revoke`, `rotate-key`) take them; " +
    "see [Encryption at rest](security.md#encryption-at-rest).",
};

/** `--encryption-key-file`. */
export const ENCRYPTION_KEY_FILE = {
  section: ENCRYPTION,
  flag: "--encryption-key-file",
  placeholder: "PATH",
  env: "TOKENBROKER_ENCRYPTION_KEY_FILE",
  type: filePath,
  description:
    "key(s) that encrypt tokens at rest, base64, one a line, the current key first; create one with " +
    "`tokenbroker keygen --out PATH` (mode 0600). This or TOKENBROKER_ENCRYPTION_KEY is required unless " +
    "--insecure-no-encryption. Serve re-reads it on SIGHUP and warns when group or others can read it; " +
    "stored tokens not encrypted under a configured key are refused",
} satisfies Setting<string>;

/** `TOKENBROKER_ENCRYPTION_KEY`. */
export const ENCRYPTION_KEY = {
  section: ENCRYPTION,
  env: "TOKENBROKER_ENCRYPTION_KEY",
  type: encryptionKey,
  secret: true,
  description: "the key itself, instead of a key file (not both)",
} satisfies Setting<Buffer>;

/** `TOKENBROKER_OLD_ENCRYPTION_KEYS`. */
export const OLD_ENCRYPTION_KEYS = {
  section: ENCRYPTION,
  env: "TOKENBROKER_OLD_ENCRYPTION_KEYS",
  type: encryptionKeyList,
  secret: true,
  description: "older keys still accepted for reading during a rotation (see `tokenbroker rotate-key --help`)",
} satisfies Setting<Buffer[]>;

/** `--insecure-no-encryption`. */
export const INSECURE_NO_ENCRYPTION = {
  section: ENCRYPTION,
  flag: "--insecure-no-encryption",
  type: givenOrNot,
  unset: "off",
  description: "store tokens in clear text (tests only)",
} satisfies Setting<boolean>;

/** Every setting of encryption at rest, in `--help` order. */
export const ENCRYPTION_SETTINGS = [ENCRYPTION_KEY_FILE, ENCRYPTION_KEY, OLD_ENCRYPTION_KEYS, INSECURE_NO_ENCRYPTION] as const;

/** The access section. */
export const ACCESS: SettingSection = {
  title: "API keys and TLS",
  about:
    "Who may call `tokenbroker serve`, and over what: [API keys](security.md#api-keys) (`tokenbroker keys create`), " +
    "[TLS](security.md#tls) and mutual TLS.",
};

/** `--insecure-no-auth`. */
export const INSECURE_NO_AUTH = {
  section: ACCESS,
  flag: "--insecure-no-auth",
  type: givenOrNot,
  unset: "off",
  description: "serve tokens without API keys; refused unless --listen is a loopback address; warns at start-up",
} satisfies Setting<boolean>;

/** `--tls-cert`. */
export const TLS_CERT = {
  section: ACCESS,
  flag: "--tls-cert",
  placeholder: "PATH",
  env: "TOKENBROKER_TLS_CERT",
  type: filePath,
  unset: "cleartext",
  description: "serve HTTP/2 and HTTP/1.1 over TLS with this certificate chain (PEM)",
} satisfies Setting<string>;

/** `--tls-key`. */
export const TLS_KEY = {
  section: ACCESS,
  flag: "--tls-key",
  placeholder: "PATH",
  env: "TOKENBROKER_TLS_KEY",
  type: filePath,
  description: "the private key of --tls-cert (PEM)",
} satisfies Setting<string>;

/** `--tls-client-ca`. */
export const TLS_CLIENT_CA = {
  section: ACCESS,
  flag: "--tls-client-ca",
  placeholder: "PATH",
  env: "TOKENBROKER_TLS_CLIENT_CA",
  type: filePath,
  unset: "no client certificates",
  description: "require client certificates signed by this CA (mutual TLS)",
} satisfies Setting<string>;

/** Every setting of this section, in `--help` order. */
export const ACCESS_SETTINGS = [INSECURE_NO_AUTH, TLS_CERT, TLS_KEY, TLS_CLIENT_CA] as const;
