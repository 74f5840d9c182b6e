/**
 * Xero custom connections end to end against the fake Xero: `tokenbroker custom add` (a real CLI process, the
 * client secret on standard input) obtains a token with client_credentials and learns the organisation; a broker
 * then serves and renews it on the one-request-per-expiry path (200 concurrent callers, one client_credentials
 * request counted at the fake), pushes the new token to a watcher, and marks it for re-authorisation with a message
 * that says what to run when the secret is rotated at Xero. The secrets never appear in any output or log.
 */
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { ConnectionState, TokenService } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { ManualClock } from "../src/clock.js";
import { loadEncryptionKeys } from "../src/crypto/encryption-keys.js";
import { createTokenCipher } from "../src/crypto/token-cipher.js";
import { startBrokerServer, type BrokerServer } from "../src/server/broker-server.js";
import { openStore } from "../src/store/open-store.js";
import type { Store } from "../src/store/store.js";
import { createOidcIdentityServer } from "../src/upstream/oidc-identity-server.js";
import { renderStatusPage } from "../src/web/status-page.js";
// The worktree's fake (with custom connection apps); the same as "@tokenbroker/fake-xero" once built into the workspace.
import { startFakeXero, type FakeCustomConnection, type FakeXero } from "@tokenbroker/fake-xero";
import { tempDir } from "./helpers/broker-fixture.js";
import { captureLog, type LogCapture } from "./helpers/log-capture.js";
import { killAllServe, runCli } from "./helpers/serve-process.js";
import { readStream } from "./helpers/stream-reader.js";

const MINUTE = 60_000;
/** A name with a terminal escape sequence (a window-title change) and a BEL: neither may reach the terminal. */
const NAME = "Acme\u001b]0;owned\u0007 books";
const SHOWN_NAME = "Acme books";
const CALLERS = 200;

describe("custom connections (client credentials) against the fake Xero", () => {
  let clock: ManualClock;
  let fake: FakeXero;
  let app: FakeCustomConnection;
  let dir: ReturnType<typeof tempDir>;
  let db: string;
  let keyFile: string;
  let env: NodeJS.ProcessEnv;
  /** Everything any CLI run printed, for the no-secret check. */
  let printed: string[];

  beforeEach(async () => {
    clock = new ManualClock();
    fake = await startFakeXero({ now: () => clock.now() });
    app = fake.addCustomConnection({ tenant: { tenantName: "Acme Ltd" } });
    dir = tempDir();
    db = join(dir.path, "tokenbroker.db");
    keyFile = join(dir.path, "tokenbroker.key");
    printed = [];
    // No TOKENBROKER_CLIENT_ID/SECRET: a custom connection brings its own app.
    env = {
      PATH: process.env["PATH"] ?? "",
      TOKENBROKER_ISSUER: fake.issuer,
      TOKENBROKER_CONNECTIONS_URL: fake.connectionsUrl,
      TOKENBROKER_ALLOW_INSECURE_ISSUER: "1",
    };
    const key = await cli(["keygen"]);
    writeFileSync(keyFile, key.stdout, { mode: 0o600 });
  });

  afterEach(async () => {
    await killAllServe();
    await fake?.close();
    dir?.cleanup();
  });

  async function cli(args: string[], input = "") {
    const r = await runCli(args, env, input);
    printed.push(r.stdout, r.stderr);
    return r;
  }

  const custom = (args: string[], input = "") => cli(["custom", ...args, "--db", db], input);
  const addAs = (name: string, secret: string) =>
    custom(["add", "--name", name, "--client-id", app.clientId, "--encryption-key-file", keyFile], `${secret}\n`);
  const add = (secret: string) => addAs(NAME, secret);

  /** Every secret of the test, which no output, log or database byte may hold in clear. */
  const secrets = () => [app.clientSecret];

  function expectNoSecretIn(text: string, where: string) {
    for (const s of secrets()) expect(text.includes(s), `the client secret appeared in ${where}`).toBe(false);
  }

  it("custom add: a token by client_credentials, the organisation from /connections, the secret stored sealed and never printed", async () => {
    const r = await add(app.clientSecret);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^custom connection ${SHOWN_NAME}: connection \\S+ \\(new\\)$`, "m"));
    expect(r.stdout).toContain(`tenant ${app.tenant.tenantId}  Acme Ltd`);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: the point is that none reaches the terminal.
    expect(r.stdout + r.stderr).not.toMatch(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/);
    expect(fake.clientCredentialsGrants).toBe(1);
    expectNoSecretIn(r.stdout + r.stderr, "the output of custom add");
    for (const file of [db, `${db}-wal`].filter(existsSync)) expectNoSecretIn(readFileSync(file).toString("latin1"), file);

    const list = await custom(["list"]);
    expect(list.code, list.stderr).toBe(0);
    expect(list.stdout).toContain(`${SHOWN_NAME}  active`);
    expect(list.stdout).toContain(`client id      ${app.clientId}`);
    expect(list.stdout).toContain(app.tenant.tenantId);
    const json = await custom(["list", "--json"]);
    expect(JSON.parse(json.stdout)).toMatchObject([{ name: NAME, clientId: app.clientId, state: "active" }]);

    // A wrong secret: refused by Xero, nothing stored, the secret not echoed.
    const wrong = await addAs("Other", "not-the-secret");
    expect(wrong.code).toBe(2);
    expect(wrong.stderr).toMatch(/custom add failed, nothing stored: .*invalid_client/);
    expect(wrong.stdout + wrong.stderr).not.toContain("not-the-secret");
    expect(JSON.parse((await custom(["list", "--json"])).stdout)).toHaveLength(1);
    // Never from the command line: there is no flag for it.
    const flag = await custom([
      "add",
      "--name",
      "X",
      "--client-id",
      app.clientId,
      "--encryption-key-file",
      keyFile,
      "--client-secret",
      "s",
    ]);
    expect(flag.code).not.toBe(0);

    for (const text of printed) expectNoSecretIn(text, "CLI output");
  });

  describe("served by a broker", () => {
    let store: Store;
    let server: BrokerServer;
    let logs: LogCapture;
    let clients: Array<Client<typeof TokenService>>;
    let connectionId: string;

    beforeEach(async () => {
      const r = await add(app.clientSecret);
      expect(r.code, r.stderr).toBe(0);
      connectionId = /connection (\S+) \(new\)/.exec(r.stdout)![1]!;
      const keys = loadEncryptionKeys({ keyFile, env: {} })!;
      store = await openStore(db, { clock, encryption: createTokenCipher(keys) });
      logs = captureLog("debug");
      // The broker's own app is the fake's usual one; the custom connection renews with its own.
      const identity = createOidcIdentityServer({
        issuer: new URL(fake.issuer),
        connectionsUrl: new URL(fake.connectionsUrl),
        clientId: fake.clientId,
        clientSecret: fake.clientSecret,
        allowInsecure: true,
        clock,
      });
      server = await startBrokerServer({ port: 0, store, identity, clock, logger: logs.logger });
      await server.scheduler.stop(); // only callers renew: every request at the fake is theirs
      clients = [
        createClient(TokenService, createGrpcTransport({ baseUrl: server.url })),
        createClient(TokenService, createConnectTransport({ baseUrl: server.url, httpVersion: "1.1" })),
      ];
    });

    afterEach(async () => {
      await server?.close();
      await store?.close();
    });

    const byTenant = () => ({ selector: { case: "tenantId" as const, value: app.tenant.tenantId } });

    it(`${CALLERS} concurrent GetToken at expiry: one client_credentials request; the watcher gets the new token`, async () => {
      const { token: first } = await clients[0]!.getToken(byTenant());
      expect(first?.accessToken).toBe((await store.tokens.getToken(connectionId))?.accessToken);
      const watcher = readStream((signal) => clients[0]!.watchToken(byTenant(), { signal }));
      expect((await watcher.next()).token?.accessToken).toBe(first?.accessToken);
      const before = fake.tokenEndpointCalls;

      clock.advance(31 * MINUTE);
      const answers = await Promise.all(Array.from({ length: CALLERS }, (_, i) => clients[i % 2]!.getToken(byTenant())));
      const tokens = new Set(answers.map((a) => a.token?.accessToken));
      expect(tokens.size).toBe(1);
      expect(tokens.has(first?.accessToken)).toBe(false);
      expect(fake.tokenEndpointCalls - before).toBe(1);
      expect(fake.clientCredentialsGrants).toBe(2);
      expect(fake.refreshes).toBe(0);
      const pushed = await watcher.until((m) => m.token?.accessToken !== first?.accessToken);
      expect(pushed.at(-1)?.token?.accessToken).toBe([...tokens][0]);
      watcher.cancel();

      // Renewed on the refresher's path: the same refresh event and metrics as any connection.
      const events = logs.refreshEvents().filter((e) => e.outcome === "ok");
      expect(events).toHaveLength(1);
      expect(events[0]).toMatchObject({ connectionId, upstreamRefreshes: 1 });
      const metrics = await (await fetch(`${server.url}/metrics`)).text();
      expect(metrics).toMatch(/tokenbroker_upstream_request_seconds_count\{operation="client_credentials",outcome="ok"\} 1/);
      expectNoSecretIn(logs.lines().join("\n"), "the broker's log");
    });

    it("a secret rotated at Xero: invalid_client makes it need re-authorisation, saying to run custom add; custom add brings it back; remove", async () => {
      const watcher = readStream((signal) => clients[0]!.watchToken(byTenant(), { signal }));
      await watcher.next();
      const newSecret = fake.rotateCustomConnectionSecret(app.clientId);
      clock.advance(31 * MINUTE);
      const before = fake.tokenEndpointCalls;

      const failures = await Promise.all(
        Array.from({ length: 20 }, () => clients[0]!.getToken(byTenant()).then(() => undefined, ConnectError.from)),
      );
      expect(fake.tokenEndpointCalls - before).toBe(1); // nothing retries in a loop
      for (const e of failures) {
        expect(e?.code).toBe(Code.FailedPrecondition);
        expect(e?.rawMessage).toContain("needs re-authorisation");
        expect(e?.rawMessage).toContain(`tokenbroker custom add --name`);
        expect(e?.rawMessage).toContain(`--client-id ${app.clientId}`);
      }
      const told = await watcher.until((m) => m.state === ConnectionState.NEEDS_REAUTHORIZATION);
      expect(told.at(-1)?.token).toBeUndefined();
      watcher.cancel();
      // The other connections of the broker are not affected: the broker's own client is not "misconfigured".
      expect(server.broker.refresher.misconfiguration).toBeUndefined();

      const summaries = await store.connections.listConnections();
      const page = String(renderStatusPage({ connections: summaries, now: clock.now(), connectPath: "/connect" }).body);
      expect(page).toContain("tokenbroker custom add --name");
      const connections = await cli(["connections", "--db", db]);
      expect(connections.stdout).toMatch(/needs re-authorisation|NEEDS/i);
      expect(connections.stdout).toContain(`custom connection ${SHOWN_NAME}`);
      expect(connections.stdout).toContain("tokenbroker custom add --name");

      // Added again with the new secret: the same connection, active, served again.
      const again = await add(newSecret);
      expect(again.code, again.stderr).toBe(0);
      expect(again.stdout).toContain(`connection ${connectionId} (replaced)`);
      const { token } = await clients[1]!.getToken(byTenant());
      expect(token?.accessToken).toEqual(expect.any(String));
      expect(JSON.parse((await custom(["list", "--json"])).stdout)).toMatchObject([{ state: "active", lastError: null }]);

      const removed = await custom(["remove", NAME]);
      expect(removed.code, removed.stderr).toBe(0);
      expect(removed.stdout).toContain(`connection ${connectionId} removed`);
      expect((await custom(["list"])).stdout).toContain("no custom connections");
      const gone = await clients[0]!.getToken(byTenant()).then(() => undefined, ConnectError.from);
      expect(gone?.code).toBe(Code.NotFound);
      expect((await custom(["remove", NAME])).code).toBe(1);

      for (const text of [...printed, logs.lines().join("\n")]) {
        expectNoSecretIn(text, "output or log");
        expect(text.includes(newSecret)).toBe(false);
      }
    });
  });
});
