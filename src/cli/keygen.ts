import { parseArgs } from "node:util";
import { generateEncryptionKey } from "../crypto/encryption-keys.js";
import type { Command } from "./command.js";

/** `tokenbroker keygen`: a new encryption key for tokens at rest. */
export const keygenCommand: Command = {
  name: "keygen",
  summary: "print a new random encryption key (base64) for tokens at rest",
  help: `Usage: tokenbroker keygen > tokenbroker.key

Prints a new random 256-bit key, base64, for --encryption-key-file (or
TOKENBROKER_ENCRYPTION_KEY). \`openssl rand -base64 32\` makes an equivalent
key. Keep the file readable by the broker's user only (chmod 600): whoever
has the key and the database has the tokens. A lost key cannot be recovered:
the connections must then be imported or authorised again.

Options:
  -h, --help   show this help
`,
  async run(args, io) {
    parseArgs({ args, options: {}, allowPositionals: false });
    io.out.write(`${generateEncryptionKey()}\n`);
    return 0;
  },
};
