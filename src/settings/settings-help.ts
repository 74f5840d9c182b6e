/** The settings part of a command's `--help`, generated from the schema. */
import type { Setting, SettingSection } from "./setting.js";

const WIDTH = 80;
const INDENT = 25;

/** A default, a requirement or what unset means, as `--help` and the docs show it. */
export function defaultText(setting: Setting<unknown>): string {
  if (setting.default !== undefined) return setting.default;
  if (setting.required !== undefined) return "required";
  return setting.unset ?? "";
}

/**
 * The `--help` lines of `settings`, grouped under their sections' titles, in
 * the order given: each flag (or, for a setting without one, its variable),
 * what it does, its variable in brackets and its default.
 */
export function settingsHelp(settings: readonly Setting<unknown>[]): string {
  const groups = new Map<SettingSection, Setting<unknown>[]>();
  for (const s of settings) groups.set(s.section, [...(groups.get(s.section) ?? []), s]);
  const blocks: string[] = [];
  for (const [section, members] of groups) {
    blocks.push(`${section.title}:\n${members.map(settingHelp).join("\n")}`);
  }
  return blocks.join("\n\n");
}

function settingHelp(s: Setting<unknown>): string {
  const head = s.flag !== undefined ? `${s.flag}${s.placeholder === undefined ? "" : ` ${s.placeholder}`}` : (s.env ?? "");
  const notes: string[] = [];
  const shown = defaultText(s);
  if (s.default !== undefined) notes.push(`default ${shown}`);
  else if (s.required !== undefined) notes.push("required");
  else if (s.unset !== undefined && s.unset !== "off") notes.push(`unset: ${shown}`);
  if (s.secret) notes.push("secret");
  const text = [
    s.type.listed ? `${s.type.accepts}: ${s.description}` : s.description,
    s.flag !== undefined && s.env !== undefined ? `[${s.env}]` : "",
    notes.length > 0 ? `(${notes.join("; ")})` : "",
  ];
  return layout(`  ${head}`, text.filter((t) => t !== "").join(" "));
}

/** `head` then `text` from column {@link INDENT}, wrapped at {@link WIDTH} (`head` alone on its line when too long). */
function layout(head: string, text: string): string {
  const lines: string[] = [];
  let line = head.length + 2 <= INDENT ? head.padEnd(INDENT) : `${head}\n${" ".repeat(INDENT)}`;
  let fresh = true;
  for (const word of text.split(" ")) {
    const lastLineLength = line.length - line.lastIndexOf("\n") - 1;
    if (!fresh && lastLineLength + 1 + word.length > WIDTH) {
      lines.push(line);
      line = " ".repeat(INDENT) + word;
    } else {
      line += fresh ? word : ` ${word}`;
    }
    fresh = false;
  }
  lines.push(line);
  return lines.join("\n");
}
