import { execFile, spawn, type ChildProcess } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { setTimeout as delay } from "node:timers/promises";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { identityServerOptions, startFakeXero, type FakeGrant, type FakeXero } from "@tokenbroker/fake-xero";
import { importRefreshToken } from "../src/importer.js";
import { openSqliteStore } from "../src/store/sqlite-store.js";
import { createOidcIdentityServer } from "../src/upstream/oidc-identity-server.js";
import { tempDir } from "./helpers/broker-fixture.js";
import { docSnippet, shellCommands } from "./helpers/doc-snippets.js";
import { parsePrometheusText } from "./helpers/prometheus-text.js";
import { fakeEnv, freePort } from "./helpers/serve-process.js";
import { startWebhookReceiver, type WebhookReceiver } from "./helpers/webhook-receiver.js";

// `npm test` compiles src to dist/ first; run `npm run build` before running this file alone.
const CLI = join(import.meta.dirname, "..", "dist", "src", "cli", "main.js");
const SECRET = "whsec_observability_test_0123456789";
const PRETTY = /^\d{2}:\d{2}:\d{2}\.\d{3} (DEBUG|INFO |WARN |ERROR|FATAL) \S/;

const children = new Set<ChildProcess>();

/**
 * Starts `tokenbroker serve …` on loopback without API keys or encryption at rest (neither is what
 * this file tests); resolves once it logged that it listens.
 */
async function serve(args: string[], env: NodeJS.ProcessEnv) {
  const all = [CLI, "serve", ...args, "--insecure-no-auth", "--insecure-no-encryption"];
  const child = spawn(process.execPath, all, { env, stdio: ["ignore", "pipe", "pipe"] });
  children.add(child);
  let stderr = "";
  child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  const deadline = Date.now() + 10_000;
  while (!/listening on/.test(stderr)) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error(`serve did not start: ${stderr}`);
    await delay(20);
  }
  return {
    stderr: () => stderr,
    async stop(): Promise<number | null> {
      child.kill("SIGTERM");
      const code = await Promise.race([exited, delay(5000).then(() => "timeout" as const)]);
      if (code === "timeout") throw new Error(`serve did not stop: ${stderr}`);
      children.delete(child);
      return code;
    },
  };
}

/** Runs the CLI to its end (configuration errors). */
async function run(args: string[], env: NodeJS.ProcessEnv) {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [CLI, ...args], { env, timeout: 10_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** The command of docs/observability.md ("metrics-curl"), run as written against `base`. */
async function curlGrep(base: string): Promise<string> {
  const [command, ...more] = shellCommands(docSnippet("docs/observability.md", "metrics-curl"));
  expect(more).toEqual([]);
  expect(command).toContain("http://127.0.0.1:50051/metrics");
  return (await promisify(execFile)("sh", ["-c", command!.replace("http://127.0.0.1:50051", base)], { timeout: 10_000 })).stdout;
}
const curl = async (url: string) => (await promisify(execFile)("curl", ["-s", url], { timeout: 10_000 })).stdout;

afterEach(() => {
  for (const child of children) child.kill("SIGKILL");
  children.clear();
});

describe("tokenbroker serve: metrics, pretty logs and webhooks, as an operator sees them", () => {
  let fake: FakeXero;
  let grant: FakeGrant;
  let receiver: WebhookReceiver;
  let dir: ReturnType<typeof tempDir>;
  let db: string;
  let connectionId: string;

  beforeEach(async () => {
    fake = await startFakeXero();
    receiver = await startWebhookReceiver(SECRET);
    grant = fake.addGrant({ tenants: [{ tenantName: "Org A" }] });
    dir = tempDir();
    db = join(dir.path, "t.db");
    const store = openSqliteStore({ path: db });
    try {
      const identity = createOidcIdentityServer(identityServerOptions(fake));
      connectionId = (await importRefreshToken(store, identity, grant.refreshToken)).connectionId;
    } finally {
      await store.close();
    }
  });
  afterEach(async () => {
    for (const child of children) child.kill("SIGKILL");
    await receiver.close();
    await fake.close();
    dir.cleanup();
  });

  const env = (extra: Record<string, string> = {}) => fakeEnv(fake, extra);

  it("a revoked grant: pretty log lines, a signed webhook, and /metrics saying so", async () => {
    const port = await freePort();
    const base = `http://127.0.0.1:${port}`;
    const server = await serve(
      ["--listen", `127.0.0.1:${port}`, "--db", db, "--log-format", "pretty"],
      env({ TOKENBROKER_WEBHOOK_URL: receiver.url.href, TOKENBROKER_WEBHOOK_SECRET: SECRET }),
    );
    const post = async (rpc: string, body: unknown) => {
      const res = await fetch(`${base}/tokenbroker.v1.TokenService/${rpc}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      return { status: res.status, json: (await res.json()) as { token?: { accessToken: string }; code?: string } };
    };
    const got = await post("GetToken", { connectionId });
    expect(got.status).toBe(200);
    const accessToken = got.json.token!.accessToken;

    // The user revokes the app at Xero; a channel's API call gets 401 and reports the token.
    fake.revokeGrant(grant.grantId);
    const reported = await post("ReportExpired", { connectionId, accessToken });
    expect(reported.json.code).toBe("failed_precondition");

    // The scheduler's next pass (every second) notices and sends the webhook.
    const deadline = Date.now() + 5000;
    while (receiver.accepted().length === 0 && Date.now() < deadline) await delay(50);
    expect(receiver.accepted().map((e) => e.type)).toEqual(["connection.needs_reauthorization"]);
    expect(receiver.received.every((r) => r.verified)).toBe(true);

    // The docs' verification snippet, run as written, accepts the delivery and refuses another secret.
    const file = join(dir.path, "verify-webhook.mjs");
    writeFileSync(file, docSnippet("docs/observability.md", "verify-webhook"));
    const { verifyTokenbrokerSignature } = (await import(pathToFileURL(file).href)) as {
      verifyTokenbrokerSignature: (header: string, rawBody: string, secret: string) => boolean;
    };
    const delivery = receiver.received[0]!;
    expect(verifyTokenbrokerSignature(delivery.signature!, delivery.body, SECRET)).toBe(true);
    expect(verifyTokenbrokerSignature(delivery.signature!, delivery.body, "wrong")).toBe(false);
    expect(verifyTokenbrokerSignature(delivery.signature!, delivery.body.replace("Org A", "Org B"), SECRET)).toBe(false);

    // What the docs show: curl /metrics.
    const text = await curl(`${base}/metrics`);
    const m = parsePrometheusText(text);
    expect(m.value("tokenbroker_refreshes_total", { cause: "report", outcome: "invalid_grant" })).toBe(1);
    expect(m.value("tokenbroker_connections", { state: "needs_reauthorization" })).toBe(1);
    expect(m.value("tokenbroker_connection_needs_reauthorization", { connection_id: connectionId })).toBe(1);
    expect(m.value("tokenbroker_tokens_served_total", { rpc: "GetToken", protocol: "connect" })).toBe(1);
    expect(m.value("process_resident_memory_bytes")).toBeGreaterThan(0);
    const grepped = await curlGrep(base);
    expect(grepped).toContain(`tokenbroker_connection_needs_reauthorization{connection_id="${connectionId}"} 1`);
    expect(
      grepped
        .split("\n")
        .filter((l) => l !== "")
        .every((l) => l.startsWith("tokenbroker_")),
    ).toBe(true);

    expect(await server.stop()).toBe(0);
    const lines = server
      .stderr()
      .split("\n")
      .filter((l) => l !== "");
    for (const line of lines) expect(line, line).toMatch(PRETTY);
    expect(
      lines.some((l) => /WARN {2}refresh invalid_grant .*connectionId=\S+ cause=report outcome=invalid_grant .*durationMs=\d+/.test(l)),
    ).toBe(true);
    expect(lines.some((l) => /WARN {2}connection \S+ needs re-authorisation.* type=connection\.needs_reauthorization/.test(l))).toBe(true);
    expect(lines.some((l) => /INFO {2}webhook delivered .*delivered=true/.test(l))).toBe(true);
    for (const secret of [accessToken, grant.refreshToken, fake.getGrant(grant.grantId)?.refreshToken, SECRET, fake.clientSecret]) {
      expect(server.stderr() + text).not.toContain(secret!);
    }
  });

  it("TOKENBROKER_LOG_FORMAT=pretty works too; a bad format or a webhook URL without a secret stops serve with one line", async () => {
    const port = await freePort();
    const server = await serve(["--listen", `127.0.0.1:${port}`, "--db", db], env({ TOKENBROKER_LOG_FORMAT: "pretty" }));
    expect(await server.stop()).toBe(0);
    expect(server.stderr()).toMatch(/^\d{2}:\d{2}:\d{2}\.\d{3} INFO {2}tokenbroker listening on http:\/\/127\.0\.0\.1:\d+ /m);

    const bad = await run(["serve", "--db", db, "--log-format", "xml"], env());
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe('tokenbroker serve: --log-format must be json or pretty, not "xml"');

    const noSecret = await run(["serve", "--db", db], env({ TOKENBROKER_WEBHOOK_URL: receiver.url.href }));
    expect(noSecret.code).toBe(2);
    expect(noSecret.stderr.trim().split("\n")).toHaveLength(1);
    expect(noSecret.stderr).toContain("TOKENBROKER_WEBHOOK_SECRET");
  });
});
