/**
 * Client API keys over the real server: no or bad key → UNAUTHENTICATED;
 * outside the key's scope → PERMISSION_DENIED whether or not the tenant or
 * connection exists; a revoked key stops working within a second.
 */
import { execFile } from "node:child_process";
import { setTimeout as delay } from "node:timers/promises";
import * as grpc from "@grpc/grpc-js";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Health } from "../gen/ts/grpc/health/v1/health_pb.js";
import { importRefreshToken } from "../src/importer.js";
import { protocols } from "./helpers/broker-fixture.js";
import { docSnippet, shellCommands } from "./helpers/doc-snippets.js";
import { grpcJsGetToken } from "./helpers/grpc-js-get-token.js";
import { startSecureBroker, withKey, type SecureBrokerFixture } from "./helpers/secure-broker.js";
import { withRawDatabase } from "./helpers/raw-database.js";

const UNKNOWN_TENANT = "00000000-0000-0000-0000-000000000000";

async function codeOf(promise: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await promise;
    return "ok";
  } catch (e) {
    return ConnectError.from(e).code;
  }
}

describe("API keys", () => {
  let f: SecureBrokerFixture;
  let tenantA: string;
  let tenantB: string;
  let tenantC: string;
  let connection2: string;

  beforeEach(async () => {
    f = await startSecureBroker();
    [tenantA, tenantB] = f.imported.tenants.map((t) => t.tenantId) as [string, string];
    // A second user's grant with one more tenant: another connection.
    const grant = f.fake.addGrant({ tenants: [{ tenantName: "Org C" }] });
    const second = await importRefreshToken(f.store, f.identity, grant.refreshToken);
    connection2 = second.connectionId;
    tenantC = second.tenants[0]!.tenantId;
  });
  afterEach(async () => {
    await f?.close();
  });

  describe.each(protocols)("over $name", ({ transport }) => {
    it("no key, a malformed key, an unknown key and a revoked key are UNAUTHENTICATED; a valid key gets the token", async () => {
      const client = f.client(transport);
      const req = { selector: { case: "tenantId" as const, value: tenantA } };
      const key = f.createKey("all", "*");
      expect(await codeOf(client.getToken(req))).toBe(Code.Unauthenticated);
      expect(await codeOf(client.getToken(req, withKey("not-a-key")))).toBe(Code.Unauthenticated);
      expect(await codeOf(client.getToken(req, withKey(`tbk_${"A".repeat(43)}`)))).toBe(Code.Unauthenticated);
      expect(await codeOf(client.getToken(req, { headers: { authorization: `Basic ${key}` } }))).toBe(Code.Unauthenticated);
      const error = await client.getToken(req).catch((e: unknown) => ConnectError.from(e));
      expect((error as ConnectError).rawMessage).toMatch(/authorization: Bearer/);

      const { token } = await client.getToken(req, withKey(key));
      expect(token?.connectionId).toBe(f.connectionId);
      // The scheme is case-insensitive, as HTTP says.
      expect(await codeOf(client.getToken(req, { headers: { authorization: `bearer ${key}` } }))).toBe("ok");

      const revoked = f.createKey("gone", "*");
      await f.keys.revoke("gone", Date.now());
      expect(await codeOf(client.getToken(req, withKey(revoked)))).toBe(Code.Unauthenticated);
    });

    it("a tenant or connection outside the key's scope is PERMISSION_DENIED, whether or not it exists", async () => {
      const client = f.client(transport);
      const onlyA = f.createKey("only-a", [tenantA]);
      const ab = f.createKey("a-and-b", [tenantA, tenantB]);
      const all = f.createKey("all", "*");
      const tenant = (value: string) => ({ selector: { case: "tenantId" as const, value } });
      const connection = (value: string) => ({ selector: { case: "connectionId" as const, value } });

      expect(await codeOf(client.getToken(tenant(tenantA), withKey(onlyA)))).toBe("ok");
      expect(await codeOf(client.getToken(tenant(tenantB), withKey(onlyA)))).toBe(Code.PermissionDenied);
      expect(await codeOf(client.getToken(tenant(tenantC), withKey(onlyA)))).toBe(Code.PermissionDenied);
      // Unknown: the same answer as for a tenant that exists, so keys cannot probe.
      expect(await codeOf(client.getToken(tenant(UNKNOWN_TENANT), withKey(onlyA)))).toBe(Code.PermissionDenied);
      // A connection is in scope only when all its tenants are: its token reaches all of them.
      expect(await codeOf(client.getToken(connection(f.connectionId), withKey(onlyA)))).toBe(Code.PermissionDenied);
      expect(await codeOf(client.getToken(connection(f.connectionId), withKey(ab)))).toBe("ok");
      expect(await codeOf(client.getToken(connection(connection2), withKey(ab)))).toBe(Code.PermissionDenied);
      expect(await codeOf(client.getToken(connection("no-such-connection"), withKey(ab)))).toBe(Code.PermissionDenied);
      // A '*' key sees everything, and learns what does not exist.
      expect(await codeOf(client.getToken(connection(connection2), withKey(all)))).toBe("ok");
      expect(await codeOf(client.getToken(tenant(UNKNOWN_TENANT), withKey(all)))).toBe(Code.NotFound);
      expect(await codeOf(client.getToken(connection("no-such-connection"), withKey(all)))).toBe(Code.NotFound);

      // ReportExpired and WatchToken are scoped the same way.
      expect(await codeOf(client.reportExpired({ ...tenant(tenantC), accessToken: "x" }, withKey(onlyA)))).toBe(Code.PermissionDenied);
      const watch = async (req: ReturnType<typeof tenant>, key: string) => {
        // Cancelled explicitly: leaving the loop alone does not reset a Connect HTTP/2 stream.
        const cancel = new AbortController();
        try {
          for await (const m of client.watchToken(req, { ...withKey(key), signal: cancel.signal })) return m;
          return undefined;
        } finally {
          cancel.abort();
        }
      };
      expect(await codeOf(watch(tenant(tenantC), onlyA))).toBe(Code.PermissionDenied);
      expect(await codeOf(watch(tenant(UNKNOWN_TENANT), onlyA))).toBe(Code.PermissionDenied);
      const first = await watch(tenant(tenantA), onlyA);
      expect(first?.token?.connectionId).toBe(f.connectionId);
    });

    it("a malformed request is INVALID_ARGUMENT for every key; without a key, UNAUTHENTICATED comes first", async () => {
      const client = f.client(transport);
      const onlyA = f.createKey("only-a", [tenantA]);
      for (const selector of [
        { case: undefined },
        { case: "tenantId" as const, value: "" },
        { case: "connectionId" as const, value: "x y" },
      ]) {
        expect(await codeOf(client.getToken({ selector }, withKey(onlyA)))).toBe(Code.InvalidArgument);
        expect(await codeOf(client.getToken({ selector }))).toBe(Code.Unauthenticated);
      }
    });
  });

  it("health and reflection stay open without a key", async () => {
    const health = createClient(Health, createGrpcTransport({ baseUrl: f.server.url }));
    const res = await health.check({ service: "" });
    expect(res.status).toBe(1); // SERVING
  });

  it("a revoked key stops working within a second, from another database handle (as `keys revoke` does)", async () => {
    const key = f.createKey("soon-revoked", "*");
    const client = f.client();
    const req = { selector: { case: "tenantId" as const, value: tenantA } };
    expect(await codeOf(client.getToken(req, withKey(key)))).toBe("ok"); // now cached
    const { openSqliteStore } = await import("../src/store/sqlite-store.js");
    const other = openSqliteStore({ path: f.dbPath });
    const revokedAt = performance.now();
    try {
      expect(await other.apiKeys.revoke("soon-revoked", Date.now())).toBe(true);
    } finally {
      await other.close();
    }
    let code: Code | "ok" = "ok";
    while (code === "ok" && performance.now() - revokedAt < 3000) {
      code = await codeOf(client.getToken(req, withKey(key)));
      if (code === "ok") await delay(20);
    }
    expect(code).toBe(Code.Unauthenticated);
    expect(performance.now() - revokedAt).toBeLessThan(1000);
  });

  it("keys are stored hashed, and last use is recorded", async () => {
    const key = f.createKey("hashed", [tenantA]);
    const rows = withRawDatabase(f.dbPath, (db) => db.prepare("SELECT * FROM api_keys").all()) as Array<Record<string, unknown>>;
    expect(JSON.stringify(rows)).not.toContain(key);
    expect(JSON.stringify(rows)).not.toContain(key.slice(4));
    expect((await f.keys.list())[0]?.lastUsedAt).toBeUndefined();
    await f.client().getToken({ selector: { case: "tenantId", value: tenantA } }, withKey(key));
    await delay(50);
    expect((await f.keys.list())[0]?.lastUsedAt).toBeGreaterThan(0);
  });

  it("@grpc/grpc-js sends the key as metadata", async () => {
    const key = f.createKey("grpc-js", [tenantA]);
    const client = grpcJsGetToken(new URL(f.server.url).host, grpc.credentials.createInsecure());
    try {
      const ok = await client.getToken({ selector: { case: "tenantId", value: tenantA } }, { authorization: `Bearer ${key}` });
      expect(ok.code).toBe(grpc.status.OK);
      expect(ok.response?.token?.connectionId).toBe(f.connectionId);
      const denied = await client.getToken({ selector: { case: "tenantId", value: tenantB } }, { authorization: `Bearer ${key}` });
      expect(denied.code).toBe(grpc.status.PERMISSION_DENIED);
      const none = await client.getToken({ selector: { case: "tenantId", value: tenantA } });
      expect(none.code).toBe(grpc.status.UNAUTHENTICATED);
    } finally {
      client.close();
    }
  });

  it("plain HTTP (curl, Lua) sends the key as an Authorization header", async () => {
    const key = f.createKey("lua", [tenantA]);
    const post = (body: object, headers: Record<string, string>) =>
      fetch(`${f.server.url}/tokenbroker.v1.TokenService/GetToken`, {
        method: "POST",
        headers: { "content-type": "application/json", ...headers },
        body: JSON.stringify(body),
      });
    const ok = await post({ tenantId: tenantA }, { authorization: `Bearer ${key}` });
    expect(ok.status).toBe(200);
    expect(((await ok.json()) as { token: { connectionId: string } }).token.connectionId).toBe(f.connectionId);
    const none = await post({ tenantId: tenantA }, {});
    expect(none.status).toBe(401);
    expect(((await none.json()) as { code: string }).code).toBe("unauthenticated");
    const denied = await post({ tenantId: tenantC }, { authorization: `Bearer ${key}` });
    expect(denied.status).toBe(403);
    expect(((await denied.json()) as { code: string }).code).toBe("permission_denied");
  });

  it("the docs' curl commands, run as written, send the key with -H: GetToken, then ReportExpired of that token", async () => {
    const key = f.createKey("curl", [tenantA]);
    const sh = (command: string) =>
      new Promise<string>((resolve, reject) =>
        execFile("/bin/sh", ["-c", command], { env: { PATH: process.env["PATH"] ?? "", KEY: key } }, (e, stdout) =>
          e ? reject(e) : resolve(stdout),
        ),
      );
    const fill = (command: string, tenant: string, token = "") =>
      command
        .replaceAll("http://127.0.0.1:50051", f.server.url)
        .replaceAll("<tenant id>", tenant)
        .replaceAll("<the token Xero answered 401 to>", token);
    const [get, report, ...more] = shellCommands(docSnippet("docs/clients.md", "curl-get-token-and-report"));
    expect(more).toEqual([]);
    expect(shellCommands(docSnippet("README.md", "curl-get-token"))).toEqual([get]);

    const first = JSON.parse(await sh(fill(get!, tenantA))) as { token: { accessToken: string; connectionId: string; version: string } };
    expect(first.token.connectionId).toBe(f.connectionId);
    const reported = JSON.parse(await sh(fill(report!, tenantA, first.token.accessToken))) as {
      token: { version: string };
      refreshed: boolean;
    };
    expect(reported.refreshed).toBe(true);
    expect(BigInt(reported.token.version)).toBe(BigInt(first.token.version) + 1n);
    const denied = JSON.parse(await sh(fill(get!, tenantC))) as { code: string };
    expect(denied.code).toBe("permission_denied");
  });
});
