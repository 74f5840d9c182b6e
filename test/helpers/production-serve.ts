import { writeFileSync } from "node:fs";
import * as http2 from "node:http2";
import { join } from "node:path";
import { setTimeout as delay } from "node:timers/promises";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { TokenService } from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import { startFakeXero, type FakeGrant, type FakeXero } from "@tokenbroker/fake-xero";
import { tempDir } from "./broker-fixture.js";
import { fakeEnv, runCli, startServe, type ServeProcess } from "./serve-process.js";
import { makeTestCertificates, type TestCertificates } from "./test-certificates.js";

/** `tokenbroker serve` processes as in production (API keys, encryption at rest), on cleartext and TLS, and what they serve. */
export interface ProductionBrokers {
  fake: FakeXero;
  grant: FakeGrant;
  /** A client key for every tenant. */
  key: string;
  /** An admin key (the pages). */
  adminKey: string;
  certs: TestCertificates;
  plain: ServeProcess;
  tls: ServeProcess;
  /** Starts again whichever process has exited (so that one crash does not fail every later test). */
  respawn(): Promise<void>;
  close(): Promise<void>;
}

async function cli(args: string[], fake: FakeXero, input = ""): Promise<string> {
  const r = await runCli(args, fakeEnv(fake), input);
  if (r.code !== 0) throw new Error(`tokenbroker ${args[0]} failed (${r.code}): ${r.stderr}`);
  return r.stdout;
}

/**
 * A fake Xero with one grant, a database with it imported (encrypted), a
 * client and an admin key, and two `tokenbroker serve` processes on it: one
 * cleartext (HTTP/1.1 and h2c) and one over TLS (ALPN h2 and http/1.1).
 */
export async function startProductionBrokers(): Promise<ProductionBrokers> {
  const fake = await startFakeXero();
  const grant = fake.addGrant({ tenants: [{ tenantName: "Org A" }] });
  const dir = tempDir();
  const db = join(dir.path, "t.db");
  const keyFile = join(dir.path, "tokenbroker.key");
  writeFileSync(keyFile, await cli(["keygen"], fake), { mode: 0o600 });
  await cli(["import", "--db", db, "--encryption-key-file", keyFile], fake, `${grant.refreshToken}\n`);
  const key = (await cli(["keys", "create", "--db", db, "--name", "all", "--tenants", "*"], fake)).trim();
  const adminKey = (await cli(["keys", "create", "--db", db, "--name", "admin", "--tenants", "*", "--admin"], fake)).trim();
  const certs = makeTestCertificates(dir.path);
  const args = ["--encryption-key-file", keyFile];
  const tlsArgs = [...args, "--tls-cert", certs.paths.serverCert, "--tls-key", certs.paths.serverKey];
  const brokers: ProductionBrokers = {
    fake,
    grant,
    key,
    adminKey,
    certs,
    plain: await startServe({ env: fakeEnv(fake), db, secure: true, args }),
    tls: await startServe({ env: fakeEnv(fake), db, secure: true, args: tlsArgs }),
    async respawn() {
      // Both looked at together: each look gives a dying process 200 ms to be seen.
      const [plainAlive, tlsAlive] = await Promise.all([isAlive(brokers.plain), isAlive(brokers.tls)]);
      if (!plainAlive) brokers.plain = await startServe({ env: fakeEnv(fake), db, secure: true, args });
      if (!tlsAlive) brokers.tls = await startServe({ env: fakeEnv(fake), db, secure: true, args: tlsArgs });
    },
    async close() {
      await Promise.all([brokers.plain.kill("SIGKILL"), brokers.tls.kill("SIGKILL")]);
      await fake.close();
      dir.cleanup();
    },
  };
  return brokers;
}

/** Whether `serve` is still running (its exit, if it is dying, is given 200 ms to be seen). */
export async function isAlive(serve: ServeProcess): Promise<boolean> {
  const exited = await Promise.race([serve.exited.then(() => true), delay(200).then(() => false)]);
  return !exited;
}

/** A gRPC client of `serve` (trusting the test CA over TLS). */
export function grpcClient(serve: ServeProcess, ca: Buffer): Client<typeof TokenService> {
  return createClient(
    TokenService,
    createGrpcTransport({ baseUrl: serve.url, ...(serve.url.startsWith("https:") ? { nodeOptions: { ca } } : {}) }),
  );
}

/** The status of `GET path` over HTTP/2 (h2c or TLS). */
export async function getStatus(serve: ServeProcess, ca: Buffer, path: string): Promise<number> {
  const session = http2.connect(serve.url, serve.url.startsWith("https:") ? { ca, servername: "localhost" } : {});
  try {
    return await new Promise<number>((resolve, reject) => {
      session.on("error", reject);
      const req = session.request({ ":path": path });
      req.on("response", (h) => resolve(Number(h[":status"])));
      req.on("error", reject);
      req.resume();
    });
  } finally {
    session.close();
  }
}
