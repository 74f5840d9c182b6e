/**
 * The settings schema (src/settings/) is the one place a setting is defined: these tests fail when the generated
 * docs/settings.md is stale, when a `TOKENBROKER_*` variable is named somewhere but not defined there, when a
 * module reads a variable around it, when an entry is read by no loader, or when an error shows a secret.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { connectCommand } from "../src/cli/connect.js";
import { importCommand } from "../src/cli/import.js";
import { reportFailure } from "../src/cli/report-failure.js";
import { encryptionFromFlags } from "../src/cli/security-options.js";
import { serveConfigFrom, type ServeFlagValues } from "../src/cli/serve-config.js";
import { serveCommand } from "../src/cli/serve.js";
import { dbPath } from "../src/cli/store-options.js";
import { ConfigError, upstreamFromEnv } from "../src/config.js";
import { consentFromEnv } from "../src/consent/consent-config.js";
import { generateEncryptionKey } from "../src/crypto/encryption-keys.js";
import * as all from "../src/settings/all-settings.js";
import { LEAD_TIME } from "../src/settings/refresh-settings.js";
import { readSetting, settingName, type Setting } from "../src/settings/setting.js";
import { DOCS_COMMAND, DOCS_PAGE, settingsMarkdown } from "../src/settings/settings-docs.js";
import { defaultText } from "../src/settings/settings-help.js";
import { tempDir } from "./helpers/broker-fixture.js";

const { ALL_SETTINGS } = all;
// Widened from the schema's tuples, whose literal types only parseArgs needs.
const SERVE_SETTINGS: readonly Setting<unknown>[] = all.SERVE_SETTINGS;
const CONNECT_SETTINGS: readonly Setting<unknown>[] = all.CONNECT_SETTINGS;
const UPSTREAM_COMMAND_SETTINGS: readonly Setting<unknown>[] = all.UPSTREAM_COMMAND_SETTINGS;
const root = join(import.meta.dirname, "..");
const dir = tempDir();
afterAll(() => dir.cleanup());

function sourceFiles(under: string): string[] {
  return readdirSync(under, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile() && e.name.endsWith(".ts"))
    .map((e) => join(e.parentPath, e.name));
}

/** An environment (or flag values) that records which names were read. */
function recording<T extends object>(values: T): { values: T; read: Set<string> } {
  const read = new Set<string>();
  const proxy = new Proxy(values, {
    get(target, name, receiver) {
      if (typeof name === "string") read.add(name);
      return Reflect.get(target, name, receiver);
    },
  });
  return { values: proxy, read };
}

/** Whether a loader read `setting`: its variable, or its flag when it has no variable. */
function wasRead(setting: Setting<unknown>, env: Set<string>, flags: Set<string>): boolean {
  return setting.env !== undefined ? env.has(setting.env) : flags.has(setting.flag!.slice(2));
}

describe(DOCS_PAGE, () => {
  it("is what the schema generates", () => {
    const committed = readFileSync(join(root, DOCS_PAGE), "utf8");
    expect(committed === settingsMarkdown(), `${DOCS_PAGE} is stale: run \`${DOCS_COMMAND}\` and commit it`).toBe(true);
  });

  it("has one row per setting, each with its flag or variable", () => {
    const rows = settingsMarkdown()
      .split("\n")
      .filter((l) => l.startsWith("| ") && !l.startsWith("| flag"));
    expect(rows).toHaveLength(ALL_SETTINGS.length);
    for (const s of ALL_SETTINGS) expect(rows.some((r) => r.includes(`\`${s.env ?? s.flag}`))).toBe(true);
  });
});

describe("the settings schema", () => {
  it("defines every TOKENBROKER_ variable named anywhere in src/", () => {
    const defined = new Set(ALL_SETTINGS.map((s) => s.env).filter((e) => e !== undefined));
    const missing: string[] = [];
    for (const file of sourceFiles(join(root, "src"))) {
      for (const [name] of readFileSync(file, "utf8").matchAll(/TOKENBROKER_[A-Z0-9_]*[A-Z0-9]/g)) {
        if (!defined.has(name as `TOKENBROKER_${string}`)) missing.push(`${name} in ${relative(root, file)}`);
      }
    }
    expect(missing, "define these in src/settings/ (or fix the name)").toEqual([]);
  });

  it("is the only reader of TOKENBROKER_ variables: no module outside src/settings/ reads one from the environment", () => {
    const around: string[] = [];
    for (const file of sourceFiles(join(root, "src"))) {
      if (file.startsWith(join(root, "src", "settings"))) continue;
      const text = readFileSync(file, "utf8");
      if (/env\s*\[\s*["'`]TOKENBROKER_|env\.TOKENBROKER_|process\.env\s*\[/.test(text)) around.push(relative(root, file));
    }
    expect(around, "read these through readSetting and a schema entry").toEqual([]);
  });

  it("has no dead entry: serve's loader reads every setting of serve, reportFailure reads the rest", () => {
    const keyFile = join(dir.path, "tokenbroker.key");
    writeFileSync(keyFile, `${generateEncryptionKey()}\n`, { mode: 0o600 });
    for (const name of ["cert.pem", "key.pem", "ca.pem"]) writeFileSync(join(dir.path, name), "-----BEGIN CERTIFICATE-----\n");
    const env = recording<NodeJS.ProcessEnv>({
      TOKENBROKER_CLIENT_ID: "id",
      TOKENBROKER_CLIENT_SECRET: "secret",
      TOKENBROKER_WEBHOOK_URL: "https://ops.example.com/hook",
      TOKENBROKER_WEBHOOK_SECRET: "webhook secret",
      TOKENBROKER_OLD_ENCRYPTION_KEYS: generateEncryptionKey(),
    });
    const flags = recording<ServeFlagValues>({
      "encryption-key-file": keyFile,
      "tls-cert": join(dir.path, "cert.pem"),
      "tls-key": join(dir.path, "key.pem"),
      "tls-client-ca": join(dir.path, "ca.pem"),
      "insecure-no-auth": true,
    });
    const config = serveConfigFrom(flags.values, env.values);
    expect(config.security.tls?.clientCa).toBeDefined();
    expect(config.notifications.webhookSecret).toBe("webhook secret");
    const unread = SERVE_SETTINGS.filter((s) => !wasRead(s, env.read, flags.read)).map(settingName);
    expect(unread, "serve declares these settings but serveConfigFrom never reads them").toEqual([]);

    const debugEnv = recording<NodeJS.ProcessEnv>({ TOKENBROKER_DEBUG: "1" });
    let printed = "";
    const io = { env: debugEnv.values, err: { write: (s: string) => (printed += s) } } as never;
    expect(reportFailure(serveCommand, new Error("boom"), io)).toBe(1);
    expect(printed).toMatch(/unexpected error: Error: boom\nError: boom\n {4}at /);
    const rest = ALL_SETTINGS.filter((s) => !SERVE_SETTINGS.includes(s));
    expect(rest.filter((s) => !wasRead(s, debugEnv.read, new Set())).map(settingName)).toEqual([]);
  });

  it("has no dead entry for import, connect, disconnect and revoke: their loaders read every setting their --help lists", () => {
    const keyFile = join(dir.path, "import.key");
    writeFileSync(keyFile, `${generateEncryptionKey()}\n`, { mode: 0o600 });
    const env = recording<NodeJS.ProcessEnv>({ TOKENBROKER_CLIENT_ID: "id", TOKENBROKER_CLIENT_SECRET: "secret" });
    const flags = recording<Record<string, string | boolean | undefined>>({ "encryption-key-file": keyFile, db: "x.db" });
    upstreamFromEnv(env.values);
    encryptionFromFlags(flags.values, env.values);
    dbPath(flags.values["db"] as string, env.values);
    consentFromEnv(env.values);
    expect(CONNECT_SETTINGS.filter((s) => !wasRead(s, env.read, flags.read)).map(settingName)).toEqual([]);
    for (const s of UPSTREAM_COMMAND_SETTINGS) expect(importCommand.help).toContain(s.env ?? s.flag);
    for (const s of CONNECT_SETTINGS) expect(connectCommand.help).toContain(s.env ?? s.flag);
  });

  it("parses every default", () => {
    for (const s of ALL_SETTINGS.filter((s) => s.default !== undefined)) {
      expect(() => readSetting(s, { flags: {}, env: {} }), settingName(s)).not.toThrow();
    }
  });

  it("keeps secrets out of the command line: a secret has no flag", () => {
    expect(ALL_SETTINGS.filter((s) => s.secret && s.flag !== undefined).map(settingName)).toEqual([]);
  });
});

describe("readSetting", () => {
  const lead = (flags: Record<string, string>, env: NodeJS.ProcessEnv) => readSetting(LEAD_TIME, { flags, env });

  it("takes the flag over the variable, the variable over the default; an empty one counts as unset", () => {
    expect(lead({ "lead-time": "60" }, { TOKENBROKER_LEAD_TIME_SECONDS: "120" })).toBe(60);
    expect(lead({}, { TOKENBROKER_LEAD_TIME_SECONDS: "120" })).toBe(120);
    expect(lead({}, {})).toBe(300);
    expect(lead({}, { TOKENBROKER_LEAD_TIME_SECONDS: " " })).toBe(300);
  });

  it("names the flag, and the variable when the bad value came from it, and says what is accepted", () => {
    expect(() => lead({ "lead-time": "soon" }, {})).toThrow(/^--lead-time must be a positive number, not "soon"$/);
    expect(() => lead({}, { TOKENBROKER_LEAD_TIME_SECONDS: "-1" })).toThrow(
      /^--lead-time must be a positive number, not "-1" \(from TOKENBROKER_LEAD_TIME_SECONDS\)$/,
    );
  });

  it.each(ALL_SETTINGS.filter((s) => s.secret).map((s) => [settingName(s), s] as const))(
    "never shows the value of the secret %s in an error",
    (_name, setting) => {
      const value = "::not a key, a URL or anything-7f3a9c";
      let message = "";
      try {
        readSetting(setting, { flags: {}, env: { [setting.env!]: value } });
      } catch (e) {
        expect(e).toBeInstanceOf(ConfigError);
        message = (e as Error).message;
      }
      expect(message).not.toContain("7f3a9c");
    },
  );

  it("is required where the schema says so, naming the variable and what to set", () => {
    expect(() => upstreamFromEnv({ TOKENBROKER_CLIENT_ID: "id" })).toThrow(
      "TOKENBROKER_CLIENT_SECRET is not set: set it to your Xero app's client secret",
    );
  });
});

describe("tokenbroker serve --help", () => {
  it("lists every setting of serve with its flag, variable and default, grouped by section", () => {
    const help = serveCommand.help.replace(/\s+/g, " ");
    for (const s of SERVE_SETTINGS) {
      for (const part of [s.flag, s.env, s.default === undefined ? undefined : `default ${defaultText(s)}`]) {
        if (part !== undefined) expect(help, settingName(s)).toContain(part);
      }
    }
    const titles = [...new Set(SERVE_SETTINGS.map((s) => s.section.title))];
    const at = titles.map((t) => serveCommand.help.indexOf(`\n${t}:\n`));
    expect(at.every((i) => i > 0)).toBe(true);
    expect([...at].sort((a, b) => a - b)).toEqual(at);
  });

  it("fits in 80 columns", () => {
    for (const line of serveCommand.help.split("\n")) expect(line.length, line).toBeLessThanOrEqual(80);
  });
});
