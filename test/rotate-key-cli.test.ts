/**
 * `rotate-key` against a serving broker (SIGHUP re-reads the key file) and
 * serve's TLS flags, as a user runs them.
 */
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { TokenService } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { keyIdOf } from "../src/crypto/token-cipher.js";
import { clientOf, codeOf, oneLine, useCliSandbox } from "./helpers/cli-sandbox.js";
import { fakeEnv, runCli, startServe } from "./helpers/serve-process.js";
import { withKey } from "./helpers/secure-broker.js";
import { makeTestCertificates, opensslMissing } from "./helpers/test-certificates.js";

const sb = useCliSandbox();

describe("rotate-key", () => {
  it("re-encrypts every token under a new key while serve keeps answering (SIGHUP re-reads the key file)", async () => {
    const oldKey = await sb.keygen(sb.keyFile);
    await sb.importGrant();
    const second = sb.fake.addGrant({ tenants: [{ tenantName: "Org C" }] });
    await sb.importGrant(second.refreshToken);
    const serve = await startServe({ env: fakeEnv(sb.fake), db: sb.db, secure: true, args: ["--encryption-key-file", sb.keyFile] });
    const key = await sb.createKey("all", "*");
    const client = clientOf(serve.url);
    const tenants = [...sb.grant.tenants, ...second.tenants].map((t) => t.tenantId);

    // Callers keep asking during the whole rotation.
    let served = 0;
    const failures: string[] = [];
    let stop = false;
    const callers = (async () => {
      while (!stop) {
        for (const tenantId of tenants) {
          await client.getToken({ selector: { case: "tenantId", value: tenantId } }, withKey(key)).then(
            () => served++,
            (e: unknown) => failures.push(String(e)),
          );
        }
      }
    })();

    // Step 1-2: a new key, first in the key file, the old one second; SIGHUP.
    const newKeyFile = join(sb.dir, "new.key");
    const newKey = await sb.keygen(newKeyFile);
    const oldKeyFile = join(sb.dir, "old.key");
    writeFileSync(oldKeyFile, `${oldKey}\n`);
    writeFileSync(sb.keyFile, `${newKey}\n${oldKey}\n`);
    serve.child.kill("SIGHUP");
    const reloaded = await serve.waitForLog((l) => l["event"] === "encryption_keys_reloaded");
    expect(reloaded["keyIds"]).toEqual([keyIdOf(Buffer.from(newKey, "base64")), keyIdOf(Buffer.from(oldKey, "base64"))]);

    // Step 3.
    const rotate = await runCli(
      ["rotate-key", "--db", sb.db, "--encryption-key-file", oldKeyFile, "--new-key-file", newKeyFile],
      fakeEnv(sb.fake),
    );
    expect(rotate.code, rotate.stderr).toBe(0);
    expect(rotate.stdout).toBe(`re-encrypted 2 token sets under key ${keyIdOf(Buffer.from(newKey, "base64"))} (0 already were)\n`);
    await delay(200);
    stop = true;
    await callers;
    expect(failures).toEqual([]);
    expect(served).toBeGreaterThan(10);
    await serve.kill("SIGTERM");

    const raw = new Database(sb.db, { readonly: true });
    try {
      const ids = raw.prepare("SELECT DISTINCT key_id FROM token_sets").all() as Array<{ key_id: string }>;
      expect(ids).toEqual([{ key_id: keyIdOf(Buffer.from(newKey, "base64")) }]);
    } finally {
      raw.close();
    }

    // Step 4: the new key alone serves; the old key alone is refused at start-up with one line.
    const onlyOld = await runCli(
      ["serve", "--db", sb.db, "--listen", "127.0.0.1:0", "--encryption-key-file", oldKeyFile],
      fakeEnv(sb.fake),
    );
    expect(onlyOld.code).toBe(2);
    expect(oneLine(onlyOld.stderr)).toContain(`encrypted under key ${keyIdOf(Buffer.from(newKey, "base64"))}, which is not configured`);
    const restarted = await startServe({ env: fakeEnv(sb.fake), db: sb.db, secure: true, args: ["--encryption-key-file", newKeyFile] });
    expect(
      (await clientOf(restarted.url).getToken({ selector: { case: "tenantId", value: tenants[2]! } }, withKey(key))).token?.tokenType,
    ).toBe("Bearer");
    // The environment works too: TOKENBROKER_ENCRYPTION_KEY.
    await restarted.kill("SIGTERM");
    const byEnv = await startServe({ env: fakeEnv(sb.fake, { TOKENBROKER_ENCRYPTION_KEY: newKey }), db: sb.db, secure: true });
    expect(
      (await clientOf(byEnv.url).getToken({ selector: { case: "tenantId", value: tenants[0]! } }, withKey(key))).token?.tokenType,
    ).toBe("Bearer");
  });
});

describe.skipIf(opensslMissing())("TLS flags", () => {
  it("--tls-cert/--tls-key serve over TLS; --tls-client-ca requires a client certificate; a half-given pair is one line", async () => {
    await sb.keygen(sb.keyFile);
    await sb.importGrant();
    const certs = makeTestCertificates(sb.dir);
    const key = await sb.createKey("tls", "*");
    const tlsArgs = ["--encryption-key-file", sb.keyFile, "--tls-cert", certs.paths.serverCert, "--tls-key", certs.paths.serverKey];
    const plainTls = await startServe({ env: fakeEnv(sb.fake), db: sb.db, secure: true, args: tlsArgs });
    const viaTls = createClient(TokenService, createGrpcTransport({ baseUrl: plainTls.url, nodeOptions: { ca: certs.ca } }));
    expect(
      (await viaTls.getToken({ selector: { case: "tenantId", value: sb.grant.tenants[0]!.tenantId } }, withKey(key))).token?.tokenType,
    ).toBe("Bearer");
    await plainTls.kill("SIGTERM");
    const serve = await startServe({
      env: fakeEnv(sb.fake),
      db: sb.db,
      secure: true,
      args: [...tlsArgs, "--tls-client-ca", certs.paths.ca],
    });
    expect(serve.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    const req = { selector: { case: "tenantId" as const, value: sb.grant.tenants[0]!.tenantId } };
    const withCert = createClient(
      TokenService,
      createGrpcTransport({ baseUrl: serve.url, nodeOptions: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey } }),
    );
    expect((await withCert.getToken(req, withKey(key))).token?.tokenType).toBe("Bearer");
    const noCert = createClient(TokenService, createGrpcTransport({ baseUrl: serve.url, nodeOptions: { ca: certs.ca } }));
    expect(await codeOf(noCert.getToken(req, withKey(key)))).not.toBe("ok");

    const half = await runCli(
      ["serve", "--db", sb.db, "--listen", "127.0.0.1:0", "--encryption-key-file", sb.keyFile, "--tls-cert", certs.paths.serverCert],
      fakeEnv(sb.fake),
    );
    expect(half.code).toBe(2);
    expect(oneLine(half.stderr)).toMatch(/both --tls-cert and --tls-key/);
  });
});
