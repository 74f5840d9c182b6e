import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import Database from "better-sqlite3";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { TokenService } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { startFakeXero, type FakeGrant, type FakeXero } from "@tokenbroker/fake-xero";
import { createTokenCipher } from "../src/crypto/token-cipher.js";
import { openSqliteStore } from "../src/store/sqlite-store.js";
import type { TokenRecord } from "../src/token-set.js";
import { tempDir } from "./helpers/broker-fixture.js";
import { fakeEnv, freePort } from "./helpers/serve-process.js";

// `npm test` compiles src to dist/ before vitest runs; run `npm run build` first when running this file alone.
const CLI = join(import.meta.dirname, "..", "dist", "src", "cli", "main.js");

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const children = new Set<ChildProcess>();

/** The encryption key of these tests' databases (`tokenbroker keygen` makes real ones; test/security-cli.test.ts tests that). */
const ENCRYPTION_KEY = Buffer.alloc(32, 7).toString("base64");
/** Opens a database the CLI wrote, with its encryption key. */
const openStore = (path: string) => openSqliteStore({ path, encryption: createTokenCipher([Buffer.from(ENCRYPTION_KEY, "base64")]) });

/** A clean environment: nothing of the developer's TOKENBROKER_* settings leaks in. */
function env(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env["PATH"] ?? "", ...extra };
}

/** Starts the CLI; `input` (if given) is written to its stdin, which is then closed. */
function start(args: string[], options: { env: NodeJS.ProcessEnv; input?: string }) {
  const child = spawn(process.execPath, [CLI, ...args], { env: options.env, stdio: ["pipe", "pipe", "pipe"] });
  children.add(child);
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
  child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  child.stdin.on("error", () => {}); // the CLI may exit before reading stdin
  child.stdin.end(options.input ?? "");
  // "close" comes after the process exited and its output pipes are drained.
  const exited = new Promise<Result>((resolve) => {
    child.on("close", (code, signal) => {
      children.delete(child);
      resolve({ code, signal, stdout, stderr });
    });
  });
  return {
    child,
    exited,
    stdout: () => stdout,
    stderr: () => stderr,
  };
}

/** Runs the CLI to completion (at most `timeoutMs`). */
async function run(args: string[], options: { env: NodeJS.ProcessEnv; input?: string; timeoutMs?: number }): Promise<Result> {
  const p = start(args, options);
  const timeout = delay(options.timeoutMs ?? 15_000).then(() => "timeout" as const);
  const result = await Promise.race([p.exited, timeout]);
  if (result === "timeout") {
    p.child.kill("SIGKILL");
    throw new Error(`tokenbroker ${args.join(" ")} did not exit; stderr: ${p.stderr()}`);
  }
  return result;
}

function lines(text: string): string[] {
  return text.split("\n").filter((l) => l.trim() !== "");
}

/** Exactly one line on stderr, and no stack trace. */
function expectOneLine(stderr: string): string {
  const all = lines(stderr);
  expect(all, `stderr: ${stderr}`).toHaveLength(1);
  expect(stderr).not.toMatch(/^\s+at /m);
  return all[0]!;
}

afterEach(() => {
  for (const child of children) child.kill("SIGKILL");
  children.clear();
});

describe("tokenbroker CLI: usage and configuration errors", () => {
  let dir: ReturnType<typeof tempDir>;
  beforeEach(() => {
    dir = tempDir();
  });
  afterEach(() => dir.cleanup());

  const validEnv = () =>
    env({
      TOKENBROKER_CLIENT_ID: "id",
      TOKENBROKER_CLIENT_SECRET: "secret",
      TOKENBROKER_DB: join(dir.path, "t.db"),
      TOKENBROKER_ENCRYPTION_KEY: ENCRYPTION_KEY,
    });

  it("--help prints the usage with every command and exits 0", async () => {
    const r = await run(["--help"], { env: env() });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: tokenbroker <command>/);
    for (const command of ["serve", "import", "backup"]) expect(r.stdout).toMatch(new RegExp(`^\\s+${command}\\s`, "m"));
    expect(r.stdout).not.toMatch(/^\s+demo\s/m); // the demo needs the unpublished fake Xero: `npm run demo` in a checkout
    expect(r.stderr).toBe("");
  });

  it("no command prints the usage and exits 2", async () => {
    const r = await run([], { env: env() });
    expect(r.code).toBe(2);
    expect(r.stdout).toMatch(/^Usage: tokenbroker/);
  });

  it.each(["serve", "import"])("%s --help prints its usage and exits 0", async (command) => {
    const r = await run([command, "--help"], { env: env() });
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^Usage: tokenbroker ${command}`));
    expect(r.stdout).toContain("--db PATH");
    expect(r.stderr).toBe("");
  });

  it("an unknown command exits 2 and names it", async () => {
    const r = await run(["frobnicate"], { env: validEnv() });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "frobnicate"');
    expect(r.stdout).toBe("");
  });

  it("serve without TOKENBROKER_CLIENT_ID exits 2 with one line naming the variable", async () => {
    const r = await run(["serve", "--db", join(dir.path, "t.db")], { env: env({ TOKENBROKER_CLIENT_SECRET: "secret" }) });
    expect(r.code).toBe(2);
    expect(expectOneLine(r.stderr)).toContain("TOKENBROKER_CLIENT_ID");
    expect(r.stdout).toBe("");
  });

  it("serve --listen nonsense exits 2 with one clear line", async () => {
    const r = await run(["serve", "--listen", "nonsense"], { env: validEnv() });
    expect(r.code).toBe(2);
    const line = expectOneLine(r.stderr);
    expect(line).toContain("--listen");
    expect(line).toContain("nonsense");
    expect(line).toMatch(/HOST:PORT/);
  });

  it.each([
    { args: ["--shutdown-grace", "0"], env: {}, named: "--shutdown-grace" },
    { args: [], env: { TOKENBROKER_SHUTDOWN_GRACE_SECONDS: "soon" }, named: "--shutdown-grace" },
  ])("serve with a shutdown grace that is not a positive number ($args $env) exits 2 with one line naming it", async (c) => {
    const r = await run(["serve", ...c.args], { env: { ...validEnv(), ...c.env } });
    expect(r.code).toBe(2);
    expect(expectOneLine(r.stderr)).toMatch(/--shutdown-grace must be a positive number/);
  });

  it.each(["serve", "import"])(
    "%s with an http:// issuer and no TOKENBROKER_ALLOW_INSECURE_ISSUER exits 2 with one line explaining",
    async (command) => {
      const r = await run([command], {
        env: { ...validEnv(), TOKENBROKER_ISSUER: "http://127.0.0.1:9/" },
        input: "some-refresh-token\n",
      });
      expect(r.code).toBe(2);
      const line = expectOneLine(r.stderr);
      expect(line).toContain("TOKENBROKER_ISSUER");
      expect(line).toContain("http://");
      expect(line).toContain("TOKENBROKER_ALLOW_INSECURE_ISSUER");
      expect(r.stderr).not.toContain("some-refresh-token");
    },
  );

  it("import with an empty standard input exits 2 with one line, and stores nothing", async () => {
    const db = join(dir.path, "t.db");
    const r = await run(["import", "--db", db], { env: validEnv(), input: "" });
    expect(r.code).toBe(2);
    expect(expectOneLine(r.stderr)).toMatch(/standard input/);
    expect(r.stdout).toBe("");
    expect(existsSync(db)).toBe(false);
  });

  it("serve refuses a database written by a newer tokenbroker with one line, exit 2", async () => {
    const db = join(dir.path, "t.db");
    const raw = new Database(db);
    raw.pragma("user_version = 999");
    raw.close();
    const r = await run(["serve", "--listen", `127.0.0.1:${await freePort()}`, "--db", db], { env: validEnv() });
    expect(r.code).toBe(2);
    const line = expectOneLine(r.stderr);
    expect(line).toContain(db);
    expect(line).toMatch(/newer than this tokenbroker supports/);
  });

  it("serve on a port that is taken exits 2 with one line", async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    try {
      const port = (taken.address() as { port: number }).port;
      const r = await run(["serve", "--listen", `127.0.0.1:${port}`], { env: validEnv() });
      expect(r.code).toBe(2);
      expect(expectOneLine(r.stderr)).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}.*in use`));
    } finally {
      await new Promise<void>((resolve) => taken.close(() => resolve()));
    }
  });
});

describe("tokenbroker CLI against a fake Xero", () => {
  let fake: FakeXero;
  let grant: FakeGrant;
  let dir: ReturnType<typeof tempDir>;
  let db: string;

  beforeEach(async () => {
    fake = await startFakeXero();
    grant = fake.addGrant({ tenants: [{ tenantName: "Org A" }, { tenantName: "Org B" }] });
    dir = tempDir();
    db = join(dir.path, "t.db");
  });
  afterEach(async () => {
    for (const child of children) child.kill("SIGKILL");
    await fake.close();
    dir.cleanup();
  });

  const upstreamEnv = () => fakeEnv(fake, { TOKENBROKER_ENCRYPTION_KEY: ENCRYPTION_KEY });

  /** Every secret the fake has handed out for the grant that we know of. */
  const secretsIn = (text: string, secrets: Array<string | undefined>) =>
    secrets.filter((s): s is string => s !== undefined && s !== "" && text.includes(s));

  async function importGrant(): Promise<{ result: Result; connectionId: string }> {
    const result = await run(["import", "--db", db], { env: upstreamEnv(), input: `${grant.refreshToken}\n` });
    const connectionId = /^connection (\S+) \(new\)$/m.exec(result.stdout)?.[1];
    expect(result.code, `import failed: ${result.stderr}`).toBe(0);
    expect(connectionId, `stdout: ${result.stdout}`).toBeDefined();
    return { result, connectionId: connectionId! };
  }

  it("import reads the refresh token from stdin, refreshes once, prints the connection and both tenants, and prints no token", async () => {
    const { result, connectionId } = await importGrant();
    expect(fake.tokenEndpointCalls).toBe(1);
    expect(fake.refreshes).toBe(1);
    for (const t of grant.tenants) {
      expect(result.stdout).toMatch(new RegExp(`tenant ${t.tenantId}\\s+${t.tenantName}`));
    }

    const store = openStore(db);
    let record: TokenRecord | undefined;
    try {
      record = await store.tokens.getToken(connectionId);
    } finally {
      await store.close();
    }
    expect([...(record?.tenantIds ?? [])].sort()).toEqual(grant.tenants.map((t) => t.tenantId).sort());
    // The broker now holds the grant's one live refresh token.
    const live = fake.getGrant(grant.grantId)?.refreshToken;
    expect(record?.refreshToken).toBe(live);
    expect(live).not.toBe(grant.refreshToken);

    const secrets = [grant.refreshToken, live, record?.accessToken, record?.idToken];
    expect(secretsIn(result.stdout, secrets)).toEqual([]);
    expect(secretsIn(result.stderr, secrets)).toEqual([]);
  });

  it("import of a refresh token Xero rejects exits 2 with one line, stores nothing and does not echo the token", async () => {
    fake.revokeGrant(grant.grantId);
    const r = await run(["import", "--db", db], { env: upstreamEnv(), input: `${grant.refreshToken}\n` });
    expect(r.code).toBe(2);
    expect(expectOneLine(r.stderr)).toMatch(/import failed, nothing stored.*invalid_grant/);
    expect(r.stdout).toBe("");
    expect(secretsIn(r.stderr, [grant.refreshToken])).toEqual([]);
    const store = openStore(db);
    try {
      expect(await store.connections.listConnections()).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it("serve answers GetToken from the imported database, stops on SIGTERM, and after a restart serves the stored token with no refresh", async () => {
    const { result: imported, connectionId } = await importGrant();
    const callsAfterImport = fake.tokenEndpointCalls;
    const tenantId = grant.tenants[1]!.tenantId;
    const port = await freePort();
    // No API keys here (test/security-cli.test.ts has them): allowed on loopback only.
    const serveArgs = ["serve", "--listen", `127.0.0.1:${port}`, "--db", db, "--insecure-no-auth"];
    const client = createClient(TokenService, createGrpcTransport({ baseUrl: `http://127.0.0.1:${port}` }));

    const first = start(serveArgs, { env: upstreamEnv() });
    const token1 = await firstToken(client, tenantId, first);
    expect(token1.connectionId).toBe(connectionId);
    expect(token1.tenantIds.sort()).toEqual(grant.tenants.map((t) => t.tenantId).sort());
    expect(fake.tokenEndpointCalls).toBe(callsAfterImport);

    const stopped = await stop(first);
    expect(stopped.code, `stderr: ${stopped.stderr}`).toBe(0);

    const second = start(serveArgs, { env: upstreamEnv() });
    const token2 = await firstToken(client, tenantId, second);
    expect(token2.accessToken).toBe(token1.accessToken);
    expect(token2.version).toBe(token1.version);
    expect(fake.tokenEndpointCalls).toBe(callsAfterImport);
    const stopped2 = await stop(second);
    expect(stopped2.code, `stderr: ${stopped2.stderr}`).toBe(0);

    // Logs are JSON lines, and none of them (nor the import's output) carries a token.
    const logs = [...lines(stopped.stderr), ...lines(stopped2.stderr)];
    expect(logs.length).toBeGreaterThan(0);
    for (const line of logs) expect(() => JSON.parse(line), line).not.toThrow();
    expect(logs.some((l) => (JSON.parse(l) as { event?: string }).event === "listening")).toBe(true);
    const secrets = [grant.refreshToken, fake.getGrant(grant.grantId)?.refreshToken, token1.accessToken];
    expect(secretsIn(stopped.stderr + stopped.stdout, secrets)).toEqual([]);
    expect(secretsIn(stopped2.stderr + stopped2.stdout, secrets)).toEqual([]);
    expect(secretsIn(imported.stdout + imported.stderr, secrets)).toEqual([]);
  });

  /** Polls GetToken until the server answers (it is starting up). */
  async function firstToken(client: Client<typeof TokenService>, tenantId: string, server: ReturnType<typeof start>) {
    const deadline = Date.now() + 10_000;
    let exited: Result | undefined;
    void server.exited.then((r) => (exited = r));
    for (;;) {
      if (exited) throw new Error(`serve exited with ${exited.code}: ${exited.stderr}`);
      try {
        const { token } = await client.getToken({ selector: { case: "tenantId", value: tenantId } }, { timeoutMs: 1000 });
        if (!token) throw new Error("GetToken returned no token");
        return token;
      } catch (e) {
        if (Date.now() > deadline) throw new Error(`serve never answered: ${String(e)}; stderr: ${server.stderr()}`);
        await delay(50);
      }
    }
  }

  /** Sends SIGTERM; the server must exit within a few seconds. */
  async function stop(server: ReturnType<typeof start>): Promise<Result> {
    const sent = Date.now();
    server.child.kill("SIGTERM");
    const result = await Promise.race([server.exited, delay(5000).then(() => "timeout" as const)]);
    if (result === "timeout") throw new Error(`serve did not exit within 5 s of SIGTERM; stderr: ${server.stderr()}`);
    expect(Date.now() - sent).toBeLessThan(5000);
    return result;
  }
});
