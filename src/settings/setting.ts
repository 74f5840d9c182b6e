import { ConfigError } from "./config-error.js";

/** A group of settings: a heading in `--help` and in docs/settings.md. */
export interface SettingSection {
  /** The heading, e.g. "Encryption at rest". */
  title: string;
  /** One or two sentences under the heading of docs/settings.md (Markdown; links are relative to docs/). */
  about: string;
}

/** What a parser knows of the value it parses, so that its error names the setting and never shows a secret. */
export interface ParseContext {
  /** The flag, or the variable when the setting has no flag: the name a user looks up. */
  name: string;
  /** The value quoted for an error message, or "(not shown)" when the setting is secret. */
  quoted: string;
}

/** How the text of a flag or variable becomes a value. */
export interface ValueType<T> {
  /** What is accepted, for people: "a positive number", "debug, info, warn or error". */
  accepts: string;
  /** True when {@link accepts} is a short list of words, which `--help` shows before the description. */
  listed?: boolean;
  /** Parses `text`; a bad one is a ConfigError naming `ctx.name` and saying what is accepted. */
  parse(text: string, ctx: ParseContext): T;
}

/**
 * One setting, defined once: where it comes from (a flag, an environment
 * variable or both; a flag wins over the variable, which wins over the
 * default), how it is parsed, its default and its description. `--help` and
 * docs/settings.md are generated from these.
 */
export interface Setting<T> {
  section: SettingSection;
  /** The command-line flag, e.g. `--listen`. */
  flag?: `--${string}`;
  /** What follows the flag in `--help`, e.g. `HOST:PORT`; none for a boolean flag (given or not). */
  placeholder?: string;
  /** The environment variable, e.g. `TOKENBROKER_LISTEN`. */
  env?: `TOKENBROKER_${string}`;
  type: ValueType<T>;
  /** The default as a user would write it; parsed like any other value. */
  default?: string;
  /** When unset and without a default: the hint after "is not set: " (the setting is required). */
  required?: string;
  /** What being unset means when there is no default, e.g. "log only". */
  unset?: string;
  /** One or two sentences: what it does. Plain text; backticks for code. */
  description: string;
  /** Client secrets, keys: environment only, never shown in an error, a log or `--help`. */
  secret?: boolean;
}

/** Where settings are read from: the parsed flags of a command and the environment. */
export interface SettingsSource {
  /** `parseArgs` values, keyed by flag name without the dashes. */
  flags: Readonly<Record<string, string | boolean | undefined>>;
  env: NodeJS.ProcessEnv;
}

/** A setting that always has a value: a default, or required. */
export type SettingWithValue<T> = Setting<T> & ({ default: string } | { required: string });

/**
 * Reads one setting: its flag if given, else its variable, else its default
 * (an empty value counts as unset). A required setting that is unset is a
 * ConfigError naming it; so is a value its type refuses.
 */
export function readSetting<T>(setting: SettingWithValue<T>, source: SettingsSource): T;
export function readSetting<T>(setting: Setting<T>, source: SettingsSource): T | undefined;
export function readSetting<T>(setting: Setting<T>, source: SettingsSource): T | undefined {
  const name = settingName(setting);
  const flagValue = setting.flag === undefined ? undefined : source.flags[setting.flag.slice(2)];
  const envValue = setting.env === undefined ? undefined : source.env[setting.env];
  let text: string | undefined;
  let from = "";
  if (flagValue !== undefined && flagValue !== "") {
    text = String(flagValue);
  } else if (envValue !== undefined && envValue.trim() !== "") {
    text = envValue;
    if (setting.flag !== undefined) from = ` (from ${setting.env})`;
  } else if (setting.default !== undefined) {
    text = setting.default;
  } else if (setting.required !== undefined) {
    throw new ConfigError(`${name} is not set: ${setting.required}`);
  } else {
    return undefined;
  }
  const quoted = setting.secret ? "(not shown)" : JSON.stringify(text);
  try {
    return setting.type.parse(text, { name, quoted });
  } catch (e) {
    if (e instanceof ConfigError && from !== "") throw new ConfigError(`${e.message}${from}`);
    throw e;
  }
}

/** The name a user knows a setting by: its flag, or its variable when it has no flag. */
export function settingName(setting: Setting<unknown>): string {
  return setting.flag ?? setting.env ?? "(unnamed setting)";
}

/** The `parseArgs` options of the flags of the settings `S`, typed so that `parseArgs` types their values. */
export type FlagOptions<S extends readonly Setting<unknown>[]> = {
  [K in S[number] as K extends { flag: `--${infer N}` } ? N : never]: { type: K extends { placeholder: string } ? "string" : "boolean" };
};

/** The `parseArgs` options of `settings`' flags: a string flag when it has a placeholder, else a boolean one. */
export function flagOptions<const S extends readonly Setting<unknown>[]>(settings: S): FlagOptions<S> {
  const options: Record<string, { type: "string" | "boolean" }> = {};
  for (const s of settings) {
    if (s.flag !== undefined) options[s.flag.slice(2)] = { type: s.placeholder === undefined ? "boolean" : "string" };
  }
  return options as FlagOptions<S>;
}
