import { parseArgs } from "node:util";
import { ConfigError } from "../config.js";
import { loadEncryptionKeys, readKeyFile } from "../crypto/encryption-keys.js";
import { createTokenCipher } from "../crypto/token-cipher.js";
import { type ReencryptResult, RotationIncompleteError } from "../store/token-set-store.js";
import type { Command } from "./command.js";
import { checkEncryptionKeys, recordCliAction } from "./security-options.js";
import { dbPath, openStoreOrExplain } from "./store-options.js";
import { DB } from "../settings/server-settings.js";
import { settingsHelp } from "../settings/settings-help.js";

/** `tokenbroker rotate-key`: re-encrypt every token set under a new key while brokers run. */
export const rotateKeyCommand: Command = {
  name: "rotate-key",
  summary: "re-encrypt every stored token under a new key, while brokers keep serving",
  help: `Usage: tokenbroker rotate-key --new-key-file PATH [options]

Re-encrypts the access, refresh and id tokens of every connection under the
key in --new-key-file (its first line), in small transactions, while brokers
keep serving. Token sets written in clear text (--insecure-no-encryption)
are encrypted; only this command does that: a broker with a key refuses
them. A token set partly in clear text (altered by someone without the key)
is left as it is and named, with exit status 2, once the others are done:
re-authorise that connection and run rotate-key again. The keys the tokens are under now come from the
usual settings (--encryption-key-file or TOKENBROKER_ENCRYPTION_KEY and
TOKENBROKER_OLD_ENCRYPTION_KEYS).

Rotation without downtime:
  1. tokenbroker keygen --out new.key
  2. Give every running broker the new key as its current key and the old
     one as an old key: write the new key as the first line of the key file
     and the old key as the second, then \`kill -HUP\` each broker (or
     restart them one at a time with TOKENBROKER_ENCRYPTION_KEY=<new> and
     TOKENBROKER_OLD_ENCRYPTION_KEYS=<old>). They now write under the new
     key and read both.
  3. tokenbroker rotate-key --encryption-key-file old.key --new-key-file new.key
  4. Remove the old key from the brokers' settings.
If some broker still writes under the old key, step 3 says so and fails.

Options:
  --new-key-file PATH         the new key (base64; \`tokenbroker keygen\`)
  --encryption-key-file PATH  the current key(s) [TOKENBROKER_ENCRYPTION_KEY_FILE]
  -h, --help                  show this help

${settingsHelp([DB])}
`,
  async run(args, io) {
    const { values } = parseArgs({
      args,
      options: { "new-key-file": { type: "string" }, "encryption-key-file": { type: "string" }, db: { type: "string" } },
      allowPositionals: false,
    });
    const newKeyFile = values["new-key-file"];
    if (newKeyFile === undefined) throw new ConfigError("--new-key-file is required (create one with `tokenbroker keygen --out new.key`)");
    const newKey = readKeyFile(newKeyFile)[0]!;
    const oldKeys = loadEncryptionKeys({ keyFile: values["encryption-key-file"], env: io.env }) ?? [];
    const to = createTokenCipher([newKey]);
    const from = createTokenCipher([newKey, ...oldKeys]);
    const store = await openStoreOrExplain(dbPath(values.db, io.env));
    try {
      await checkEncryptionKeys(store, from);
      let result: ReencryptResult;
      try {
        result = await store.tokens.reencrypt({ from, to });
      } catch (e) {
        if (e instanceof RotationIncompleteError) throw new ConfigError(e.message);
        throw e;
      }
      await recordCliAction(store, { action: "rotate_key", detail: `key=${to.keyId} reencrypted=${result.reencrypted}` });
      io.out.write(
        `re-encrypted ${result.reencrypted} token set${result.reencrypted === 1 ? "" : "s"} under key ${to.keyId}` +
          ` (${result.unchanged} already were)\n`,
      );
      return 0;
    } finally {
      await store.close();
    }
  },
};
