/** Writes docs/settings.md from the schema: `npm run docs:settings` (runs the compiled dist/src/settings/write-settings-docs.js). */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { settingsMarkdown } from "./settings-docs.js";

const docs = join(import.meta.dirname, "..", "..", "..", "docs");
mkdirSync(docs, { recursive: true });
writeFileSync(join(docs, "settings.md"), settingsMarkdown());
process.stdout.write(`wrote ${join(docs, "settings.md")}\n`);
