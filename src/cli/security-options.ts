import { readFileSync } from "node:fs";
import { userInfo } from "node:os";
import { createAuditLog, type AuditLog } from "../audit/audit-log.js";
import { createAuthenticator } from "../auth/authenticator.js";
import { ConfigError } from "../config.js";
import { loadEncryptionKeys, NO_KEY_MESSAGE } from "../crypto/encryption-keys.js";
import { createTokenCipher, type TokenCipher } from "../crypto/token-cipher.js";
import { errorFields, type Logger } from "../logger.js";
import { octalMode, openToOthers } from "../private-files.js";
import type { BrokerAuthOptions } from "../server/server-security.js";
import type { OnePortTls } from "../server/one-port-server.js";
import {
  ENCRYPTION_KEY_FILE,
  INSECURE_NO_AUTH,
  INSECURE_NO_ENCRYPTION,
  TLS_CERT,
  TLS_CLIENT_CA,
  TLS_KEY,
} from "../settings/security-settings.js";
import { readSetting, type SettingsSource } from "../settings/setting.js";
import type { Store } from "../store/store.js";

type EncryptionValues = { "encryption-key-file"?: string | undefined; "insecure-no-encryption"?: boolean | undefined };
type ServeSecurityValues = EncryptionValues & {
  "insecure-no-auth"?: boolean | undefined;
  "tls-cert"?: string | undefined;
  "tls-key"?: string | undefined;
  "tls-client-ca"?: string | undefined;
};

/** The configured encryption of tokens at rest. */
export interface EncryptionConfig {
  /** Undefined only with `--insecure-no-encryption`. */
  cipher: TokenCipher | undefined;
  /** The key file, re-read on SIGHUP by serve. */
  keyFile: string | undefined;
}

/**
 * The cipher from `--encryption-key-file` or the environment. No key and no
 * `--insecure-no-encryption` is a one-line ConfigError saying how to make one.
 */
export function encryptionFromFlags(values: EncryptionValues, env: NodeJS.ProcessEnv): EncryptionConfig {
  const source: SettingsSource = { flags: values, env };
  const keyFile = readSetting(ENCRYPTION_KEY_FILE, source);
  const clearText = readSetting(INSECURE_NO_ENCRYPTION, source);
  const keys = loadEncryptionKeys({ keyFile, env });
  if (!keys) {
    if (clearText) return { cipher: undefined, keyFile: undefined };
    throw new ConfigError(NO_KEY_MESSAGE);
  }
  return { cipher: createTokenCipher(keys), keyFile };
}

/** True for addresses only this machine can reach: 127.0.0.0/8, ::1, localhost. */
export function isLoopback(host: string): boolean {
  return /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host) || host === "::1" || host === "localhost" || host === "::ffff:127.0.0.1";
}

/** Serve's security settings, checked before anything is opened. */
export interface ServeSecurityConfig extends EncryptionConfig {
  auth: boolean;
  tls: OnePortTls | undefined;
}

/** Reads and checks serve's security flags; `--insecure-no-auth` off loopback is a ConfigError. */
export function serveSecurityFromFlags(values: ServeSecurityValues, env: NodeJS.ProcessEnv, host: string): ServeSecurityConfig {
  const source: SettingsSource = { flags: values, env };
  const noAuth = readSetting(INSECURE_NO_AUTH, source) ?? false;
  if (noAuth && !isLoopback(host)) {
    throw new ConfigError(
      `--insecure-no-auth is refused on ${host}: it is allowed only on a loopback address (127.0.0.1 or [::1]); ` +
        "create API keys with `tokenbroker keys create` instead",
    );
  }
  const certFile = readSetting(TLS_CERT, source);
  const keyFile = readSetting(TLS_KEY, source);
  const caFile = readSetting(TLS_CLIENT_CA, source);
  if ((certFile === undefined) !== (keyFile === undefined)) throw new ConfigError("give both --tls-cert and --tls-key, or neither");
  if (caFile !== undefined && certFile === undefined) throw new ConfigError("--tls-client-ca needs --tls-cert and --tls-key");
  const tls =
    certFile === undefined || keyFile === undefined
      ? undefined
      : {
          cert: readPem("--tls-cert", certFile),
          key: readPem("--tls-key", keyFile),
          ...(caFile === undefined ? {} : { clientCa: readPem("--tls-client-ca", caFile) }),
        };
  return { ...encryptionFromFlags(values, env), auth: !noAuth, tls };
}

function readPem(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new ConfigError(`${flag} ${path}: cannot read it (${(e as { code?: string }).code ?? "error"})`);
  }
}

/** What serve hands to `startBrokerServer`, and what it stops afterwards. */
export interface ServeSecurity {
  auth: BrokerAuthOptions | undefined;
  audit: AuditLog;
  /** Logs what is insecure or missing (no auth, no encryption, no keys yet): once the server listens. */
  announce(): Promise<void>;
  /** Writes the last audit entries and stops re-reading the key file. */
  close(): Promise<void>;
}

/**
 * Builds serve's authentication and audit on the opened store, warns about
 * what is insecure, and re-reads the encryption key file on SIGHUP (the way a
 * running broker learns a new key without a restart; see `rotate-key`).
 */
export function startServeSecurity(config: ServeSecurityConfig, store: Store, logger: Logger, env: NodeJS.ProcessEnv): ServeSecurity {
  const audit = createAuditLog({
    sink: store.auditLog,
    onError: (e) => logger.error(errorFields(e), "cannot write the audit log"),
  });
  const keys = store.apiKeys;
  const reload = () => {
    if (!config.cipher || config.keyFile === undefined) return;
    warnIfKeyFileOpen(config.keyFile, logger);
    try {
      const next = loadEncryptionKeys({ keyFile: config.keyFile, env });
      if (next) config.cipher.setKeys(next);
      logger.info({ event: "encryption_keys_reloaded", keyIds: config.cipher.keyIds }, "encryption keys re-read");
    } catch (e) {
      logger.error(
        { event: "encryption_keys_reload_failed", reason: e instanceof Error ? e.message : "error" },
        "cannot re-read the encryption key file; keeping the keys in use",
      );
    }
  };
  process.on("SIGHUP", reload);
  return {
    auth: config.auth ? { authenticator: createAuthenticator({ keys }) } : undefined,
    audit,
    async announce() {
      if (!config.auth) {
        logger.warn(
          { event: "insecure", auth: false },
          "authentication is OFF (--insecure-no-auth): every local process can get every token",
        );
      } else if (!(await keys.list()).some((k) => k.revokedAt === undefined)) {
        logger.warn({ event: "no_api_keys" }, "no API keys yet: create one with `tokenbroker keys create --name <name> --tenants '*'`");
      }
      if (!config.cipher)
        logger.warn({ event: "insecure", encryption: false }, "tokens are stored in clear text (--insecure-no-encryption)");
      if (config.keyFile !== undefined) warnIfKeyFileOpen(config.keyFile, logger);
      if (config.cipher) await warnIfUnsealed(store, logger);
    },
    async close() {
      process.off("SIGHUP", reload);
      await audit.close();
    },
  };
}

/** Warns (one line naming the file, its mode and the fix) when group or others can access the key file. */
export function warnIfKeyFileOpen(keyFile: string, logger: Logger): void {
  const mode = openToOthers(keyFile);
  if (mode === undefined) return;
  logger.warn(
    { event: "key_file_mode", file: keyFile, mode: octalMode(mode) },
    `encryption key file ${keyFile} is open to group or others (mode ${octalMode(mode)}): chmod 600 ${keyFile}`,
  );
}

/** Warns (one line) when token sets in clear text will be refused because a key is configured, and what to do. */
async function warnIfUnsealed(store: Store, logger: Logger): Promise<void> {
  const ids = await store.tokens.unsealed();
  if (ids.length === 0) return;
  logger.warn(
    { event: "token_sets_not_encrypted", count: ids.length, connectionIds: ids.slice(0, 20) },
    `${ids.length} stored token set${ids.length === 1 ? " is" : "s are"} in clear text and will be refused while an encryption key ` +
      "is configured: if this database was written with --insecure-no-encryption, encrypt it with " +
      "`tokenbroker rotate-key --new-key-file <key file>`; otherwise they were written without the key: re-authorise those connections",
  );
}

/** The actor of local admin commands in the audit log: `cli:<user>`. */
export function cliActor(): string {
  try {
    return `cli:${userInfo().username}`;
  } catch {
    return "cli";
  }
}

/**
 * Refuses, with one line, a database whose tokens the configured keys cannot
 * open: encrypted tokens without a key, or a key id missing from the keyring.
 */
export async function checkEncryptionKeys(store: Store, cipher: TokenCipher | undefined): Promise<void> {
  const inUse = (await store.tokens.keyIds()).filter((id): id is string => id !== null);
  if (inUse.length === 0) return;
  if (!cipher) {
    throw new ConfigError(
      `the database holds tokens encrypted under key ${inUse.join(", ")}: give that key with --encryption-key-file or TOKENBROKER_ENCRYPTION_KEY`,
    );
  }
  const missing = inUse.filter((id) => !cipher.keyIds.includes(id));
  if (missing.length > 0) {
    throw new ConfigError(
      `the database holds tokens encrypted under key ${missing.join(", ")}, which is not configured ` +
        `(configured: ${cipher.keyIds.join(", ")}); add it as an old key (a further line of the key file, or TOKENBROKER_OLD_ENCRYPTION_KEYS)`,
    );
  }
}

/** Records an admin command (connect, disconnect, revoke, import, keys) in the audit log, as `cli:<user>`. Never fails the command. */
export async function recordCliAction(
  store: Pick<Store, "auditLog">,
  entry: {
    action: string;
    tenantId?: string | undefined;
    connectionId?: string | undefined;
    outcome?: string;
    detail?: string | undefined;
  },
): Promise<void> {
  try {
    await store.auditLog.write([{ at: Date.now(), actor: cliActor(), outcome: "ok", ...entry }]);
  } catch {
    // The action is done; a database that cannot take the entry has already said so elsewhere.
  }
}
