/**
 * Names that came from Xero (organisation names, user names) reach the terminal without control characters:
 * C0, C1, DEL and whole escape sequences are stripped from every command that prints them as text; ordinary
 * Unicode stays. `--json` keeps the names as they are, with every control character escaped as `\uXXXX`.
 */
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { terminalSafe } from "../src/cli/terminal-text.js";
import { startFakeXero, type FakeGrant, type FakeXero } from "@tokenbroker/fake-xero";
import { tempDir } from "./helpers/broker-fixture.js";
import { fakeEnv, runCli } from "./helpers/serve-process.js";

/** An organisation name with an SGR sequence, a bell, a C1 CSI sequence (`\x9b2J`: clear the screen), NEL and DEL. */
const EVIL_ORG = "Evil\u001b[31m Org\u0007\u009b2J\u0085 Ltd\u007f ñ 日本";
const CLEAN_ORG = "Evil Org Ltd ñ 日本";
/** A user name (the id token's email) with an OSC sequence that would set the terminal's title, and a colour. */
const EVIL_USER = "mallory\u001b]0;owned\u0007\u001b[31m@example.com";
const CLEAN_USER = "mallory@example.com";
/** Any control character but the newline that ends a line. */
const CONTROL = /(?!\n)\p{Cc}/u;

let fake: FakeXero;
let dir: ReturnType<typeof tempDir>;
let db: string;
let env: NodeJS.ProcessEnv;
let grant: FakeGrant;
let importOutput: string;
beforeAll(async () => {
  fake = await startFakeXero();
  dir = tempDir();
  db = join(dir.path, "tokenbroker.db");
  env = { ...fakeEnv(fake), TOKENBROKER_DB: db };
  grant = fake.addGrant({ userId: EVIL_USER, tenants: [{ tenantName: EVIL_ORG }, { tenantName: "Plain Org" }] });
  const r = await runCli(["import", "--insecure-no-encryption"], env, `${grant.refreshToken}\n`);
  expect(r.code, r.stderr).toBe(0);
  importOutput = r.stdout + r.stderr;
});
afterAll(async () => {
  await fake.close();
  dir.cleanup();
});

describe("names from Xero on the terminal", () => {
  it("import prints them clean", () => {
    expect(importOutput).not.toMatch(CONTROL);
    expect(importOutput).toContain(`  ${CLEAN_ORG}\n`);
  });

  it("connections and tenants print them clean, ordinary Unicode kept", async () => {
    const connections = await runCli(["connections"], env);
    expect(connections.code, connections.stderr).toBe(0);
    expect(connections.stdout).not.toMatch(CONTROL);
    expect(connections.stdout).toMatch(new RegExp(`^connection \\S+  active  ${CLEAN_USER}$`, "m"));
    expect(connections.stdout).toMatch(new RegExp(`^ {2}xero user {6}${CLEAN_USER}$`, "m"));
    expect(connections.stdout).toMatch(new RegExp(`^ {2}tenant \\S+  ${CLEAN_ORG}$`, "m"));

    const tenants = await runCli(["tenants"], env);
    expect(tenants.code, tenants.stderr).toBe(0);
    expect(tenants.stdout).not.toMatch(CONTROL);
    expect(tenants.stdout).toMatch(new RegExp(`^\\S+\\s+active\\s+${CLEAN_ORG}\\s+\\S+\\s+active\\s+${CLEAN_USER}\\s+\\S+$`, "m"));
  });

  it("--json keeps the names as Xero sent them, every control character escaped", async () => {
    const connections = await runCli(["connections", "--json"], env);
    const tenants = await runCli(["tenants", "--json"], env);
    for (const r of [connections, tenants]) {
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).not.toMatch(CONTROL);
      expect(r.stdout).toContain("Evil\\u001b[31m Org\\u0007\\u009b2J\\u0085 Ltd\\u007f ñ 日本");
    }
    const [c] = JSON.parse(connections.stdout) as Array<{ userName: string; tenants: Array<{ tenantName: string }> }>;
    expect(c!.userName).toBe(EVIL_USER);
    expect(c!.tenants.map((t) => t.tenantName)).toContain(EVIL_ORG);
    const rows = JSON.parse(tenants.stdout) as Array<{ tenantName: string; userName: string }>;
    expect(rows.map((t) => t.tenantName)).toContain(EVIL_ORG);
    expect(rows[0]!.userName).toBe(EVIL_USER);
  });

  it("disconnect prints the name clean", async () => {
    const tenantId = grant.tenants.find((t) => t.tenantName === EVIL_ORG)!.tenantId;
    const r = await runCli(["disconnect", tenantId, "--insecure-no-encryption"], env);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout + r.stderr).not.toMatch(CONTROL);
    expect(r.stdout).toContain(`tenant ${tenantId}  ${CLEAN_ORG}  disconnected at Xero`);
  });
});

describe("terminalSafe", () => {
  it.for([
    ["a\u001b[1;31mb", "ab"], // SGR
    ["a\u009b31mb", "ab"], // C1 CSI
    ["a\u001b]8;;http://x\u001b\\link\u001b]8;;\u001b\\b", "alinkb"], // OSC 8 hyperlink, ended by ST
    ["a\u001b]0;title\u0007b", "ab"], // OSC window title, ended by BEL
    ["a\u001b(Bb", "ab"], // charset designation
    ["a\tb\nc\rd\u0000e\u007ff\u0085g", "abcdefg"], // C0, DEL, C1
    ["a\u001b", "a"], // a lone ESC at the end
    ["Société Générale ñ 日本 😀", "Société Générale ñ 日本 😀"], // ordinary Unicode stays
  ])("%j -> %j", ([dirty, clean]) => {
    expect(terminalSafe(dirty!)).toBe(clean);
  });
});
