/**
 * No secret leaks: a full scenario run through the CLI with logging at debug
 * level (keygen, import, keys create, serve, GetToken, refresh, an upstream
 * 5xx with a body, invalid_grant, keys list, audit), then every byte of
 * output (stdout, stderr, log lines) and every error message sent to callers
 * is searched for every secret the scenario created, in raw, base64,
 * base64url, hex and URL-encoded forms.
 */
import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, beforeEach, expect, it } from "vitest";
import { TokenService } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { createTokenCipher } from "../src/crypto/token-cipher.js";
import { startFakeXero, type FakeXero } from "@tokenbroker/fake-xero";
import { openSqliteStore } from "../src/store/sqlite-store.js";
import { tempDir } from "./helpers/broker-fixture.js";
import { fakeEnv, killAllServe, runCli, startServe } from "./helpers/serve-process.js";
import { withKey } from "./helpers/secure-broker.js";

/** Every encoding a secret could be logged or echoed in. */
function forms(secret: string): string[] {
  const bytes = Buffer.from(secret, "utf8");
  return [
    secret,
    bytes.toString("base64"),
    bytes.toString("base64").replace(/=+$/, ""),
    bytes.toString("base64url"),
    bytes.toString("hex"),
    encodeURIComponent(secret),
    JSON.stringify(secret).slice(1, -1),
  ];
}

let fake: FakeXero;
let dir: ReturnType<typeof tempDir>;
beforeEach(async () => {
  // A client secret nobody could guess, so that finding it means it leaked.
  fake = await startFakeXero({ clientSecret: `cs-${randomBytes(24).toString("hex")}` });
  dir = tempDir();
});
afterEach(async () => {
  await killAllServe();
  await fake.close();
  dir.cleanup();
});

it("a full scenario at debug level writes no token, key or secret anywhere, and callers see no upstream body", async () => {
  const db = join(dir.path, "t.db");
  const keyFile = join(dir.path, "tokenbroker.key");
  const env = fakeEnv(fake);
  const output: string[] = [];
  const run = async (args: string[], input = "") => {
    const r = await runCli(args, env, input);
    output.push(r.stdout, r.stderr);
    return r;
  };

  const keygen = await run(["keygen"]);
  const encryptionKey = keygen.stdout.trim();
  output.pop(); // keygen's stdout IS the key: the one place it belongs
  output.pop();
  output.push(keygen.stderr);
  writeFileSync(keyFile, `${encryptionKey}\n`, { mode: 0o600 });

  const grant = fake.addGrant({ tenants: [{ tenantName: "Org A" }, { tenantName: "Org B" }] });
  const imported = await run(["import", "--db", db, "--encryption-key-file", keyFile], `${grant.refreshToken}\n`);
  expect(imported.code, imported.stderr).toBe(0);
  const tenantId = grant.tenants[0]!.tenantId;

  const keys: string[] = [];
  const createKey = async (name: string, tenants: string, admin = false) => {
    const r = await runCli(["keys", "create", "--db", db, "--name", name, "--tenants", tenants, ...(admin ? ["--admin"] : [])], env);
    expect(r.code, r.stderr).toBe(0);
    output.push(r.stderr); // stdout is the key itself, printed once on purpose
    keys.push(r.stdout.trim());
    return r.stdout.trim();
  };
  const channelKey = await createKey("channel", tenantId);
  const adminKey = await createKey("ops", "*", true);

  const serve = await startServe({ env, db, secure: true, args: ["--encryption-key-file", keyFile, "--log-level", "debug"] });
  const callerMessages: string[] = [];
  const tokens: string[] = [];
  const clients = [
    createClient(TokenService, createGrpcTransport({ baseUrl: serve.url })),
    createClient(TokenService, createConnectTransport({ baseUrl: serve.url, httpVersion: "1.1" })),
  ];
  const req = { selector: { case: "tenantId" as const, value: tenantId } };
  const failed = async (p: Promise<unknown>) => {
    const e = await p.then(
      () => undefined,
      (err: unknown) => ConnectError.from(err),
    );
    expect(e, "the call should have failed").toBeInstanceOf(ConnectError);
    callerMessages.push(e!.rawMessage, JSON.stringify(e!.metadata), JSON.stringify(e!.details));
    return e!;
  };

  for (const client of clients) {
    tokens.push((await client.getToken(req, withKey(channelKey))).token!.accessToken);
    await failed(client.getToken(req)); // no key
    await failed(client.getToken(req, withKey(`${channelKey.slice(0, -2)}xx`))); // a wrong key, close to a real one
    await failed(client.getToken({ selector: { case: "tenantId", value: grant.tenants[1]!.tenantId } }, withKey(channelKey)));
  }
  // A refresh.
  const refreshed = await clients[0]!.reportExpired({ ...req, accessToken: tokens[0]! }, withKey(channelKey));
  expect(refreshed.refreshed).toBe(true);
  tokens.push(refreshed.token!.accessToken);
  // The identity server fails with a body: the caller's message must not carry it.
  fake.failNext(3, { status: 503 });
  const outage = await failed(clients[1]!.reportExpired({ ...req, accessToken: refreshed.token!.accessToken }, withKey(adminKey)));
  expect(outage.code).toBe(Code.Unavailable);
  // invalid_grant: the grant is revoked at Xero.
  fake.revokeGrant(grant.grantId);
  const current = (await clients[0]!.getToken(req, withKey(channelKey))).token!.accessToken;
  tokens.push(current);
  // The broker waits out a cool-down after the outage, answering UNAVAILABLE meanwhile.
  let lost = await failed(clients[0]!.reportExpired({ ...req, accessToken: current }, withKey(channelKey)));
  for (const deadline = Date.now() + 8000; lost.code === Code.Unavailable && Date.now() < deadline; ) {
    await delay(250);
    lost = await failed(clients[0]!.reportExpired({ ...req, accessToken: current }, withKey(channelKey)));
  }
  expect(lost.code).toBe(Code.FailedPrecondition);
  await createKey("late", "*"); // keys create while serving
  await serve.kill("SIGTERM");
  output.push(serve.stderr());
  expect(serve.logs().some((l) => l["level"] === 20 && l["event"] === "rpc")).toBe(true); // debug lines were written

  await run(["keys", "list", "--db", db]);
  await run(["audit", "--db", db, "--limit", "1000"]);

  // Every secret the scenario created: the ones it saw, and the ones stored (read with the key).
  const store = openSqliteStore({ path: db, encryption: createTokenCipher([Buffer.from(encryptionKey, "base64")]) });
  const stored = [];
  try {
    for (const c of await store.connections.listConnections()) stored.push((await store.tokens.getToken(c.connectionId))!);
  } finally {
    await store.close();
  }
  const secrets: Record<string, string> = {
    "client secret": fake.clientSecret,
    "client id:secret (Basic auth)": `${fake.clientId}:${fake.clientSecret}`,
    "first refresh token": grant.refreshToken,
    "encryption key": encryptionKey,
    "encryption key (hex)": Buffer.from(encryptionKey, "base64").toString("hex"),
  };
  for (const [i, k] of keys.entries()) secrets[`API key ${i}`] = k;
  for (const [i, t] of tokens.entries()) secrets[`access token ${i}`] = t;
  stored.forEach((r, i) => {
    secrets[`stored refresh token ${i}`] = r.refreshToken;
    secrets[`stored access token ${i}`] = r.accessToken;
    if (r.idToken) secrets[`stored id token ${i}`] = r.idToken;
  });
  expect(Object.keys(secrets).length).toBeGreaterThanOrEqual(12);

  const everything = [...output, ...callerMessages].join("\n");
  expect(everything.length).toBeGreaterThan(1000);
  const leaks = Object.entries(secrets).flatMap(([name, secret]) =>
    forms(secret)
      .filter((form) => form.length >= 8 && everything.includes(form))
      .map(() => name),
  );
  expect(leaks).toEqual([]);
  // Upstream bodies stay upstream.
  expect(callerMessages.join("\n")).not.toMatch(/fake failure|invalid_grant"|"error"/);
  // The search itself works: the key printed by keygen is found in keygen's stdout.
  expect(forms(encryptionKey).some((form) => keygen.stdout.includes(form))).toBe(true);
});
