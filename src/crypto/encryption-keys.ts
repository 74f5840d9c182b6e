import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { ConfigError } from "../config.js";
import { ENCRYPTION_KEY, ENCRYPTION_KEY_FILE, OLD_ENCRYPTION_KEYS, parseEncryptionKey } from "../settings/security-settings.js";
import { readSetting, settingName, type SettingsSource } from "../settings/setting.js";

export { parseEncryptionKey };

/** Where the encryption keys of a command come from. */
export interface EncryptionKeySource {
  /** `--encryption-key-file` (or `TOKENBROKER_ENCRYPTION_KEY_FILE`): one base64 key a line, the current key first. */
  keyFile?: string | undefined;
  /** The environment: `TOKENBROKER_ENCRYPTION_KEY` and `TOKENBROKER_OLD_ENCRYPTION_KEYS`. */
  env: NodeJS.ProcessEnv;
}

/** The one line printed when a command that stores tokens has no key. */
export const NO_KEY_MESSAGE =
  "no encryption key: create one with `tokenbroker keygen --out tokenbroker.key` (or `openssl rand -base64 32 > tokenbroker.key; chmod 600 tokenbroker.key`) " +
  "and pass --encryption-key-file tokenbroker.key or set TOKENBROKER_ENCRYPTION_KEY; " +
  "--insecure-no-encryption stores tokens in clear text";

/** A new random AES-256 key, base64 (what `tokenbroker keygen` prints). */
export function generateEncryptionKey(): string {
  return randomBytes(32).toString("base64");
}

/** The keys of a key file: one a line, current first; blank lines and `#` comments are skipped. */
export function readKeyFile(path: string): Buffer[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as { code?: string }).code ?? "unreadable";
    throw new ConfigError(`cannot read encryption key file ${path}: ${code}`);
  }
  const lines = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"));
  if (lines.length === 0) throw new ConfigError(`encryption key file ${path} holds no key; create one with \`tokenbroker keygen\``);
  return lines.map((line, i) => parseEncryptionKey(line, `line ${i + 1} of ${path}`));
}

/**
 * The configured keyring (current key first), or undefined when none is
 * configured. A key file and `TOKENBROKER_ENCRYPTION_KEY` together are an
 * error: one source of truth.
 */
export function loadEncryptionKeys(source: EncryptionKeySource): Buffer[] | undefined {
  const settings: SettingsSource = { flags: { [ENCRYPTION_KEY_FILE.flag.slice(2)]: source.keyFile }, env: source.env };
  const file = readSetting(ENCRYPTION_KEY_FILE, settings);
  const envKey = readSetting(ENCRYPTION_KEY, settings);
  const oldKeys = readSetting(OLD_ENCRYPTION_KEYS, settings) ?? [];
  if (file !== undefined) {
    if (envKey) throw new ConfigError(`give the encryption key either as a key file or as ${settingName(ENCRYPTION_KEY)}, not both`);
    return [...readKeyFile(file), ...oldKeys];
  }
  if (!envKey) {
    if (oldKeys.length > 0) throw new ConfigError(`${settingName(OLD_ENCRYPTION_KEYS)} is set but ${settingName(ENCRYPTION_KEY)} is not`);
    return undefined;
  }
  return [envKey, ...oldKeys];
}
