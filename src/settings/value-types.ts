/**
 * The value types of settings: each says what it accepts (for `--help`,
 * docs/settings.md and its errors) and parses text into a value.
 */
import { ConfigError } from "./config-error.js";
import type { ParseContext, ValueType } from "./setting.js";

/** Text as given (trimmed unless `raw`); a secret stays exactly as set when `raw`. */
export function textValue(accepts = "text", options: { raw?: boolean } = {}): ValueType<string> {
  return { accepts, parse: (text) => (options.raw ? text : text.trim()) };
}

/** A file path. */
export const filePath: ValueType<string> = { accepts: "a file path", parse: (text) => text };

/** A positive number (fractions allowed). */
export function positiveNumberValue(options: { below?: { limit: number; why: string } } = {}): ValueType<number> {
  const below = options.below;
  return {
    accepts: below ? `a positive number below ${below.limit}` : "a positive number",
    parse(text, ctx) {
      const n = positive(text, ctx);
      if (below && n >= below.limit)
        throw new ConfigError(`${ctx.name} must be less than ${below.limit} (${below.why}), not ${ctx.quoted}`);
      return n;
    },
  };
}

/** A positive whole number, at most `max`. */
export function wholeNumberValue(max = Number.MAX_SAFE_INTEGER): ValueType<number> {
  return {
    accepts: max === Number.MAX_SAFE_INTEGER ? "a positive whole number" : `a positive whole number up to ${max}`,
    parse(text, ctx) {
      const n = positive(text, ctx);
      if (!Number.isInteger(n)) throw new ConfigError(`${ctx.name} must be a whole number, not ${n}`);
      if (n > max) throw new ConfigError(`${ctx.name} must be at most ${max}, not ${n}`);
      return n;
    },
  };
}

function positive(text: string, ctx: ParseContext): number {
  const n = Number(text.trim());
  if (!Number.isFinite(n) || n <= 0) throw new ConfigError(`${ctx.name} must be a positive number, not ${ctx.quoted}`);
  return n;
}

/**
 * A positive number from a flag or variable outside the settings schema (a
 * command's own option, such as `connect --timeout`), or `fallback` when unset.
 */
export function positiveNumber(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined || value === "") return fallback;
  return positive(value, { name, quoted: JSON.stringify(value) });
}

/** One of `shown` (or of `alsoAccepted`, accepted but not advertised). */
export function oneOf<const T extends string>(shown: readonly T[], alsoAccepted: readonly T[] = []): ValueType<T> {
  const accepts = `${shown.slice(0, -1).join(", ")} or ${shown.at(-1)}`;
  return {
    accepts,
    listed: true,
    parse(text, ctx) {
      const value = text.trim() as T;
      if (!shown.includes(value) && !alsoAccepted.includes(value))
        throw new ConfigError(`${ctx.name} must be ${accepts}, not ${ctx.quoted}`);
      return value;
    },
  };
}

const TRUE = ["1", "true", "yes", "on"];
const FALSE = ["0", "false", "no", "off"];

/** On or off: 1, true, yes, on, or 0, false, no, off (any case). */
export const onOff: ValueType<boolean> = {
  accepts: "1, true, yes or on; 0, false, no or off",
  parse(text, ctx) {
    const value = text.trim().toLowerCase();
    if (TRUE.includes(value)) return true;
    if (FALSE.includes(value)) return false;
    throw new ConfigError(`${ctx.name} must be 1, true, yes or on (or 0, false, no or off), not ${ctx.quoted}`);
  },
};

/** On unless 0, false, no or off: for a switch read where an error cannot be reported (while reporting another). */
export const notOff: ValueType<boolean> = {
  accepts: "any value but 0, false, no or off",
  parse: (text) => !FALSE.includes(text.trim().toLowerCase()),
};

/** A boolean flag: given or not. */
export const givenOrNot: ValueType<boolean> = { accepts: "given or not", parse: (text) => text === "true" };

/** An absolute `http://` or `https://` URL; which of the two is allowed is for the loader to say (it may depend on another setting). */
export function httpUrl(options: { noQuery?: boolean } = {}): ValueType<URL> {
  return {
    accepts: options.noQuery ? "an http:// or https:// URL without query or fragment" : "an http:// or https:// URL",
    parse(text, ctx) {
      let url: URL;
      try {
        url = new URL(text.trim());
      } catch {
        throw new ConfigError(`${ctx.name} ${ctx.quoted} is not a URL`);
      }
      if (url.protocol !== "https:" && url.protocol !== "http:") throw new ConfigError(`${ctx.name} must be an http:// or https:// URL`);
      if (options.noQuery && (url.search !== "" || url.hash !== "")) throw new ConfigError(`${ctx.name} must have no query or fragment`);
      return url;
    },
  };
}

/** A list of words separated by spaces or commas. */
export function wordList(accepts: string, check?: (word: string, ctx: ParseContext) => void): ValueType<string[]> {
  return {
    accepts,
    parse(text, ctx) {
      const words = text.split(/[\s,]+/).filter((w) => w !== "");
      if (check) for (const word of words) check(word, ctx);
      return words;
    },
  };
}
