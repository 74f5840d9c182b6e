/** docs/settings.md, generated from the schema (`npm run docs:settings`); a test fails when the committed page differs. */
import { ALL_SETTINGS } from "./all-settings.js";
import type { Setting, SettingSection } from "./setting.js";
import { defaultText } from "./settings-help.js";

/** Where the generated page is, from the repository's root. */
export const DOCS_PAGE = "docs/settings.md";

/** The command that regenerates docs/settings.md. */
export const DOCS_COMMAND = "npm run docs:settings";

/** The whole text of docs/settings.md. */
export function settingsMarkdown(settings: readonly Setting<unknown>[] = ALL_SETTINGS): string {
  const groups = new Map<SettingSection, Setting<unknown>[]>();
  for (const s of settings) groups.set(s.section, [...(groups.get(s.section) ?? []), s]);
  const out = [
    "# Settings",
    "",
    `<!-- Generated from src/settings/ by \`${DOCS_COMMAND}\`; edit the definitions there, not this page. -->`,
    "",
    "Every setting of tokenbroker, with its command-line flag, its environment variable, or both. A flag wins over its",
    "variable, which wins over the default; an empty variable counts as unset. A missing or bad setting stops the command",
    "with one line naming it (exit status 2), and never shows a secret's value. Secrets are read from the environment",
    "only (or from a file, for the encryption key), so that they stay out of the process list.",
    "",
    "`tokenbroker <command> --help` lists the settings each command takes, from the same definitions.",
  ];
  for (const [section, members] of groups) {
    out.push("", `## ${section.title}`, "", section.about, "", "| flag | environment | default | accepts | |", "|---|---|---|---|---|");
    for (const s of members) out.push(row(s));
  }
  return `${out.join("\n")}\n`;
}

function row(s: Setting<unknown>): string {
  const flag = s.flag === undefined ? "" : code(`${s.flag}${s.placeholder === undefined ? "" : ` ${s.placeholder}`}`);
  const env = s.env === undefined ? "" : code(s.env);
  const shown = defaultText(s);
  const fallback = s.default !== undefined ? code(shown) : s.required !== undefined ? "(required)" : shown === "" ? "" : `(${shown})`;
  const description = s.secret ? `**secret**: ${s.description}` : s.description;
  return `| ${[flag, env, fallback, s.type.accepts, description].map(cell).join(" | ")} |`;
}

function code(text: string): string {
  return `\`${text}\``;
}

function cell(text: string): string {
  return text.replace(/\|/g, "\\|");
}
