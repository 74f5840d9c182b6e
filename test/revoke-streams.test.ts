/**
 * Revocation ends what it revoked: `tokenbroker keys revoke NAME` (another
 * process, committing to the shared database) closes the key's open
 * WatchToken streams with UNAUTHENTICATED within 2 s, on every protocol and
 * every broker process on that database, and nothing is delivered on them
 * after the revocation: neither the next token nor an audit entry.
 */
import { setTimeout as delay } from "node:timers/promises";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport, createGrpcWebTransport } from "@connectrpc/connect-node";
import { afterEach, describe, expect, it } from "vitest";
import { TokenService, type WatchTokenResponse } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { createTokenClient, type TokenClient } from "@tokenbroker/client";
import { useCliSandbox } from "./helpers/cli-sandbox.js";
import { fakeEnv, killAllServe, runCli, startServe, type ServeProcess } from "./helpers/serve-process.js";
import { startSecureBroker, withKey, type SecureBrokerFixture } from "./helpers/secure-broker.js";
import { readStream, type StreamReader } from "./helpers/stream-reader.js";

const sb = useCliSandbox();
afterEach(killAllServe);

/** Every way a WatchToken stream reaches the broker; `deadline` sends `grpc-timeout`, which Connect serves instead of the fast path. */
const protocols: Array<{ name: string; transport: (baseUrl: string) => Transport; deadline?: boolean }> = [
  { name: "gRPC (fast path)", transport: (baseUrl) => createGrpcTransport({ baseUrl }) },
  { name: "gRPC with a deadline (Connect)", transport: (baseUrl) => createGrpcTransport({ baseUrl }), deadline: true },
  { name: "gRPC-Web (HTTP/1.1)", transport: (baseUrl) => createGrpcWebTransport({ baseUrl, httpVersion: "1.1" }) },
  { name: "Connect binary (HTTP/2)", transport: (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true }) },
  {
    name: "Connect JSON (HTTP/1.1)",
    transport: (baseUrl) => createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false }),
  },
];

interface OpenStream {
  label: string;
  reader: StreamReader<WatchTokenResponse>;
  /** How and when (ms since the epoch) the stream ended. */
  ended: Promise<{ error: ConnectError | undefined; at: number }>;
}

/** Opens a WatchToken stream of `tenantId` with `key` and waits for its first token. */
async function watch(
  serve: ServeProcess,
  label: string,
  protocol: (typeof protocols)[number],
  key: string,
  tenantId: string,
): Promise<OpenStream> {
  const client = createClient(TokenService, protocol.transport(serve.url));
  const reader = readStream((signal) =>
    client.watchToken(
      { selector: { case: "tenantId", value: tenantId } },
      { ...withKey(key), signal, ...(protocol.deadline ? { timeoutMs: 600_000 } : {}) },
    ),
  );
  const first = await reader.next(10_000);
  expect(first.token?.version, label).toBe(1n);
  const ended = reader.end(60_000).then((error) => ({ error, at: Date.now() }));
  ended.catch(() => {});
  return { label: `${label} over ${protocol.name}`, reader, ended };
}

/** The audit log as `tokenbroker audit --json` prints it. */
async function auditLog(db: string): Promise<Array<{ at: string; actor?: string; action: string; detail?: string }>> {
  const r = await runCli(["audit", "--db", db, "--json", "--limit", "10000"], fakeEnv(sb.fake));
  expect(r.code, r.stderr).toBe(0);
  return r.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l) as { at: string; action: string });
}

describe("keys revoke and open WatchToken streams", () => {
  it("closes the key's streams with UNAUTHENTICATED within 2 s on every protocol and process; nothing is delivered to it afterwards", async () => {
    await sb.keygen(sb.keyFile);
    await sb.importGrant();
    const tenantId = sb.grant.tenants[0]!.tenantId;
    const args = ["--encryption-key-file", sb.keyFile];
    const [a, b] = await Promise.all([
      startServe({ env: fakeEnv(sb.fake), db: sb.db, secure: true, args }),
      startServe({ env: fakeEnv(sb.fake), db: sb.db, secure: true, args }),
    ]);
    const gone = await sb.createKey("gone", "*");
    const kept = await sb.createKey("kept", tenantId);

    const doomed: OpenStream[] = [];
    for (const protocol of protocols) doomed.push(await watch(a, "gone on broker A", protocol, gone, tenantId));
    doomed.push(await watch(b, "gone on broker B", protocols[0]!, gone, tenantId));
    doomed.push(await watch(b, "gone on broker B", protocols[4]!, gone, tenantId));
    const survivors = [
      await watch(a, "kept on broker A", protocols[0]!, kept, tenantId),
      await watch(a, "kept on broker A", protocols[4]!, kept, tenantId),
      await watch(b, "kept on broker B", protocols[0]!, kept, tenantId),
    ];
    const accessToken = survivors[0]!.reader.received[0]!.token!.accessToken;

    const revoke = await runCli(["keys", "revoke", "gone", "--db", sb.db], fakeEnv(sb.fake));
    expect(revoke.code, revoke.stderr).toBe(0);
    const listed = JSON.parse((await runCli(["keys", "list", "--db", sb.db, "--json"], fakeEnv(sb.fake))).stdout) as Array<{
      name: string;
      status: string;
    }>;
    const revokedAt = Date.parse(listed.find((k) => k.name === "gone")!.status.replace(/^revoked /, ""));
    expect(revokedAt).not.toBeNaN();

    // Give the streams 3 s to end (asserted below: 2 s), without failing here, so that the rest is seen too.
    await Promise.race([Promise.all(doomed.map((s) => s.ended)), delay(Math.max(0, revokedAt + 3000 - Date.now()))]);

    // A new token: the revoked key's streams must not get it; the other key's streams, on both brokers, do.
    const reported = await createClient(TokenService, createGrpcTransport({ baseUrl: a.url })).reportExpired(
      { selector: { case: "tenantId", value: tenantId }, accessToken },
      withKey(kept),
    );
    expect(reported.refreshed).toBe(true);
    for (const s of survivors) expect((await s.reader.next(10_000)).token?.version, s.label).toBe(2n);
    for (const s of survivors) expect(s.reader.ended, s.label).toBe(false);

    const outcome = doomed.map((s) => ({
      stream: s.label,
      ended: s.reader.ended,
      versions: s.reader.received.map((m) => m.token?.version),
    }));
    // Soft: on failure, the audit log below is checked too.
    expect.soft(outcome).toEqual(doomed.map((s) => ({ stream: s.label, ended: true, versions: [1n] })));
    for (const s of doomed) {
      const { error, at } = await Promise.race([s.ended, { error: undefined, at: Infinity }]);
      expect.soft(error?.code, s.label).toBe(Code.Unauthenticated);
      expect.soft(error?.rawMessage, s.label).toMatch(/API key was revoked/);
      expect.soft(at - revokedAt, s.label).toBeLessThan(2000);
    }

    await Promise.all([a.kill("SIGTERM"), b.kill("SIGTERM")]); // writes the last audit entries
    const log = await auditLog(sb.db);
    const revocation = log.find((e) => e.action === "keys_revoke" && e.detail === "key=gone");
    expect(revocation).toBeDefined();
    const afterRevocation = (e: { at: string }) => Date.parse(e.at) > Date.parse(revocation!.at);
    expect(log.filter((e) => e.actor === "gone" && e.action === "watch_token" && afterRevocation(e))).toEqual([]);
    // The log does record deliveries after the revocation: the other key's new token, on each of its streams.
    expect(log.filter((e) => e.actor === "kept" && e.action === "watch_token" && afterRevocation(e))).toHaveLength(survivors.length);
    for (const s of [...doomed, ...survivors]) s.reader.cancel();
  }, 60_000);
});

describe("a revocation the periodic check has not seen yet", () => {
  let f: SecureBrokerFixture | undefined;
  const clients: TokenClient[] = [];
  afterEach(async () => {
    for (const c of clients.splice(0)) await c.close();
    await f?.close();
    f = undefined;
  });

  it("the next token is not pushed to the key's streams: they end with UNAUTHENTICATED instead, on every protocol", async () => {
    // The periodic check is a minute away: only the check before a push can stop the next token.
    f = await startSecureBroker({ revocationCheckMs: 60_000, cacheTtlMs: 60_000 });
    const fixture = f;
    const gone = fixture.createKey("gone", "*");
    const kept = fixture.createKey("kept", "*");
    const open = (key: string, protocol: (typeof protocols)[number]) => {
      const client = createClient(TokenService, protocol.transport(fixture.server.url));
      return readStream((signal) =>
        client.watchToken(
          { selector: { case: "connectionId", value: fixture.connectionId } },
          { ...withKey(key), signal, ...(protocol.deadline ? { timeoutMs: 600_000 } : {}) },
        ),
      );
    };
    const doomed = protocols.map((p) => ({ name: p.name, reader: open(gone, p) }));
    const survivor = open(kept, protocols[0]!);
    for (const s of [...doomed.map((d) => d.reader), survivor]) expect((await s.next(10_000)).token?.version).toBe(1n);
    // The TypeScript client of the key, answering from the token its own stream keeps current.
    const tb = createTokenClient({ baseUrl: fixture.server.url, headers: withKey(gone).headers });
    clients.push(tb);
    const cachedToken = await tb.getToken(fixture.tenantId);

    const revoke = await runCli(["keys", "revoke", "gone", "--db", fixture.dbPath], { PATH: process.env["PATH"] ?? "" });
    expect(revoke.code, revoke.stderr).toBe(0);
    expect(doomed.filter((d) => d.reader.ended)).toEqual([]); // nothing has noticed yet

    const accessToken = survivor.received[0]!.token!.accessToken;
    const reported = await fixture
      .client()
      .reportExpired({ selector: { case: "connectionId", value: fixture.connectionId }, accessToken }, withKey(kept));
    expect(reported.refreshed).toBe(true);
    expect((await survivor.next(10_000)).token?.version).toBe(2n);
    for (const d of doomed) {
      const error = await d.reader.end(5000);
      expect({ protocol: d.name, code: error?.code, versions: d.reader.received.map((m) => m.token?.version) }).toEqual({
        protocol: d.name,
        code: Code.Unauthenticated,
        versions: [1n],
      });
    }
    // The client's watch ended for good: it answers no more from its cache.
    const answer = () =>
      tb.getToken(fixture.tenantId).then(
        (t) => (t === cachedToken ? "the cached token" : "a new token"),
        (e: unknown) => ConnectError.from(e).code,
      );
    const answers = [await answer()];
    for (const until = Date.now() + 5000; answers.at(-1) === "the cached token" && Date.now() < until; ) {
      await delay(20);
      answers.push(await answer());
    }
    expect(answers.at(-1)).toBe(Code.Unauthenticated);
    expect(answers).not.toContain("a new token");
    // New calls with the key are refused at once, though the authenticator's cache would have kept it a minute.
    const call = fixture.client().getToken({ selector: { case: "connectionId", value: fixture.connectionId } }, withKey(gone));
    expect(
      await call.then(
        () => "ok",
        (e: unknown) => ConnectError.from(e).code,
      ),
    ).toBe(Code.Unauthenticated);

    const entries = await fixture.auditEntries();
    const revocation = entries.find((e) => e.action === "keys_revoke");
    expect(revocation).toBeDefined();
    expect(entries.filter((e) => e.actor === "gone" && e.action === "watch_token" && e.at > revocation!.at)).toEqual([]);
    expect(entries.filter((e) => e.actor === "kept" && e.action === "watch_token" && e.at > revocation!.at)).toHaveLength(1);
    survivor.cancel();
  });
});
