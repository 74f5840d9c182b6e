import { parseArgs } from "node:util";
import { ConfigError } from "../config.js";
import { generateEncryptionKey, parseEncryptionKey } from "../crypto/encryption-keys.js";
import { keyIdOf } from "../crypto/token-cipher.js";
import { writePrivateFile } from "../private-files.js";
import type { Command } from "./command.js";

/** `tokenbroker keygen`: a new encryption key for tokens at rest. */
export const keygenCommand: Command = {
  name: "keygen",
  summary: "write a new random encryption key (base64) for tokens at rest to a 0600 file",
  help: `Usage: tokenbroker keygen --out PATH
       tokenbroker keygen              (prints the key on standard output)

Makes a new random 256-bit key, base64, for --encryption-key-file (or
TOKENBROKER_ENCRYPTION_KEY). With --out it writes the key to a new file of
mode 0600 (readable by its owner only, whatever the umask), never replacing
an existing file, and prints the file and the key's id, not the key.
\`openssl rand -base64 32\` makes an equivalent key. Whoever has the key and
the database has the tokens. A lost key cannot be recovered: the
connections must then be imported or authorised again.

Options:
  --out PATH   write the key to this new file (mode 0600) instead of printing it
  -h, --help   show this help
`,
  async run(args, io) {
    const { values } = parseArgs({ args, options: { out: { type: "string" } }, allowPositionals: false });
    const key = generateEncryptionKey();
    const out = values.out;
    if (out === undefined) {
      io.out.write(`${key}\n`);
      return 0;
    }
    try {
      writePrivateFile(out, `${key}\n`);
    } catch (e) {
      const code = (e as { code?: string }).code ?? "error";
      if (code === "EEXIST") throw new ConfigError(`${out} exists: keygen never replaces a key file (choose another name)`);
      throw new ConfigError(`cannot write ${out}: ${code}`);
    }
    io.out.write(`${out}: new key ${keyIdOf(parseEncryptionKey(key, "the new key"))} (mode 0600)\n`);
    return 0;
  },
};
