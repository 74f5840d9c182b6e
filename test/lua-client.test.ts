/**
 * The Iguana example (examples/iguana/tokenbroker.lua) under Debian's lua5.1,
 * with LuaSocket standing in for Iguana's net.http, against the real broker
 * over Connect JSON / HTTP/1.1. The "Xero API" is the fake Xero's /connections,
 * reached through a loopback stand-in that can reject a token with 401. Then
 * against a broker that requires API keys, the key from TOKENBROKER_KEY.
 */
import { execFile, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { chmodSync, mkdirSync, statSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startBroker, tempDir, type BrokerFixture } from "./helpers/broker-fixture.js";
import { docSnippet, shellCommands } from "./helpers/doc-snippets.js";
import { missingSystemPackage } from "./helpers/system-requirement.js";
import { startSecureBroker, withKey, type SecureBrokerFixture } from "./helpers/secure-broker.js";
import { CLI } from "./helpers/serve-process.js";
import { startBrokerServer, type BrokerServer } from "../src/server/broker-server.js";
import { createAuthenticator } from "../src/auth/authenticator.js";
import { createCallBudget, type QuotaKeeper } from "../src/quota/quota-keeper.js";

const LUA = "lua5.1";
const noLua = missingSystemPackage("Lua 5.1 with LuaSocket", "apt-get install lua5.1 lua-socket", [
  LUA,
  "-e",
  "require 'socket.http'; require 'ltn12'",
]);
/** The repository root: the commands below are the docs', run from there. */
const root = fileURLToPath(new URL("..", import.meta.url));
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");
/** No API key unless a test gives one. */
const { TOKENBROKER_KEY: _ignored, ...inherited } = process.env;

interface RunResult {
  code: number;
  lines: Array<Record<string, unknown>>;
  stdout: string;
  stderr: string;
}

/** Runs lua5.1 with `args` (and `extraEnv`); resolves with the exit code and the JSON lines printed. */
async function runLua(args: string[], extraEnv: Record<string, string> = {}): Promise<RunResult> {
  const env = { ...inherited, ...extraEnv };
  const done = await promisify(execFile)(LUA, args, { cwd: root, timeout: 20_000, env }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" }),
  );
  return { ...done, lines: jsonLines(done.stdout) };
}

/** The JSON objects printed one a line. */
function jsonLines(stdout: string): Array<Record<string, unknown>> {
  return stdout
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** A word for sh, quoted. */
const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/**
 * Runs the command of docs/clients.md ("lua-script") with the broker, tenant,
 * API URL and key given (without `TOKENBROKER_KEY=…` when there is no key).
 */
async function runDocsCommand(broker: string, tenant: string, apiUrl: string, key?: string): Promise<RunResult> {
  const [command, ...more] = shellCommands(docSnippet("docs/clients.md", "lua-script"));
  expect(more).toEqual([]);
  expect(command).toBe(
    "TOKENBROKER_KEY=tbk_… lua5.1 examples/iguana/run_example.lua http://127.0.0.1:50051 <tenant id> http://127.0.0.1:<port>/connections 2",
  );
  const filled = command!
    .replace("TOKENBROKER_KEY=tbk_… ", key === undefined ? "" : `TOKENBROKER_KEY=${quote(key)} `)
    .replace("http://127.0.0.1:50051", quote(broker))
    .replace("<tenant id>", quote(tenant))
    .replace("http://127.0.0.1:<port>/connections", quote(apiUrl));
  const done = await promisify(execFile)("/bin/sh", ["-c", filled], { cwd: root, timeout: 20_000, env: inherited }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" }),
  );
  return { ...done, lines: jsonLines(done.stdout) };
}

/** One request the API stand-in received. */
interface ApiRequest {
  httpVersion: string;
  tokenSha256: string;
  scheme: string;
  tenantHeader: string | undefined;
  status: number;
}

/**
 * A loopback "Xero API": forwards GETs to the fake Xero's /connections with the
 * caller's Authorization header, except that from request number `revokeAt` on,
 * the token seen on that request is answered 401 as Xero does for an expired
 * token (`revokeAt: 1` with `rejectAll` answers every request 401).
 */
async function startApiStandIn(upstream: string, policy: { revokeAt: number; rejectAll?: boolean }) {
  const requests: ApiRequest[] = [];
  const revoked = new Set<string>();
  const server: Server = createServer((req, res) => {
    void (async () => {
      const authorization = req.headers.authorization ?? "";
      const [scheme = "", token = ""] = authorization.split(" ");
      if (requests.length + 1 === policy.revokeAt) revoked.add(token);
      let status: number;
      let body: string;
      if (policy.rejectAll || revoked.has(token)) {
        status = 401;
        body = JSON.stringify({ Title: "Unauthorized", Status: 401, Detail: "TokenExpired: token expired" });
        res.setHeader("www-authenticate", 'Bearer error="invalid_token"');
      } else {
        const answer = await fetch(upstream, { headers: { authorization } });
        status = answer.status;
        body = await answer.text();
      }
      const tenant = req.headers["xero-tenant-id"];
      requests.push({
        httpVersion: req.httpVersion,
        tokenSha256: sha256(token),
        scheme,
        tenantHeader: Array.isArray(tenant) ? tenant[0] : tenant,
        status,
      });
      res.writeHead(status, { "content-type": "application/json" }).end(body);
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/connections`,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe.skipIf(noLua !== undefined)(`Lua (Iguana) client${noLua ? ` skipped: ${noLua}` : ""}`, () => {
  let f: BrokerFixture;
  let api: Awaited<ReturnType<typeof startApiStandIn>> | undefined;

  beforeEach(async () => {
    f = await startBroker();
  });
  afterEach(async () => {
    await api?.close();
    api = undefined;
    await f.close();
  });

  it("calls the API with the cached token; on a 401 reports it, the broker refreshes once, the retry succeeds", async () => {
    const before = (await f.store.tokens.getToken(f.connectionId))!;
    const refreshesBefore = f.fake.refreshes;
    api = await startApiStandIn(f.fake.connectionsUrl, { revokeAt: 2 });

    const run = await runLua(["examples/iguana/run_example.lua", f.server.url, f.tenantId, api.url, "3"]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const after = (await f.store.tokens.getToken(f.connectionId))!;

    expect(run.lines).toEqual([
      { step: "call", n: 1, status: 200, tenants: 2, version: before.version, getToken: 1, reportExpired: 0 },
      { step: "call", n: 2, status: 200, tenants: 2, version: before.version + 1, getToken: 1, reportExpired: 1 },
      { step: "call", n: 3, status: 200, tenants: 2, version: before.version + 1, getToken: 1, reportExpired: 1 },
    ]);
    expect(f.fake.refreshes - refreshesBefore).toBe(1);
    expect(after.version).toBe(before.version + 1);

    // What the API saw: the cached token twice (the second time rejected), then the new one.
    const old = sha256(before.accessToken);
    const fresh = sha256(after.accessToken);
    expect(api.requests.map((r) => [r.tokenSha256, r.status])).toEqual([
      [old, 200],
      [old, 401],
      [fresh, 200],
      [fresh, 200],
    ]);
    for (const r of api.requests) {
      expect(r).toMatchObject({ httpVersion: "1.1", scheme: "Bearer", tenantHeader: f.tenantId });
    }
    expect(run.stdout.includes(before.accessToken) || run.stdout.includes(after.accessToken)).toBe(false);
  });

  it("retries only once: a second 401 is returned to the caller after one report and one refresh", async () => {
    const refreshesBefore = f.fake.refreshes;
    const before = (await f.store.tokens.getToken(f.connectionId))!;
    api = await startApiStandIn(f.fake.connectionsUrl, { revokeAt: 1, rejectAll: true });

    const run = await runLua(["examples/iguana/run_example.lua", f.server.url, f.tenantId, api.url, "1"]);
    expect(run.code).toBe(0);
    expect(run.lines).toEqual([{ step: "call", n: 1, status: 401, version: before.version + 1, getToken: 1, reportExpired: 1 }]);
    expect(api.requests.map((r) => r.status)).toEqual([401, 401]);
    expect(new Set(api.requests.map((r) => r.tokenSha256)).size).toBe(2);
    expect(f.fake.refreshes - refreshesBefore).toBe(1);
  });

  it("the docs' command against the fake Xero's /connections: one GetToken for two calls, no refresh", async () => {
    const refreshesBefore = f.fake.refreshes;
    const stored = (await f.store.tokens.getToken(f.connectionId))!;
    const run = await runDocsCommand(f.server.url, f.tenantId, f.fake.connectionsUrl);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.lines).toEqual(
      [1, 2].map((n) => ({ step: "call", n, status: 200, tenants: 2, version: stored.version, getToken: 1, reportExpired: 0 })),
    );
    expect(f.fake.refreshes).toBe(refreshesBefore);

    const unknown = await runLua(["examples/iguana/run_example.lua", f.server.url, "no-such-tenant", f.fake.connectionsUrl]);
    expect(unknown.code).toBe(1);
    expect(unknown.lines).toEqual([]);
    expect(unknown.stderr).toMatch(/^tokenbroker GetToken: not_found: .*no-such-tenant/);
  });

  it("caches the token until `margin` seconds before expiresAt; broker errors become Lua errors", async () => {
    const stored = (await f.store.tokens.getToken(f.connectionId))!;
    const run = await runLua(["test/lua/check_module.lua", f.server.url, f.tenantId]);
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const step = (name: string) => run.lines.find((l) => l["step"] === name);

    expect(step("first")).toEqual({
      step: "first",
      getToken: 1,
      version: stored.version,
      expiresAtTime: Math.floor(stored.expiresAt / 1000),
      tenantIds: expect.arrayContaining(f.imported.tenants.map((t) => t.tenantId)) as unknown,
      tokenType: "Bearer",
      connectionId: f.connectionId,
      accessTokenLength: stored.accessToken.length,
    });
    expect(step("cached")).toMatchObject({ getToken: 1, same: true });
    expect(step("before_margin")).toMatchObject({ getToken: 1 });
    expect(step("within_margin")).toMatchObject({ getToken: 2 });
    expect(step("not_found")).toEqual({
      step: "not_found",
      ok: false,
      error: expect.stringMatching(/^tokenbroker GetToken: not_found: .*no-such-tenant/) as unknown,
    });
    expect(step("unreachable")).toMatchObject({
      ok: false,
      error: expect.stringMatching(
        /^tokenbroker: the broker at http:\/\/127\.0\.0\.1:1 cannot be reached \(net\.http\.post: .*\) and no token was kept$/,
      ) as unknown,
    });

    const times = step("parse_time")!["times"] as Array<{ text: string; seconds: number }>;
    expect(times).toHaveLength(4);
    for (const t of times) expect(t.seconds).toBe(Math.floor(Date.parse(t.text) / 1000));
  });
});

/** lua5.1 running a script that reads one command a line and answers each with one JSON line. */
function startLuaDriver(args: string[]) {
  const child = spawn(LUA, args, { cwd: root, env: inherited, stdio: ["pipe", "pipe", "pipe"] });
  let pending = "";
  let stderr = "";
  const lines: Array<Record<string, unknown>> = [];
  let wake: (() => void) | undefined;
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
    pending += chunk;
    for (let at = pending.indexOf("\n"); at >= 0; at = pending.indexOf("\n")) {
      lines.push(JSON.parse(pending.slice(0, at)) as Record<string, unknown>);
      pending = pending.slice(at + 1);
    }
    wake?.();
  });
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  child.on("close", () => wake?.());
  let asked = 0;
  return {
    /** Sends `command`; resolves with its answer. */
    async ask(command: string, timeoutMs = 20_000): Promise<Record<string, unknown>> {
      const n = asked++;
      child.stdin.write(`${command}\n`);
      const deadline = Date.now() + timeoutMs;
      while (lines.length <= n) {
        if (child.exitCode !== null || Date.now() > deadline) throw new Error(`no answer to ${command}: ${stderr}`);
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, 100);
        });
      }
      return lines[n]!;
    },
    get stdout(): string {
      return JSON.stringify(lines);
    },
    close(): void {
      child.stdin.end();
      child.kill();
    },
  };
}

describe.skipIf(noLua !== undefined)(`Lua (Iguana) client's local copy and long poll${noLua ? ` skipped: ${noLua}` : ""}`, () => {
  let f: BrokerFixture;
  let dir: ReturnType<typeof tempDir>;
  let lua: ReturnType<typeof startLuaDriver> | undefined;
  let api: Awaited<ReturnType<typeof startApiStandIn>> | undefined;
  let again: BrokerServer | undefined;

  beforeEach(async () => {
    f = await startBroker();
    dir = tempDir();
  });
  afterEach(async () => {
    lua?.close();
    lua = undefined;
    await api?.close();
    api = undefined;
    await again?.close();
    again = undefined;
    await f.close();
    dir.cleanup();
  });

  it("broker killed: the channel works on its copy until that token expires, then fails naming the broker; broker back: it recovers without a restart", async () => {
    const store = join(dir.path, "tokenbroker.store");
    api = await startApiStandIn(f.fake.connectionsUrl, { revokeAt: 0 });
    lua = startLuaDriver(["test/lua/check_local_copy.lua", f.server.url, f.tenantId, store, api.url]);
    const stored = (await f.store.tokens.getToken(f.connectionId))!;
    const v = stored.version;

    // From the broker, kept in the local copy; another channel on the same store reads the copy, not the broker.
    expect(await lua.ask("call a")).toMatchObject({ ok: true, status: 200, source: "broker", version: v, getToken: 1 });
    expect(await lua.ask("token b")).toMatchObject({ ok: true, source: "copy", version: v, getToken: 0 });
    expect(statSync(store).mode & 0o777).toBe(0o600);

    const url = f.server.url;
    const port = f.server.port;
    await f.server.close();
    // 30 s before expiry: within the 60 s margin, so the channel asks the broker, which is gone; the token still works.
    const leftS = Math.floor(stored.expiresAt / 1000) - Math.floor(Date.now() / 1000);
    await lua.ask(`advance ${leftS - 30}`);
    expect(await lua.ask("call a")).toMatchObject({ ok: true, status: 200, source: "away", version: v, valid: true, getToken: 2 });
    // Backing off: the next message does not try the broker again at once.
    expect(await lua.ask("call a")).toMatchObject({ ok: true, status: 200, source: "away", getToken: 2 });

    // The token expired: every channel fails, saying which broker it cannot reach.
    await lua.ask("advance 60");
    const failed = await lua.ask("call a");
    expect(failed).toMatchObject({ ok: false });
    expect(failed["error"]).toMatch(
      new RegExp(`^tokenbroker: the broker at ${url.replaceAll(".", "\\.")} cannot be reached \\(.*\\) and the last token expired at `),
    );
    expect(await lua.ask("token b")).toMatchObject({
      ok: false,
      error: expect.stringContaining(`the broker at ${url} cannot be reached`) as unknown,
    });

    // The broker is back on its port (its clock moved as far as the channel's): the next attempt after the backoff recovers.
    f.clock.advance((leftS + 30) * 1000);
    again = await startBrokerServer({
      port,
      store: f.store,
      identity: f.identity,
      clock: f.clock,
      refresher: { retryBaseMs: 10, cooldownMs: 10 },
    });
    await again.scheduler.stop();
    await lua.ask("advance 5"); // past the longest backoff (4 s in this script)
    expect(await lua.ask("call a")).toMatchObject({ ok: true, status: 200, source: "broker", version: v + 1 });
    expect(await lua.ask("call b")).toMatchObject({ ok: true, status: 200, source: "copy", version: v + 1 });
    expect(api.requests.map((r) => r.status).every((s) => s === 200)).toBe(true);
    const fresh = (await f.store.tokens.getToken(f.connectionId))!;
    expect(lua.stdout.includes(stored.accessToken) || lua.stdout.includes(fresh.accessToken)).toBe(false);
  });

  it("poll waits for the next token (a refresh answers it within a second) and keeps it in the copy for every channel", async () => {
    const store = join(dir.path, "tokenbroker.store");
    lua = startLuaDriver(["test/lua/check_local_copy.lua", f.server.url, f.tenantId, store, f.fake.connectionsUrl]);
    const first = await lua.ask("token a");
    expect(first).toMatchObject({ ok: true, source: "broker", getToken: 1 });
    const v = first["version"] as number;

    const polling = lua.ask("poll a 20", 30_000);
    await expect.poll(() => f.server.broker.longPolls.waiting, { timeout: 5000 }).toBe(1);
    const current = (await f.store.tokens.getToken(f.connectionId))!;
    const reported = performance.now();
    await f.client().reportExpired({ selector: { case: "tenantId", value: f.tenantId }, accessToken: current.accessToken });
    const polled = await polling;
    expect(performance.now() - reported).toBeLessThan(1000);
    expect(polled).toMatchObject({ ok: true, source: "broker", version: v + 1, changed: true, getToken: 2 });
    expect(await lua.ask("token b")).toMatchObject({ ok: true, source: "copy", version: v + 1, getToken: 0 });

    // Nothing newer: the wait runs out and the token held comes back.
    const idle = await lua.ask("poll a 1");
    expect(idle).toMatchObject({ ok: true, version: v + 1, changed: false });
    expect(idle["tookMs"]).toBeGreaterThanOrEqual(900);

    // Broker gone: poll sleeps until its next attempt and hands back what it holds, without an error.
    await f.server.close();
    const away = await lua.ask("poll a 2");
    expect(away).toMatchObject({ ok: true, version: v + 1, changed: false });
    const asleep = await lua.ask("poll a 2");
    expect(asleep).toMatchObject({ ok: true, version: v + 1, changed: false });
    // At most one attempt per poll while backing off (a loop of polls does not hammer the broker's port).
    expect((asleep["getToken"] as number) - (away["getToken"] as number)).toBeLessThanOrEqual(1);
  });
});

/** One request that reached the broker through {@link startBrokerTap}. */
interface BrokerRequest {
  method: string;
  status: number;
  /** SHA-256 of the bearer credential sent, or undefined when none was. */
  keySha256: string | undefined;
}

/** A loopback pass-through in front of the broker that records each RPC's HTTP status and the key it carried. */
async function startBrokerTap(broker: string) {
  const requests: BrokerRequest[] = [];
  const server: Server = createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers))
        if (typeof v === "string" && !["host", "connection", "content-length"].includes(k)) headers[k] = v;
      const answer = await fetch(new URL(req.url ?? "/", broker), { method: req.method ?? "GET", headers, body: Buffer.concat(chunks) });
      const body = Buffer.from(await answer.arrayBuffer());
      const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
      requests.push({
        method: (req.url ?? "").split("/").pop() ?? "",
        status: answer.status,
        keySha256: bearer === undefined ? undefined : sha256(bearer),
      });
      res.writeHead(answer.status, { "content-type": answer.headers.get("content-type") ?? "application/json" }).end(body);
    })();
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe.skipIf(noLua !== undefined)(
  `Lua (Iguana) client against a broker that requires API keys${noLua ? ` skipped: ${noLua}` : ""}`,
  () => {
    let f: SecureBrokerFixture;
    let key: string;
    let otherKey: string;
    let tap: Awaited<ReturnType<typeof startBrokerTap>>;
    let api: Awaited<ReturnType<typeof startApiStandIn>> | undefined;

    beforeEach(async () => {
      f = await startSecureBroker();
      key = f.createKey("iguana-channel", [f.tenantId]);
      // Another channel's key: the grant's other organisation only.
      otherKey = f.createKey("other-channel", [f.imported.tenants[1]!.tenantId]);
      tap = await startBrokerTap(f.server.url);
    });
    afterEach(async () => {
      await api?.close();
      api = undefined;
      await tap.close();
      await f.close();
    });

    it("sends TOKENBROKER_KEY on GetToken and ReportExpired: a 401 from the API is reported, refreshed once, retried", async () => {
      const before = (await f.store.tokens.getToken(f.connectionId))!;
      const refreshesBefore = f.fake.refreshes;
      api = await startApiStandIn(f.fake.connectionsUrl, { revokeAt: 2 });

      const run = await runLua(["examples/iguana/run_example.lua", tap.url, f.tenantId, api.url, "3"], { TOKENBROKER_KEY: key });
      expect(run.stderr).toBe("");
      expect(run.code).toBe(0);
      expect(run.lines).toEqual([
        { step: "call", n: 1, status: 200, tenants: 2, version: before.version, getToken: 1, reportExpired: 0 },
        { step: "call", n: 2, status: 200, tenants: 2, version: before.version + 1, getToken: 1, reportExpired: 1 },
        { step: "call", n: 3, status: 200, tenants: 2, version: before.version + 1, getToken: 1, reportExpired: 1 },
      ]);
      expect(f.fake.refreshes - refreshesBefore).toBe(1);
      expect(tap.requests).toEqual([
        { method: "GetToken", status: 200, keySha256: sha256(key) },
        { method: "ReportExpired", status: 200, keySha256: sha256(key) },
      ]);
      // The broker's key goes to the broker only: the API saw Xero tokens.
      expect(api.requests.map((r) => r.status)).toEqual([200, 401, 200, 200]);
      for (const r of api.requests) expect(r.tokenSha256).not.toBe(sha256(key));
      expect(run.stdout.includes(key) || run.stdout.includes(before.accessToken)).toBe(false);
    });

    it("the Iguana snippet of the README and docs/clients.md runs under the shim: two messages, one GetToken with the key, the API answers 200", async () => {
      const snippet = docSnippet("README.md", "lua-iguana");
      expect(docSnippet("docs/clients.md", "lua-iguana")).toBe(snippet);
      const stored = (await f.store.tokens.getToken(f.connectionId))!;
      const filled = [
        ["'http://127.0.0.1:50051'", tap.url],
        ["'<tenant id>'", f.tenantId],
        ["'https://api.xero.com/api.xro/2.0/Invoices'", f.fake.connectionsUrl],
      ].reduce((code, [from, to]) => {
        expect(code).toContain(from);
        return code.replace(from!, `'${to}'`);
      }, snippet);
      const dir = tempDir();
      try {
        writeFileSync(join(dir.path, "channel.lua"), filled);
        // What Iguana does: its globals, the module on the path, the script loaded once, main() per message.
        const runner = [
          "package.path = 'examples/iguana/?.lua;examples/iguana/shim/?.lua;'..package.path",
          "net = require 'net'",
          "json = require 'json'",
          `dofile(${JSON.stringify(join(dir.path, "channel.lua"))})`,
          "main('first message')",
          "main('second message')",
          'print(\'{"step":"done"}\')',
        ].join("\n");
        const run = await runLua(["-e", runner], { TOKENBROKER_KEY: key });
        expect(run.stderr).toBe("");
        expect(run.code).toBe(0);
        expect(run.lines).toEqual([{ step: "done" }]);
      } finally {
        dir.cleanup();
      }
      // One GetToken for two messages, with the channel's key; the token stayed the one stored.
      expect(tap.requests).toEqual([{ method: "GetToken", status: 200, keySha256: sha256(key) }]);
      expect((await f.store.tokens.getToken(f.connectionId))!.version).toBe(stored.version);
    });

    it("the docs' command with TOKENBROKER_KEY; no key: HTTP 401 and a Lua error saying so; another tenant's key: HTTP 403", async () => {
      const stored = (await f.store.tokens.getToken(f.connectionId))!;
      const readme = await runDocsCommand(tap.url, f.tenantId, f.fake.connectionsUrl, key);
      expect(readme.stderr).toBe("");
      expect(readme.code).toBe(0);
      expect(readme.lines).toEqual(
        [1, 2].map((n) => ({ step: "call", n, status: 200, tenants: 2, version: stored.version, getToken: 1, reportExpired: 0 })),
      );
      expect(tap.requests.splice(0)).toEqual([{ method: "GetToken", status: 200, keySha256: sha256(key) }]);

      // Without a key, or with another tenant's, the API is never called.
      api = await startApiStandIn(f.fake.connectionsUrl, { revokeAt: 0 });
      const none = await runLua(["examples/iguana/run_example.lua", tap.url, f.tenantId, api.url]);
      expect(none.code).toBe(1);
      expect(none.lines).toEqual([]);
      expect(none.stderr).toBe(
        "tokenbroker GetToken: unauthenticated: a valid API key is required: send `authorization: Bearer <key>` (no key was sent: tokenbroker.new{key=})\n",
      );

      const other = await runLua(["examples/iguana/run_example.lua", tap.url, f.tenantId, api.url], { TOKENBROKER_KEY: otherKey });
      expect(other.code).toBe(1);
      expect(other.lines).toEqual([]);
      expect(other.stderr).toBe("tokenbroker GetToken: permission_denied: this API key may not use that tenant or connection\n");

      expect(tap.requests).toEqual([
        { method: "GetToken", status: 401, keySha256: undefined },
        { method: "GetToken", status: 403, keySha256: sha256(otherKey) },
      ]);
      expect(api.requests).toEqual([]);
      for (const run of [none, other]) expect(run.stdout.includes(otherKey) || run.stderr.includes(otherKey)).toBe(false);
    });

    it("docs/iguana.md from scratch: the tenant and key commands, a keeper channel's long poll, a channel on the local copy", async () => {
      const dir = tempDir();
      try {
        // `tokenbroker` on PATH, as after `npm install -g`, on this broker's database.
        const bin = join(dir.path, "bin");
        mkdirSync(bin);
        writeFileSync(join(bin, "tokenbroker"), `#!/bin/sh\nexec "${process.execPath}" "${CLI}" "$@"\n`);
        chmodSync(join(bin, "tokenbroker"), 0o755);
        const sh = (command: string) =>
          promisify(execFile)("/bin/sh", ["-c", command], {
            env: { PATH: `${bin}:${process.env["PATH"] ?? ""}`, TOKENBROKER_DB: f.dbPath },
            timeout: 20_000,
          });
        const [tenants, create, ...more] = shellCommands(docSnippet("docs/iguana.md", "iguana-setup"));
        expect(more).toEqual([]);
        expect((await sh(tenants!)).stdout).toMatch(new RegExp(`^${f.tenantId}\\s+active\\s`, "m"));
        expect(create).toContain("<tenant id>");
        const made = (await sh(create!.replace("<tenant id>", f.tenantId))).stdout.trim();
        expect(made).toMatch(/^tbk_[A-Za-z0-9_-]{43}$/);

        const store = join(dir.path, "tokenbroker.db");
        const fill = (code: string) =>
          [
            ["'http://127.0.0.1:50051'", tap.url],
            ["'<tenant id>'", f.tenantId],
            ["'tokenbroker.db'", store],
            ["'https://api.xero.com/api.xro/2.0/Invoices'", f.fake.connectionsUrl],
          ].reduce((c, [from, to]) => c.replace(from!, `'${to}'`), code);
        /** A channel as Iguana runs it: its globals, the module on the path, the script loaded once, main() per message. */
        const channel = (script: string, messages: number) => {
          const file = join(dir.path, `channel-${Math.random().toString(36).slice(2)}.lua`);
          writeFileSync(file, fill(script));
          const runner = [
            "package.path = 'examples/iguana/?.lua;examples/iguana/shim/?.lua;'..package.path",
            "net = require 'net'",
            "json = require 'json'",
            "util = require 'util'",
            `dofile(${JSON.stringify(file)})`,
            ...Array.from({ length: messages }, () => "main('message')"),
            "print('done')",
          ].join("\n");
          return promisify(execFile)(LUA, ["-e", runner], { cwd: root, timeout: 30_000, env: { ...inherited, TOKENBROKER_KEY: made } });
        };

        const stored = (await f.store.tokens.getToken(f.connectionId))!;
        // The keeper: its first poll gets the token at once (nothing held), its second waits for the next one.
        const keeper = channel(docSnippet("docs/iguana.md", "iguana-keeper"), 2);
        await expect.poll(() => f.server.broker.longPolls.waiting, { timeout: 10_000 }).toBe(1);
        const reported = performance.now();
        await f
          .client()
          .reportExpired({ selector: { case: "tenantId", value: f.tenantId }, accessToken: stored.accessToken }, withKey(made));
        const kept = await keeper;
        expect(performance.now() - reported).toBeLessThan(1500);
        expect(kept.stderr).toBe("");
        expect(kept.stdout).toBe(`token version ${stored.version}\ntoken version ${stored.version + 1}\ndone\n`);

        // The channel finds that token in the copy: Xero answers 200, and the broker is not asked.
        const worked = await channel(docSnippet("docs/iguana.md", "iguana-channel"), 2);
        expect(worked.stderr).toBe("");
        expect(worked.stdout).toBe("done\n");
        expect(tap.requests).toEqual([
          { method: "GetToken", status: 200, keySha256: sha256(made) },
          { method: "GetToken", status: 200, keySha256: sha256(made) },
        ]);
      } finally {
        dir.cleanup();
      }
    });

    it("the key stays out of the client table and of errors; unknown keys and ReportExpired with another tenant's key are refused", async () => {
      const stored = (await f.store.tokens.getToken(f.connectionId))!;
      const run = await runLua(["test/lua/check_auth.lua", tap.url, f.tenantId], { TOKENBROKER_KEY: key, OTHER_KEY: otherKey });
      expect(run.stderr).toBe("");
      expect(run.code).toBe(0);
      const step = (name: string) => run.lines.find((l) => l["step"] === name);
      expect(step("token")).toEqual({ step: "token", getToken: 1, version: stored.version, keyInClient: false });
      expect(step("report_expired")).toEqual({ step: "report_expired", reportExpired: 1, version: stored.version + 1 });
      expect(step("unknown_key")).toEqual({
        step: "unknown_key",
        ok: false,
        error:
          "tokenbroker GetToken: unauthenticated: a valid API key is required: send `authorization: Bearer <key>` (the key sent is unknown or revoked)",
      });
      expect(step("other_tenant_report")).toEqual({
        step: "other_tenant_report",
        ok: false,
        calls: 1,
        error: "tokenbroker ReportExpired: permission_denied: this API key may not use that tenant or connection",
      });
      expect(step("bad_key")).toEqual({
        step: "bad_key",
        ok: false,
        error: "tokenbroker.new: key is not an API key (visible ASCII characters only)",
      });
      expect(tap.requests.map((r) => [r.method, r.status])).toEqual([
        ["GetToken", 200],
        ["ReportExpired", 200],
        ["GetToken", 401],
        ["ReportExpired", 403],
      ]);
      // The right key was sent trimmed; nothing printed holds a key.
      expect(tap.requests[0]!.keySha256).toBe(sha256(key));
      for (const secret of [key, otherKey]) expect(run.stdout.includes(secret)).toBe(false);
    });
  },
);

describe.skipIf(noLua !== undefined)(`Lua (Iguana) channel through the broker's Xero API proxy${noLua ? ` skipped: ${noLua}` : ""}`, () => {
  let f: SecureBrokerFixture;
  let proxied: BrokerServer | undefined;
  let quota: QuotaKeeper | undefined;
  afterEach(async () => {
    await proxied?.close();
    quota?.close();
    await f.close();
  });

  it("tokenbroker.xero{} and Client:xero{} call Xero with no token in the channel; the broker's 429 comes back with Retry-After", async () => {
    f = await startSecureBroker();
    const key = f.createKey("iguana-proxy", [f.tenantId]);
    // Three calls a minute for the organisation: the fourth is held back by the broker, not sent to Xero.
    quota = createCallBudget({
      store: f.store.quota,
      limits: { inFlight: 5, perMinute: 3, perDay: 1000, appPerMinute: 1000 },
      maxWaitMs: 200,
    });
    proxied = await startBrokerServer({
      port: 0,
      store: f.store,
      identity: f.identity,
      auth: { authenticator: createAuthenticator({ keys: f.store.apiKeys }) },
      proxy: { apiUrl: f.fake.apiUrl, refused: [`${f.fake.issuer}/connect`, `${f.fake.issuer}/identity`] },
      quota,
    });
    await proxied.scheduler.stop();
    const run = await runLua(["test/lua/check_proxy.lua", proxied.url, f.tenantId], { TOKENBROKER_KEY: key });
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    const step = (name: string) => run.lines.find((l) => l["step"] === name);
    expect(step("organisation")).toMatchObject({ code: 200, name: expect.any(String) as unknown });
    expect(step("invoice")).toEqual({ step: "invoice", code: 200, contact: "Lua Channel", getToken: 0 });
    expect(step("listed")).toEqual({ step: "listed", code: 200 });
    expect(step("held_back")).toMatchObject({ code: 429, problem: "minute" });
    expect(step("held_back")!["retryAfter"]).toBeGreaterThan(0);
    expect(step("unknown_key")).toEqual({ step: "unknown_key", code: 401 });
    expect(step("unreachable")).toEqual({
      step: "unreachable",
      ok: false,
      keyInError: false,
      error: expect.stringMatching(/^tokenbroker: the broker at http:\/\/127\.0\.0\.1:1 cannot be reached \(/) as unknown,
    });
    // Xero got three calls, never a 429, and the invoice the channel posted.
    const usage = f.fake.apiUsage(f.tenantId);
    expect(usage.calls).toBe(3);
    expect(Object.values(usage.rateLimited).reduce((n, x) => n + x, 0)).toBe(0);
    expect(f.fake.invoices(f.tenantId).some((i) => i.Contact.Name === "Lua Channel")).toBe(true);
    expect(run.stdout.includes(key)).toBe(false);
  });
});
