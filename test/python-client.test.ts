/**
 * The Python example client (examples/python/tokenbroker_client.py, grpcio and
 * the stubs in gen/python) against the real broker server: GetToken by tenant,
 * a WatchToken stream that receives a refresh made by another client, and the
 * mapping of gRPC status codes to the example's exceptions.
 */
import { execFile, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startBroker, type BrokerFixture } from "./helpers/broker-fixture.js";
import { spawnLines, type LineProcess } from "./helpers/line-process.js";

const PYTHON = "/usr/bin/python3";
/** Debian's grpcio and protobuf live in the system Python only (python3-grpcio, python3-protobuf). */
const noGrpc = (() => {
  try {
    execFileSync(PYTHON, ["-c", "import grpc, google.protobuf"], { stdio: "ignore" });
    return undefined;
  } catch {
    return `${PYTHON} cannot import grpc and google.protobuf (apt install python3-grpcio python3-protobuf)`;
  }
})();
/** No __pycache__ in gen/ or examples/. */
const env = { ...process.env, PYTHONDONTWRITEBYTECODE: "1" };
/** The repository root: the commands below are the README's, run from there. */
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
    const stored = (await f.store.getToken(f.connectionId))!;
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

  it("the example runs as a script: the README command prints the token set, not the token", async () => {
    const stored = (await f.store.getToken(f.connectionId))!;
    const target = new URL(f.server.url).host;
    const { stdout, stderr } = await promisify(execFile)(PYTHON, ["examples/python/tokenbroker_client.py", target, f.tenantId], {
      env,
      cwd: root,
      timeout: 15_000,
    });
    expect(stderr).toBe("");
    expect(stdout).toContain(`connection ${f.connectionId}  version ${stored.version}  expires ${new Date(stored.expiresAt).toISOString().replace(".000Z", "Z")}`);
    for (const t of f.imported.tenants) expect(stdout).toContain(t.tenantId);
    expect(stdout.includes(stored.accessToken)).toBe(false);

    const unknown = await promisify(execFile)(PYTHON, ["examples/python/tokenbroker_client.py", target, "no-such-tenant"], { env, cwd: root, timeout: 15_000 }).then(
      () => undefined,
      (e: { code?: number; stderr?: string }) => e,
    );
    expect(unknown?.code).toBe(1);
    expect(unknown?.stderr).toMatch(/^tokenbroker: NOT_FOUND: .*no-such-tenant/);
  });
});
