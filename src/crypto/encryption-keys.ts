import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { ConfigError } from "../config.js";

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

/** The keys of a key file: one a line, current first; blank lines and `#` comments are skipped. */
export function readKeyFile(path: string): Buffer[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    const code = (e as { code?: string }).code ?? "unreadable";
    throw new ConfigError(`cannot read encryption key file ${path}: ${code}`);
  }
  const lines = text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== "" && !l.startsWith("#"));
  if (lines.length === 0) throw new ConfigError(`encryption key file ${path} holds no key; create one with \`tokenbroker keygen\``);
  return lines.map((line, i) => parseEncryptionKey(line, `line ${i + 1} of ${path}`));
}

/**
 * The configured keyring (current key first), or undefined when none is
 * configured. A key file and `TOKENBROKER_ENCRYPTION_KEY` together are an
 * error: one source of truth.
 */
export function loadEncryptionKeys(source: EncryptionKeySource): Buffer[] | undefined {
  const file = source.keyFile ?? source.env["TOKENBROKER_ENCRYPTION_KEY_FILE"];
  const envKey = source.env["TOKENBROKER_ENCRYPTION_KEY"]?.trim();
  const oldKeys = (source.env["TOKENBROKER_OLD_ENCRYPTION_KEYS"] ?? "").split(/[\s,]+/).filter((k) => k !== "");
  if (file !== undefined && file !== "") {
    if (envKey) throw new ConfigError("give the encryption key either as a key file or as TOKENBROKER_ENCRYPTION_KEY, not both");
    return [...readKeyFile(file), ...oldKeys.map((k, i) => parseEncryptionKey(k, `key ${i + 1} of TOKENBROKER_OLD_ENCRYPTION_KEYS`))];
  }
  if (!envKey) {
    if (oldKeys.length > 0) throw new ConfigError("TOKENBROKER_OLD_ENCRYPTION_KEYS is set but TOKENBROKER_ENCRYPTION_KEY is not");
    return undefined;
  }
  return [
    parseEncryptionKey(envKey, "TOKENBROKER_ENCRYPTION_KEY"),
    ...oldKeys.map((k, i) => parseEncryptionKey(k, `key ${i + 1} of TOKENBROKER_OLD_ENCRYPTION_KEYS`)),
  ];
}
