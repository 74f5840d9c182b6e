/**
 * GetToken as a long poll (`newer_than` + `wait`), for channels that speak
 * only plain HTTP: over Connect JSON on HTTP/1.1 with `fetch`, over the gRPC
 * fast path and over Connect binary. It answers at once when a newer token is
 * stored, within a second of a refresh when it waits, with the current token
 * when the wait runs out, and with GetToken's error when the connection needs
 * re-authorisation; a thousand waiters cost one upstream call.
 */
import { execFile, spawn } from "node:child_process";
import { Code, ConnectError, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import type { FakeGrant } from "@tokenbroker/fake-xero";
import { importRefreshToken } from "../src/importer.js";
import { startBroker, type BrokerFixture } from "./helpers/broker-fixture.js";
import { startSecureBroker, withKey } from "./helpers/secure-broker.js";
import { docSnippet, shellCommands } from "./helpers/doc-snippets.js";

/** What a Connect JSON GetToken over HTTP/1.1 answered: the token's version, or the error's code and message. */
interface JsonAnswer {
  status: number;
  version?: string;
  accessToken?: string;
  code?: string;
  message?: string;
  /** ms from the call to its answer. */
  tookMs: number;
}

/** GetToken as Connect JSON over HTTP/1.1 with plain `fetch`, as an Iguana or curl caller sends it. */
async function fetchGetToken(baseUrl: string, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<JsonAnswer> {
  const started = performance.now();
  const res = await fetch(`${baseUrl}/tokenbroker.v1.TokenService/GetToken`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as { token?: { version: string; accessToken: string }; code?: string; message?: string };
  return {
    status: res.status,
    ...(json.token ? { version: json.token.version, accessToken: json.token.accessToken } : {}),
    ...(json.code ? { code: json.code, message: json.message } : {}),
    tookMs: performance.now() - started,
  };
}

/** True if `p` has not settled after `ms`. */
async function stillPending(p: Promise<unknown>, ms: number): Promise<boolean> {
  const pending = Symbol("pending");
  const winner = await Promise.race([
    p.then(
      () => undefined,
      () => undefined,
    ),
    new Promise((r) => setTimeout(() => r(pending), ms)),
  ]);
  return winner === pending;
}

/** Imports a grant of its own, so that the test can revoke it at the fake. */
async function ownGrant(f: BrokerFixture): Promise<{ grant: FakeGrant; tenantId: string; connectionId: string }> {
  const grant = f.fake.addGrant({ tenants: [{ tenantName: "Org A" }] });
  const imported = await importRefreshToken(f.store, f.identity, grant.refreshToken);
  return { grant, tenantId: imported.tenants[0]!.tenantId, connectionId: imported.connectionId };
}

let f: BrokerFixture;
afterEach(async () => {
  await f?.close();
});

describe("long poll over Connect JSON on HTTP/1.1 (fetch)", () => {
  it("answers at once when a newer token is stored, waits for the next one otherwise, and returns the current token when the wait runs out", async () => {
    f = await startBroker();
    const url = f.server.url;
    const first = await fetchGetToken(url, { tenantId: f.tenantId });
    expect(first.status).toBe(200);
    const v = Number(first.version);

    // Newer than what the caller holds: at once.
    const older = await fetchGetToken(url, { tenantId: f.tenantId, newerThan: String(v - 1), wait: "30s" });
    expect(older.version).toBe(String(v));
    expect(older.tookMs).toBeLessThan(1000);

    // The current version: it waits, until a refresh (ReportExpired) stores the next token.
    const waiting = fetchGetToken(url, { tenantId: f.tenantId, newerThan: String(v), wait: "30s" });
    expect(await stillPending(waiting, 700)).toBe(true);
    const reported = performance.now();
    const report = await f.client().reportExpired({ selector: { case: "tenantId", value: f.tenantId }, accessToken: first.accessToken! });
    expect(report.refreshed).toBe(true);
    const answered = await waiting;
    expect(answered.status).toBe(200);
    expect(answered.version).toBe(String(v + 1));
    expect(answered.accessToken).toBe(report.token!.accessToken);
    expect(performance.now() - reported).toBeLessThan(1000);

    // Nothing newer within the wait: the current (valid) token when it runs out, no upstream call.
    const before = f.fake.tokenEndpointCalls;
    const ranOut = await fetchGetToken(url, { tenantId: f.tenantId, newerThan: String(v + 1), wait: "1.5s" });
    expect(ranOut.version).toBe(String(v + 1));
    expect(ranOut.tookMs).toBeGreaterThanOrEqual(1400);
    expect(ranOut.tookMs).toBeLessThan(3000);
    expect(f.fake.tokenEndpointCalls).toBe(before);

    // A wait over 60 s is refused, not cut.
    const tooLong = await fetchGetToken(url, { tenantId: f.tenantId, newerThan: String(v + 1), wait: "61s" });
    expect(tooLong.code).toBe("invalid_argument");
    expect(tooLong.message).toContain("wait");
  });

  it("ends with GetToken's error when the connection needs re-authorisation", async () => {
    f = await startBroker({ noImport: true });
    const { grant, tenantId } = await ownGrant(f);
    const url = f.server.url;
    const first = await fetchGetToken(url, { tenantId });
    const waiting = fetchGetToken(url, { tenantId, newerThan: first.version, wait: "30s" });
    expect(await stillPending(waiting, 500)).toBe(true);
    f.fake.revokeGrant(grant.grantId);
    const reported = performance.now();
    // The report's refresh gets invalid_grant: the connection needs re-authorisation.
    const report = await f
      .client()
      .reportExpired({ selector: { case: "tenantId", value: tenantId }, accessToken: first.accessToken! })
      .then(
        () => undefined,
        (e: unknown) => ConnectError.from(e),
      );
    expect(report?.code).toBe(Code.FailedPrecondition);
    const answered = await waiting;
    expect(performance.now() - reported).toBeLessThan(1000);
    const plain = await fetchGetToken(url, { tenantId });
    expect(plain.code).toBe("failed_precondition");
    expect(answered.status).toBe(plain.status);
    expect(answered.code).toBe(plain.code);
    expect(answered.message).toBe(plain.message);
  });

  it("is not closed by an idle timeout or a request timeout shorter than its wait", async () => {
    f = await startBroker({ server: { limits: { idleTimeoutMs: 500, requestTimeoutMs: 500 } } });
    const first = await fetchGetToken(f.server.url, { tenantId: f.tenantId });
    const answered = await fetchGetToken(f.server.url, { tenantId: f.tenantId, newerThan: first.version, wait: "2s" });
    expect(answered.status).toBe(200);
    expect(answered.version).toBe(first.version);
    expect(answered.tookMs).toBeGreaterThanOrEqual(1900);
    // The same on HTTP/2, through the gRPC fast path.
    const started = performance.now();
    const grpc = await f
      .client()
      .getToken({ selector: { case: "tenantId", value: f.tenantId }, newerThan: BigInt(first.version!), wait: { seconds: 2n } });
    expect(grpc.token?.version).toBe(BigInt(first.version!));
    expect(performance.now() - started).toBeGreaterThanOrEqual(1900);
  });
});

const binaryProtocols: Array<{ name: string; transport: (baseUrl: string) => Transport }> = [
  { name: "gRPC (the fast path)", transport: (baseUrl) => createGrpcTransport({ baseUrl }) },
  { name: "Connect binary (HTTP/2)", transport: (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true }) },
];

describe.each(binaryProtocols)("long poll over $name", ({ transport }) => {
  it("answers at once, waits for a refresh, runs out, and ends with GetToken's error on needs re-authorisation", async () => {
    f = await startBroker({ noImport: true });
    const { grant, tenantId } = await ownGrant(f);
    const client = f.client(transport);
    const selector = { case: "tenantId" as const, value: tenantId };
    const { token: first } = await client.getToken({ selector });
    const v = first!.version;

    const older = await client.getToken({ selector, newerThan: v - 1n, wait: { seconds: 30n } });
    expect(older.token?.version).toBe(v);

    const waiting = client.getToken({ selector, newerThan: v, wait: { seconds: 30n } });
    expect(await stillPending(waiting, 500)).toBe(true);
    const reported = performance.now();
    await client.reportExpired({ selector, accessToken: first!.accessToken });
    expect((await waiting).token?.version).toBe(v + 1n);
    expect(performance.now() - reported).toBeLessThan(1000);

    const started = performance.now();
    const ranOut = await client.getToken({ selector, newerThan: v + 1n, wait: { nanos: 800_000_000 } });
    expect(ranOut.token?.version).toBe(v + 1n);
    expect(performance.now() - started).toBeGreaterThanOrEqual(750);

    const tooLong = await client
      .getToken({ selector, newerThan: v + 1n, wait: { seconds: 61n } })
      .catch((e: unknown) => ConnectError.from(e));
    expect(tooLong).toBeInstanceOf(ConnectError);
    expect((tooLong as ConnectError).code).toBe(Code.InvalidArgument);

    const doomed = client.getToken({ selector, newerThan: v + 1n, wait: { seconds: 30n } }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(await stillPending(doomed, 500)).toBe(true);
    f.fake.revokeGrant(grant.grantId);
    const current = await client.getToken({ selector });
    await client.reportExpired({ selector, accessToken: current.token!.accessToken }).catch(() => {});
    const error = await doomed;
    const plain = await client.getToken({ selector }).then(
      () => undefined,
      (e: unknown) => ConnectError.from(e),
    );
    expect(error?.code).toBe(Code.FailedPrecondition);
    expect(error?.rawMessage).toBe(plain?.rawMessage);
  });

  it("does not wait with a stored token that will not stay valid for min_valid_for: it refreshes at once", async () => {
    f = await startBroker();
    const client = f.client(transport);
    const selector = { case: "tenantId" as const, value: f.tenantId };
    const { token } = await client.getToken({ selector });
    // 30 s left: less than the default 60 s the caller needs.
    f.clock.set(Number(token!.expiresAt!.seconds) * 1000 - 30_000);
    const before = f.fake.tokenEndpointCalls;
    const started = performance.now();
    const answered = await client.getToken({ selector, newerThan: token!.version, wait: { seconds: 30n } });
    expect(answered.token?.version).toBe(token!.version + 1n);
    expect(performance.now() - started).toBeLessThan(5000);
    expect(f.fake.tokenEndpointCalls - before).toBe(1);
  });

  it("a caller that goes away stops waiting, and its wait is let go", async () => {
    f = await startBroker();
    const client = f.client(transport);
    const selector = { case: "tenantId" as const, value: f.tenantId };
    const { token } = await client.getToken({ selector });
    const controller = new AbortController();
    const waiting = client
      .getToken({ selector, newerThan: token!.version, wait: { seconds: 30n } }, { signal: controller.signal })
      .catch((e: unknown) => ConnectError.from(e));
    await expect.poll(() => f.server.broker.longPolls.waiting, { timeout: 2000 }).toBe(1);
    controller.abort();
    expect(((await waiting) as ConnectError).code).toBe(Code.Canceled);
    await expect.poll(() => f.server.broker.longPolls.waiting, { timeout: 2000 }).toBe(0);
    expect(f.server.broker.hub.size).toBe(0);
  });
});

describe("long polls and shutdown", () => {
  it("a graceful shutdown answers waiting long polls with the current token at once, not after their wait", async () => {
    f = await startBroker();
    const client = f.client();
    const selector = { case: "tenantId" as const, value: f.tenantId };
    const { token } = await client.getToken({ selector });
    const grpc = client.getToken({ selector, newerThan: token!.version, wait: { seconds: 60n } });
    const json = fetchGetToken(f.server.url, { tenantId: f.tenantId, newerThan: String(token!.version), wait: "60s" });
    await expect.poll(() => f.server.broker.longPolls.waiting, { timeout: 5000 }).toBe(2);
    const started = performance.now();
    await f.server.close();
    expect(performance.now() - started).toBeLessThan(5000);
    expect((await grpc).token?.version).toBe(token!.version);
    expect((await json).version).toBe(String(token!.version));
  });
});

describe("long polls at scale", () => {
  it("1,000 waiters (800 on the gRPC fast path, 200 as Connect JSON over HTTP/1.1) are all answered after one refresh, with one upstream call", async () => {
    f = await startBroker();
    const client = f.client();
    const selector = { case: "tenantId" as const, value: f.tenantId };
    const { token } = await client.getToken({ selector });
    const v = token!.version;
    const grpc = Array.from({ length: 800 }, () =>
      client.getToken({ selector, newerThan: v, wait: { seconds: 60n } }).then((r) => r.token!.version),
    );
    const json = Array.from({ length: 200 }, () =>
      fetchGetToken(f.server.url, { tenantId: f.tenantId, newerThan: String(v), wait: "60s" }).then((r) => BigInt(r.version ?? "0")),
    );
    await expect.poll(() => f.server.broker.longPolls.waiting, { timeout: 20_000, interval: 100 }).toBe(1000);
    const before = f.fake.tokenEndpointCalls;
    const reported = performance.now();
    await client.reportExpired({ selector, accessToken: token!.accessToken });
    const versions = await Promise.all([...grpc, ...json]);
    const tookMs = performance.now() - reported;
    expect(versions.every((x) => x === v + 1n)).toBe(true);
    expect(f.fake.tokenEndpointCalls - before).toBe(1);
    expect(tookMs).toBeLessThan(5000); // the bench measures the p99 on a quiet machine; this only bounds it
    expect(f.server.broker.hub.size).toBe(0);
  });
});

describe("long poll with API keys", () => {
  it("a key revoked while its long poll waits ends it UNAUTHENTICATED; a key for another tenant is refused before waiting", async () => {
    const s = await startSecureBroker({ revocationCheckMs: 100 });
    f = s;
    const key = s.createKey("channel", "*");
    const other = s.createKey("other", ["not-this-tenant"]);
    const client = s.client();
    const selector = { case: "tenantId" as const, value: s.tenantId };
    const { token } = await client.getToken({ selector }, withKey(key));
    const refused = await client
      .getToken({ selector, newerThan: token!.version, wait: { seconds: 30n } }, withKey(other))
      .catch((e: unknown) => ConnectError.from(e));
    expect((refused as ConnectError).code).toBe(Code.PermissionDenied);
    const waiting = fetchGetToken(
      s.server.url,
      { tenantId: s.tenantId, newerThan: String(token!.version), wait: "30s" },
      withKey(key).headers,
    );
    expect(await stillPending(waiting, 500)).toBe(true);
    await s.keys.revoke("channel", Date.now());
    const answered = await waiting;
    expect(answered.code).toBe("unauthenticated");
  });
});

describe("the long poll in docs/clients.md", () => {
  it("the curl command answers at once with a newer token, and otherwise waits for the next one", async () => {
    const s = await startSecureBroker();
    f = s;
    const key = s.createKey("curl", [s.tenantId]);
    const [command, ...more] = shellCommands(docSnippet("docs/clients.md", "curl-long-poll"));
    expect(more).toEqual([]);
    expect(command).toContain(`"newerThan":"7","wait":"50s"`);
    const sh = (version: bigint) =>
      new Promise<{ version: string }>((resolve, reject) =>
        execFile(
          "/bin/sh",
          [
            "-c",
            command!
              .replaceAll("http://127.0.0.1:50051", s.server.url)
              .replaceAll("<tenant id>", s.tenantId)
              .replace(`"newerThan":"7"`, `"newerThan":"${version}"`),
          ],
          { env: { PATH: process.env["PATH"] ?? "", KEY: key } },
          (e, stdout) => (e ? reject(e) : resolve((JSON.parse(stdout) as { token: { version: string } }).token)),
        ),
      );
    const { token } = await s.client().getToken({ selector: { case: "tenantId", value: s.tenantId } }, withKey(key));
    const v = token!.version;
    expect((await sh(v - 1n)).version).toBe(String(v));
    const waiting = sh(v);
    await expect.poll(() => s.server.broker.longPolls.waiting, { timeout: 5000 }).toBe(1);
    const reported = performance.now();
    await s.client().reportExpired({ selector: { case: "tenantId", value: s.tenantId }, accessToken: token!.accessToken }, withKey(key));
    expect((await waiting).version).toBe(String(v + 1n));
    expect(performance.now() - reported).toBeLessThan(1000);
  });

  it("the Python loop prints each new token's version as soon as it is stored, never the token", async () => {
    const s = await startSecureBroker();
    f = s;
    const key = s.createKey("python", [s.tenantId]);
    const code = docSnippet("docs/clients.md", "python-long-poll");
    expect(code).toContain('BROKER = "http://127.0.0.1:50051"');
    const filled = code
      .replace('"http://127.0.0.1:50051"', JSON.stringify(s.server.url))
      .replace('"<tenant id>"', JSON.stringify(s.tenantId));
    const child = spawn("python3", ["-c", filled], { env: { ...process.env, TOKENBROKER_KEY: key }, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    try {
      await expect.poll(() => s.server.broker.longPolls.waiting, { timeout: 10_000 }).toBe(1);
      const stored = (await s.store.tokens.getToken(s.connectionId))!;
      await s.client().reportExpired({ selector: { case: "tenantId", value: s.tenantId }, accessToken: stored.accessToken }, withKey(key));
      await expect.poll(() => stdout, { timeout: 2000 }).toMatch(/\n$/);
      expect(stderr).toBe("");
      expect(stdout).toMatch(new RegExp(`^version ${stored.version + 1} expires \\d{4}-\\d\\d-\\d\\dT\\S+Z\\n$`));
      // It asks again at once, with the version it received.
      await expect.poll(() => s.server.broker.longPolls.waiting, { timeout: 5000 }).toBe(1);
      const fresh = (await s.store.tokens.getToken(s.connectionId))!;
      expect(stdout.includes(stored.accessToken) || stdout.includes(fresh.accessToken)).toBe(false);
    } finally {
      child.kill();
    }
  });
});
