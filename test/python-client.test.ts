/**
 * The Python example client (examples/python/tokenbroker_client.py, grpcio and
 * the stubs in gen/python) against the real broker server: GetToken by tenant,
 * a WatchToken stream that receives a refresh made by another client, and the
 * mapping of gRPC status codes to the example's exceptions; then against a
 * broker that requires API keys: the key from TOKENBROKER_KEY on every call,
 * and UNAUTHENTICATED / PERMISSION_DENIED as the example's exceptions.
 */
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startBroker, tempDir, type BrokerFixture } from "./helpers/broker-fixture.js";
import { spawnLines, type LineProcess } from "./helpers/line-process.js";
import { docSnippet, shellCommands } from "./helpers/doc-snippets.js";
import { missingSystemPackage } from "./helpers/system-requirement.js";
import { startSecureBroker, type SecureBrokerFixture } from "./helpers/secure-broker.js";

const PYTHON = "/usr/bin/python3";
/** Debian's grpcio and protobuf live in the system Python only (python3-grpcio, python3-protobuf). */
const noGrpc = missingSystemPackage("Python with grpcio", "apt-get install python3-grpcio python3-protobuf", [
  PYTHON,
  "-c",
  "import grpc, google.protobuf",
]);
/** No __pycache__ in gen/ or examples/; no API key unless a test gives one. */
const { TOKENBROKER_KEY: _ignored, ...inherited } = process.env;
const env = { ...inherited, PYTHONDONTWRITEBYTECODE: "1" };
/** The repository root: the commands below are the docs', run from there. */
const root = fileURLToPath(new URL("..", import.meta.url));
const sha256 = (s: string) => createHash("sha256").update(s).digest("hex");

describe.skipIf(noGrpc !== undefined)(`Python client (grpcio)${noGrpc ? ` skipped: ${noGrpc}` : ""}`, () => {
  let f: BrokerFixture;
  let child: LineProcess | undefined;

  beforeEach(async () => {
    f = await startBroker();
  });
  afterEach(async () => {
    child?.kill();
    child = undefined;
    await f.close();
  });

  it("gets a token by tenant, watches a refresh arrive as version + 1, and maps NOT_FOUND and INVALID_ARGUMENT", async () => {
    const target = new URL(f.server.url).host;
    const stored = (await f.store.tokens.getToken(f.connectionId))!;
    const callsBefore = f.fake.tokenEndpointCalls;
    child = spawnLines(PYTHON, ["test/python/check_client.py", target, f.tenantId], { env, cwd: root });

    const got = await child.waitFor("get_token");
    expect(got).toEqual({
      step: "get_token",
      sha256: sha256(stored.accessToken),
      length: stored.accessToken.length,
      tokenType: "Bearer",
      connectionId: f.connectionId,
      tenantIds: expect.arrayContaining(f.imported.tenants.map((t) => t.tenantId)) as unknown,
      version: stored.version,
      expiresAtMs: stored.expiresAt,
    });
    expect(got["tenantIds"]).toHaveLength(2);

    const first = await child.waitFor("watch");
    expect(first).toMatchObject({ n: 1, state: "CONNECTION_STATE_ACTIVE", sha256: sha256(stored.accessToken), version: stored.version });
    expect(f.fake.tokenEndpointCalls).toBe(callsBefore); // a valid stored token needs no refresh

    // Another channel's Xero call got 401: it reports the token, the broker refreshes once.
    const report = await f.client().reportExpired({
      selector: { case: "tenantId", value: f.tenantId },
      accessToken: stored.accessToken,
    });
    expect(report.refreshed).toBe(true);
    expect(f.fake.tokenEndpointCalls - callsBefore).toBe(1);

    const second = await child.waitFor("watch");
    expect(second).toEqual({
      ...first,
      n: 2,
      sha256: sha256(report.token!.accessToken),
      length: report.token!.accessToken.length,
      version: stored.version + 1,
      expiresAtMs: timestampMs(report.token!.expiresAt!),
    });
    expect(second["sha256"]).not.toBe(first["sha256"]);

    await child.waitFor("watch_closed");
    expect(await child.waitFor("not_found")).toEqual({
      step: "not_found",
      error: "TenantNotFound",
      code: "NOT_FOUND",
      message: expect.stringContaining("00000000-0000-0000-0000-000000000000") as unknown,
    });
    expect(await child.waitFor("invalid_argument")).toMatchObject({ error: "InvalidRequest", code: "INVALID_ARGUMENT" });
    expect(await child.exit()).toBe(0);
    expect(child.stderr).toBe("");

    // The stream was cancelled when the script closed it.
    await expect.poll(() => f.server.broker.hub.size, { timeout: 3000 }).toBe(0);
    // No token in anything the script printed.
    const printed = JSON.stringify(child.lines);
    expect(printed.includes(stored.accessToken) || printed.includes(report.token!.accessToken)).toBe(false);
  });

  it("the example runs as a script: the docs' command prints the token set, not the token", async () => {
    const stored = (await f.store.tokens.getToken(f.connectionId))!;
    const target = new URL(f.server.url).host;
    const { code, stdout, stderr } = await runScript(target, f.tenantId);
    expect(stderr).toBe("");
    expect(code).toBe(0);
    expect(stdout).toContain(
      `connection ${f.connectionId}  version ${stored.version}  expires ${new Date(stored.expiresAt).toISOString().replace(".000Z", "Z")}`,
    );
    for (const t of f.imported.tenants) expect(stdout).toContain(t.tenantId);
    expect(stdout.includes(stored.accessToken)).toBe(false);

    const unknown = await runScript(target, "no-such-tenant");
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^tokenbroker: NOT_FOUND: .*no-such-tenant/);
  });
});

/** A word for sh, quoted. */
const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/**
 * Runs the command of docs/clients.md ("python-script") with the broker's
 * address, the tenant and the key (without `TOKENBROKER_KEY=…` when there is
 * none); resolves with the exit code and output (never rejects).
 */
async function runScript(target: string, tenantId: string, key?: string) {
  const [command, ...more] = shellCommands(docSnippet("docs/clients.md", "python-script"));
  expect(more).toEqual([]);
  expect(command).toMatch(
    /^TOKENBROKER_KEY=tbk_… \/usr\/bin\/python3 examples\/python\/tokenbroker_client\.py 127\.0\.0\.1:50051 <tenant id>$/,
  );
  const filled = command!
    .replace("TOKENBROKER_KEY=tbk_… ", key === undefined ? "" : `TOKENBROKER_KEY=${quote(key)} `)
    .replace("127.0.0.1:50051", quote(target))
    .replace("<tenant id>", quote(tenantId));
  return promisify(execFile)("/bin/sh", ["-c", filled], { env, cwd: root, timeout: 15_000 }).then(
    (r) => ({ code: 0, stdout: r.stdout, stderr: r.stderr }),
    (e: { code?: number; stdout?: string; stderr?: string }) => ({ code: e.code ?? -1, stdout: e.stdout ?? "", stderr: e.stderr ?? "" }),
  );
}

describe.skipIf(noGrpc !== undefined)(`Python client against a broker that requires API keys${noGrpc ? ` skipped: ${noGrpc}` : ""}`, () => {
  let f: SecureBrokerFixture;
  let key: string;
  let otherKey: string;
  let target: string;

  beforeEach(async () => {
    f = await startSecureBroker();
    target = new URL(f.server.url).host;
    key = f.createKey("python-channel", [f.tenantId]);
    // Another channel's key: the grant's other organisation only.
    otherKey = f.createKey("other-channel", [f.imported.tenants[1]!.tenantId]);
  });
  afterEach(async () => {
    await f.close();
  });

  it("sends TOKENBROKER_KEY on GetToken, ReportExpired and WatchToken; no, unknown or other-tenant keys raise NotAuthorized", async () => {
    const stored = (await f.store.tokens.getToken(f.connectionId))!;
    const refreshesBefore = f.fake.refreshes;
    const child = spawnLines(PYTHON, ["test/python/check_auth.py", target, f.tenantId], {
      env: { ...env, TOKENBROKER_KEY: key, OTHER_KEY: otherKey },
      cwd: root,
    });
    try {
      expect(await child.waitFor("get_token")).toEqual({ step: "get_token", sha256: sha256(stored.accessToken), version: stored.version });
      const report = await child.waitFor("report_expired");
      const current = (await f.store.tokens.getToken(f.connectionId))!;
      expect(report).toEqual({ step: "report_expired", refreshed: true, sha256: sha256(current.accessToken), version: stored.version + 1 });
      expect(f.fake.refreshes - refreshesBefore).toBe(1);
      expect(await child.waitFor("watch")).toEqual({
        step: "watch",
        state: "CONNECTION_STATE_ACTIVE",
        sha256: sha256(current.accessToken),
        version: stored.version + 1,
      });

      const unauthenticated = {
        error: "Unauthenticated",
        notAuthorized: true,
        code: "UNAUTHENTICATED",
        message: expect.stringMatching(/^a valid API key is required: send `authorization: Bearer <key>`/) as unknown,
      };
      const noKey = await child.waitFor("no_key");
      expect(noKey).toMatchObject(unauthenticated);
      expect(noKey["message"]).toContain("no API key was sent: pass api_key= or set TOKENBROKER_KEY");
      expect(await child.waitFor("no_key_watch")).toMatchObject(unauthenticated);
      const unknown = await child.waitFor("unknown_key");
      expect(unknown).toMatchObject(unauthenticated);
      expect(unknown["message"]).toContain("the API key sent is unknown or revoked");

      const denied = {
        error: "PermissionDenied",
        notAuthorized: true,
        code: "PERMISSION_DENIED",
        message: "this API key may not use that tenant or connection",
      };
      expect(await child.waitFor("other_tenant_key")).toEqual({ step: "other_tenant_key", ...denied });
      expect(await child.waitFor("other_tenant_key_report")).toEqual({ step: "other_tenant_key_report", ...denied });
      expect(await child.waitFor("bad_key")).toEqual({
        step: "bad_key",
        error: "ValueError",
        message: "api_key is not an API key: it must be visible ASCII characters, without spaces",
      });
      expect(await child.exit()).toBe(0);
      expect(child.stderr).toBe("");
      // Refused calls refreshed nothing; no key and no token in anything printed.
      expect(f.fake.refreshes - refreshesBefore).toBe(1);
      const printed = JSON.stringify(child.lines);
      for (const secret of [key, otherKey, stored.accessToken, current.accessToken]) expect(printed.includes(secret)).toBe(false);
    } finally {
      child.kill();
    }

    // The broker saw whose key each call carried: its audit log names the key, never the key itself.
    const entries = await f.auditEntries();
    const byKey = (name: string) => entries.filter((e) => e.actor === name).map((e) => `${e.action} ${e.outcome}`);
    expect(new Set(byKey("python-channel"))).toEqual(new Set(["get_token ok", "report_expired ok", "watch_token ok"]));
    expect(new Set(byKey("other-channel"))).toEqual(new Set(["get_token permission_denied", "report_expired permission_denied"]));
  });

  it("the README's snippet gets the token with the key from TOKENBROKER_KEY", async () => {
    const stored = (await f.store.tokens.getToken(f.connectionId))!;
    const snippet = docSnippet("README.md", "python-get-token");
    expect(snippet).toContain('"127.0.0.1:50051"');
    const dir = tempDir();
    const file = join(dir.path, "get_token.py");
    writeFileSync(file, snippet.replace('"127.0.0.1:50051"', JSON.stringify(target)));
    const { stdout, stderr } = await promisify(execFile)(PYTHON, [file], {
      env: { ...env, PYTHONPATH: join(root, "examples", "python"), TOKENBROKER_KEY: key, XERO_TENANT_ID: f.tenantId },
      cwd: root,
      timeout: 15_000,
    }).finally(() => dir.cleanup());
    expect(stderr).toBe("");
    expect(stdout).toBe(`version ${stored.version}, ${f.imported.tenants.length} tenants\n`);
  });

  it("the docs' command with TOKENBROKER_KEY prints the token set; without it or with another tenant's key it says why", async () => {
    const stored = (await f.store.tokens.getToken(f.connectionId))!;
    const ok = await runScript(target, f.tenantId, key);
    expect(ok.stderr).toBe("");
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain(`connection ${f.connectionId}  version ${stored.version}  expires `);
    for (const t of f.imported.tenants) expect(ok.stdout).toContain(t.tenantId);

    const none = await runScript(target, f.tenantId);
    expect(none.code).toBe(1);
    expect(none.stdout).toBe("");
    expect(none.stderr).toBe(
      "tokenbroker: UNAUTHENTICATED: a valid API key is required: send `authorization: Bearer <key>` (no API key was sent: pass api_key= or set TOKENBROKER_KEY)\n",
    );

    const other = await runScript(target, f.tenantId, otherKey);
    expect(other.code).toBe(1);
    expect(other.stdout).toBe("");
    expect(other.stderr).toBe("tokenbroker: PERMISSION_DENIED: this API key may not use that tenant or connection\n");

    const malformed = await runScript(target, f.tenantId, `${key} trailing`);
    expect(malformed.code).toBe(2);
    expect(malformed.stderr).toBe("tokenbroker: TOKENBROKER_KEY is not an API key: it must be visible ASCII characters, without spaces\n");

    for (const run of [ok, none, other, malformed]) {
      for (const secret of [key, otherKey, stored.accessToken])
        expect(run.stdout.includes(secret) || run.stderr.includes(secret)).toBe(false);
    }
  });
});
