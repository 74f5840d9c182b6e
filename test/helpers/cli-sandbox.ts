import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Code, ConnectError, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, beforeEach, expect } from "vitest";
import { TokenService } from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import { startFakeXero, type FakeGrant, type FakeXero } from "@tokenbroker/fake-xero";
import { tempDir } from "./broker-fixture.js";
import { fakeEnv, killAllServe, runCli } from "./serve-process.js";

/** The status a call ended with. */
export async function codeOf(promise: Promise<unknown>): Promise<Code | "ok"> {
  try {
    await promise;
    return "ok";
  } catch (e) {
    return ConnectError.from(e).code;
  }
}

/** Exactly one line on stderr, and no stack trace; returns it. */
export function oneLine(stderr: string): string {
  const lines = stderr.split("\n").filter((l) => l.trim() !== "");
  expect(lines, stderr).toHaveLength(1);
  expect(stderr).not.toMatch(/^\s+at /m);
  return lines[0]!;
}

/** A TokenService client over gRPC. */
export const clientOf = (url: string): Client<typeof TokenService> => createClient(TokenService, createGrpcTransport({ baseUrl: url }));

/** What each test of the security CLI gets afresh: a fake Xero with one grant (two tenants), a temp dir, paths. */
export interface CliSandbox {
  readonly fake: FakeXero;
  readonly grant: FakeGrant;
  readonly dir: string;
  readonly db: string;
  /** `<dir>/tokenbroker.key` */
  readonly keyFile: string;
  /** `tokenbroker keygen > file`; returns the key. */
  keygen(file: string): Promise<string>;
  /** `tokenbroker import --encryption-key-file <keyFile>` of a refresh token (default the grant's); returns the connection id. */
  importGrant(refreshToken?: string): Promise<string>;
  /** `tokenbroker keys create …`; returns the printed key. */
  createKey(name: string, tenants: string, admin?: boolean): Promise<string>;
}

/** Registers beforeEach/afterEach that build and tear down a {@link CliSandbox}. */
export function useCliSandbox(): CliSandbox {
  let fake: FakeXero | undefined;
  let grant: FakeGrant | undefined;
  let dir: ReturnType<typeof tempDir> | undefined;
  beforeEach(async () => {
    fake = await startFakeXero();
    grant = fake.addGrant({ tenants: [{ tenantName: "Org A" }, { tenantName: "Org B" }] });
    dir = tempDir();
  });
  afterEach(async () => {
    await killAllServe();
    await fake?.close();
    dir?.cleanup();
  });
  const sandbox: CliSandbox = {
    get fake() {
      return fake!;
    },
    get grant() {
      return grant!;
    },
    get dir() {
      return dir!.path;
    },
    get db() {
      return join(dir!.path, "t.db");
    },
    get keyFile() {
      return join(dir!.path, "tokenbroker.key");
    },
    async keygen(file) {
      const r = await runCli(["keygen"], fakeEnv(fake!));
      expect(r.code).toBe(0);
      writeFileSync(file, r.stdout, { mode: 0o600 });
      return r.stdout.trim();
    },
    async importGrant(refreshToken = grant!.refreshToken) {
      const r = await runCli(["import", "--db", sandbox.db, "--encryption-key-file", sandbox.keyFile], fakeEnv(fake!), `${refreshToken}\n`);
      expect(r.code, r.stderr).toBe(0);
      return /^connection (\S+)/m.exec(r.stdout)![1]!;
    },
    async createKey(name, tenants, admin = false) {
      const args = ["keys", "create", "--db", sandbox.db, "--name", name, "--tenants", tenants, ...(admin ? ["--admin"] : [])];
      const r = await runCli(args, fakeEnv(fake!));
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toMatch(/^tbk_[A-Za-z0-9_-]{43}\n$/);
      return r.stdout.trim();
    },
  };
  return sandbox;
}
