/**
 * `curl` against the real broker server with the Connect protocol's JSON
 * encoding: what an operator types to check a running broker, over HTTP/1.1
 * and over cleartext HTTP/2 on the same port.
 */
import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startBroker, type BrokerFixture } from "./helpers/broker-fixture.js";
import { docSnippet, shellCommands } from "./helpers/doc-snippets.js";

const run = promisify(execFile);
const CURL = "/usr/bin/curl";
/** Appended after the body by `-w`: separates it from the status line curl adds. */
const MARK = "\n--curl-status--";

interface CurlResult {
  status: number;
  httpVersion: string;
  contentType: string;
  body: unknown;
}

/**
 * Runs the README-style command
 * `curl -s --http1.1 -X POST <url>/tokenbroker.v1.TokenService/GetToken -H 'content-type: application/json' -d '<json>'`
 * (plus `-w` to learn the status code and HTTP version), without a shell.
 */
async function curlGetToken(baseUrl: string, json: string, httpFlag = "--http1.1"): Promise<CurlResult> {
  const { stdout } = await run(
    CURL,
    [
      "-s",
      httpFlag,
      "-X",
      "POST",
      `${baseUrl}/tokenbroker.v1.TokenService/GetToken`,
      "-H",
      "content-type: application/json",
      "-d",
      json,
      "-w",
      `${MARK}%{http_code} %{http_version} %{content_type}`,
    ],
    { timeout: 10_000 },
  );
  const at = stdout.lastIndexOf(MARK);
  expect(at, "curl -w output missing").toBeGreaterThanOrEqual(0);
  const [status, httpVersion, contentType] = stdout.slice(at + MARK.length).split(" ");
  const text = stdout.slice(0, at);
  return {
    status: Number(status),
    httpVersion: httpVersion ?? "",
    contentType: contentType ?? "",
    body: text === "" ? undefined : (JSON.parse(text) as unknown),
  };
}

describe("curl with Connect JSON", () => {
  let f: BrokerFixture;

  beforeEach(async () => {
    f = await startBroker();
  });

  afterEach(async () => {
    await f?.close();
  });

  it("the health probes of docs/observability.md, run as written: alive and ready", async () => {
    const commands = shellCommands(docSnippet("docs/observability.md", "health-probes"));
    const answers = [];
    for (const command of commands) {
      expect(command).toContain("http://127.0.0.1:50051/");
      answers.push(JSON.parse((await run("/bin/sh", ["-c", command.replace("http://127.0.0.1:50051", f.server.url)])).stdout));
    }
    expect(answers).toEqual([{ status: "alive" }, { status: "ready" }]);
  });

  it("GetToken by tenant id over HTTP/1.1 answers 200 with the token as JSON", async () => {
    const before = f.fake.tokenEndpointCalls;
    const stored = await f.store.tokens.getToken(f.connectionId);
    const res = await curlGetToken(f.server.url, JSON.stringify({ tenantId: f.tenantId }));
    expect(res.status).toBe(200);
    expect(res.httpVersion).toBe("1.1");
    expect(res.contentType).toMatch(/^application\/json/);
    const { accessToken, ...rest } = (res.body as { token: Record<string, unknown> }).token;
    // Compared as a boolean, so a failure prints no token.
    expect(accessToken === stored!.accessToken, "the stored access token is served").toBe(true);
    expect(rest).toEqual({
      tokenType: "Bearer",
      // google.protobuf.Timestamp in JSON: RFC 3339, UTC (fractional seconds only when non-zero).
      expiresAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/) as unknown,
      connectionId: f.connectionId,
      tenantIds: expect.arrayContaining(f.imported.tenants.map((t) => t.tenantId)) as unknown,
      scopes: stored!.scopes,
      // uint64 in JSON: a decimal string.
      version: String(stored!.version),
    });
    expect(Date.parse(rest["expiresAt"] as string)).toBe(stored!.expiresAt);
    expect(rest["tenantIds"]).toHaveLength(2);
    expect(Date.parse(rest["expiresAt"] as string)).toBeGreaterThan(f.clock.now());
    expect(f.fake.tokenEndpointCalls).toBe(before);
  });

  it("an unknown tenant answers HTTP 404 with code not_found", async () => {
    const res = await curlGetToken(f.server.url, JSON.stringify({ tenantId: "00000000-0000-0000-0000-000000000000" }));
    expect(res.status).toBe(404);
    expect(res.contentType).toMatch(/^application\/json/);
    expect(res.body).toEqual({ code: "not_found", message: expect.any(String) as unknown });
  });

  it("naming no token set answers HTTP 400 with code invalid_argument", async () => {
    const res = await curlGetToken(f.server.url, "{}");
    expect(res.status).toBe(400);
    expect(res.body).toMatchObject({ code: "invalid_argument", message: expect.stringMatching(/tenant_id|connection_id/) as unknown });
  });

  it("the same port answers curl over cleartext HTTP/2 (--http2-prior-knowledge)", async () => {
    const res = await curlGetToken(f.server.url, JSON.stringify({ connectionId: f.connectionId }), "--http2-prior-knowledge");
    expect(res.status).toBe(200);
    expect(res.httpVersion).toBe("2");
    const { token } = res.body as { token: { accessToken: string; connectionId: string; tokenType: string } };
    expect(token.connectionId).toBe(f.connectionId);
    expect(token.tokenType).toBe("Bearer");
    expect(token.accessToken === (await f.store.tokens.getToken(f.connectionId))!.accessToken, "the stored access token is served").toBe(
      true,
    );

    const notFound = await curlGetToken(f.server.url, JSON.stringify({ connectionId: "nope" }), "--http2-prior-knowledge");
    expect(notFound.status).toBe(404);
    expect(notFound.body).toMatchObject({ code: "not_found" });
  });

  it("after expiry, curl gets the refreshed token with the next version", async () => {
    const first = await curlGetToken(f.server.url, JSON.stringify({ tenantId: f.tenantId }));
    await f.expireToken();
    const before = f.fake.tokenEndpointCalls;
    const second = await curlGetToken(f.server.url, JSON.stringify({ tenantId: f.tenantId }));
    expect(second.status).toBe(200);
    expect(f.fake.tokenEndpointCalls - before).toBe(1);
    const a = (first.body as { token: { accessToken: string; version: string } }).token;
    const b = (second.body as { token: { accessToken: string; version: string } }).token;
    expect(b.accessToken === a.accessToken, "a new access token").toBe(false);
    expect(BigInt(b.version)).toBe(BigInt(a.version) + 1n);
  });
});
