/**
 * `deploy/tokenbroker.service`, the systemd unit, and `npm start`: the unit is
 * valid for systemd, its NODE_OPTIONS and flags start a real `tokenbroker
 * serve`, and `npm start` runs serve with the same NODE_OPTIONS (the memory
 * figures of `npm run bench` are measured with them).
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { tempDir } from "./helpers/broker-fixture.js";
import { runCli, startServe } from "./helpers/serve-process.js";
import { missingSystemPackage } from "./helpers/system-requirement.js";

const ROOT = join(import.meta.dirname, "..");
const UNIT_PATH = join(ROOT, "deploy", "tokenbroker.service");
const unit = readFileSync(UNIT_PATH, "utf8");

/** The value of `Environment=NODE_OPTIONS=` in the unit. */
function nodeOptions(): string {
  const value = /^Environment="?NODE_OPTIONS=([^"\n]+)"?$/m.exec(unit)?.[1];
  if (!value) throw new Error("the unit sets no NODE_OPTIONS");
  return value.trim();
}

/** `ExecStart=`, with its continuation lines joined, split into words. */
function execStart(): string[] {
  const line = /^ExecStart=((?:.*\\\n)*.*)$/m.exec(unit)?.[1];
  if (!line) throw new Error("the unit has no ExecStart");
  return line.replace(/\\\n/g, " ").trim().split(/\s+/);
}

const noSystemd = missingSystemPackage("systemd-analyze", "apt-get install systemd", ["systemd-analyze", "--version"]);

describe("deploy/tokenbroker.service", () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => {
    dir.cleanup();
  });

  it.skipIf(noSystemd !== undefined)(
    "passes `systemd-analyze verify` without a warning (node and the checkout where this machine has them)",
    () => {
      const local = unit.replaceAll("/usr/bin/node", process.execPath).replaceAll("/opt/tokenbroker", ROOT);
      const copy = join(dir.path, "tokenbroker.service");
      writeFileSync(copy, local);
      const r = spawnSync("systemd-analyze", ["verify", copy], { encoding: "utf8", cwd: dir.path });
      expect(r.error).toBeUndefined();
      expect(r.stderr).toBe("");
      expect(r.status).toBe(0);
    },
  );

  it("runs `tokenbroker serve` with flags it knows; serve starts with the unit's NODE_OPTIONS and stops on SIGTERM", async () => {
    const [node, cli, command, ...args] = execStart();
    expect([node, cli, command]).toEqual(["/usr/bin/node", "/opt/tokenbroker/dist/src/cli/main.js", "serve"]);
    const flags = new Map<string, string>();
    for (let i = 0; i < args.length; i += 2) flags.set(args[i]!, args[i + 1]!);
    expect([...flags.keys()].sort()).toEqual(["--db", "--encryption-key-file", "--listen"]);
    expect(flags.get("--db")).toMatch(/^\/var\/lib\/tokenbroker\//); // the unit's StateDirectory
    expect(unit).toMatch(/^StateDirectory=tokenbroker$/m);

    // The same flags with this test's files (serve listens on a free loopback port).
    const keyFile = join(dir.path, "tokenbroker.key");
    writeFileSync(keyFile, `${randomBytes(32).toString("base64")}\n`, { mode: 0o600 });
    const serve = await startServe({
      env: {
        PATH: process.env["PATH"] ?? "",
        NODE_OPTIONS: nodeOptions(),
        TOKENBROKER_CLIENT_ID: "deploy-test-client",
        TOKENBROKER_CLIENT_SECRET: "deploy-test-secret",
      },
      db: join(dir.path, "tokenbroker.db"),
      args: ["--encryption-key-file", keyFile],
      secure: true,
    });
    const health = await fetch(`${serve.url}/healthz`);
    expect(health.status).toBe(200);
    await serve.kill("SIGTERM");
    expect(await serve.exited).toEqual({ code: 0, signal: null });
    // Node refuses a NODE_OPTIONS it does not allow before running anything: serve would not have started.
    expect(serve.stderr()).not.toContain("is not allowed in NODE_OPTIONS");
  });

  it("gives serve at least 5 s beyond its shutdown grace before systemd's SIGKILL (TimeoutStopSec)", async () => {
    const stopSeconds = Number(/^TimeoutStopSec=(\d+)s?$/m.exec(unit)?.[1]);
    const words = execStart();
    const flag = words.indexOf("--shutdown-grace");
    // The unit's --shutdown-grace, or else serve's default as `serve --help` states it.
    const help = (await runCli(["serve", "--help"], { PATH: process.env["PATH"] ?? "" })).stdout;
    const defaultGrace = /\[TOKENBROKER_SHUTDOWN_GRACE_SECONDS\]\s+\(default (\d+)\)/.exec(help)?.[1];
    const graceSeconds = Number(flag >= 0 ? words[flag + 1] : defaultGrace);
    expect(unit).not.toMatch(/TOKENBROKER_SHUTDOWN_GRACE_SECONDS/); // not set behind the test's back
    expect(graceSeconds).toBeGreaterThan(0);
    expect(stopSeconds - graceSeconds).toBeGreaterThanOrEqual(5);
  });

  it("`npm start` runs serve with the unit's NODE_OPTIONS", () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> };
    expect(pkg.scripts["start"]).toBe(`node ${nodeOptions()} dist/src/cli/main.js serve`);
  });
});
