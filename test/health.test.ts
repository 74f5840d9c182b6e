/**
 * gRPC health (`grpc.health.v1.Health`) and the plain-HTTP probes
 * (`/healthz`, `/readyz`) on the real server: what a load balancer sees when
 * the broker is fine, when Xero rejects its client credentials, when the
 * database is gone, and while it shuts down.
 */
import { execFile } from "node:child_process";
import * as http from "node:http";
import { join } from "node:path";
import { promisify } from "node:util";
import { setTimeout as delay } from "node:timers/promises";
import { Code, createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Health, HealthCheckResponse_ServingStatus as Status } from "../gen/ts/grpc/health/v1/health_pb.js";
import { startBroker, tempDir, type BrokerFixture } from "./helpers/broker-fixture.js";
import { readStream } from "./helpers/stream-reader.js";
import { rejection } from "./helpers/rejection.js";

const run = promisify(execFile);
const CURL = "/usr/bin/curl";
const BUF = join(process.cwd(), "node_modules/.bin/buf");

let f: BrokerFixture;
let health: Client<typeof Health>;
beforeEach(async () => {
  f = await startBroker();
  health = createClient(Health, createGrpcTransport({ baseUrl: f.server.url }));
});
afterEach(async () => {
  await f.close();
});

async function status(service = ""): Promise<Status> {
  return (await health.check({ service })).status;
}

/** GET over HTTP/1.1 with fetch: status and JSON body. */
async function get(path: string, init: RequestInit = {}): Promise<{ status: number; body: unknown; allow: string | null }> {
  const res = await fetch(f.server.url + path, init);
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as unknown) : undefined, allow: res.headers.get("allow") };
}

/** `curl -s <url>`, with the status code appended by `-w`. */
async function curl(...args: string[]): Promise<{ status: number; body: unknown }> {
  const { stdout } = await run(CURL, ["-s", ...args, "-w", "\n%{http_code}"], { timeout: 10_000 });
  const at = stdout.lastIndexOf("\n");
  return { status: Number(stdout.slice(at + 1)), body: JSON.parse(stdout.slice(0, at)) as unknown };
}

describe("grpc.health.v1.Health", () => {
  it("Check says SERVING for the server and for the token service; List names both", async () => {
    expect(await status("")).toBe(Status.SERVING);
    expect(await status("tokenbroker.v1.TokenService")).toBe(Status.SERVING);
    const list = await health.list({});
    expect(Object.keys(list.statuses).sort()).toEqual(["", "tokenbroker.v1.TokenService"]);
    expect(Object.values(list.statuses).map((s) => s.status)).toEqual([Status.SERVING, Status.SERVING]);
  });

  it("Check of an unknown service is NOT_FOUND; Watch of one says SERVICE_UNKNOWN and stays open", async () => {
    const err = await rejection(health.check({ service: "no.such.Service" }));
    expect(err.code).toBe(Code.NotFound);
    const watch = readStream((signal) => health.watch({ service: "no.such.Service" }, { signal }));
    try {
      expect((await watch.next()).status).toBe(Status.SERVICE_UNKNOWN);
      await delay(300);
      expect(watch.ended).toBe(false);
    } finally {
      watch.cancel();
    }
  });

  it("buf curl calls Check through reflection (as grpcurl would)", async () => {
    const cwd = tempDir();
    try {
      const { stdout } = await run(
        BUF,
        ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "-d", '{"service":""}', `${f.server.url}/grpc.health.v1.Health/Check`],
        { cwd: cwd.path, timeout: 15_000, env: { ...process.env, BUF_CACHE_DIR: join(cwd.path, ".cache") } },
      );
      expect(JSON.parse(stdout)).toEqual({ status: "SERVING" });
    } finally {
      cwd.cleanup();
    }
  });

  it("invalid_client from Xero: NOT_SERVING and /readyz 503 until a refresh succeeds again", async () => {
    const client = f.client();
    const watch = readStream((signal) => health.watch({ service: "tokenbroker.v1.TokenService" }, { signal }));
    try {
      expect((await watch.next()).status).toBe(Status.SERVING);
      f.fake.failNext(1, { status: 401, error: "invalid_client" });
      await f.expireToken();
      const err = await rejection(client.getToken({ selector: { case: "tenantId", value: f.tenantId } }));
      expect(err.code).toBe(Code.Unavailable);

      expect(await status("")).toBe(Status.NOT_SERVING);
      expect(await status("tokenbroker.v1.TokenService")).toBe(Status.NOT_SERVING);
      expect(await get("/readyz")).toMatchObject({
        status: 503,
        body: { status: "not_ready", reason: "invalid client credentials" },
      });
      expect((await get("/healthz")).status).toBe(200); // alive all the same
      expect((await watch.next(3000)).status).toBe(Status.NOT_SERVING);

      // Xero accepts the client again: the next refresh succeeds and the broker is back.
      f.clock.advance(61_000); // past the refresher's cool-down
      await client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
      expect(await status("")).toBe(Status.SERVING);
      expect(await get("/readyz")).toMatchObject({ status: 200, body: { status: "ready" } });
      expect((await watch.next(3000)).status).toBe(Status.SERVING);
    } finally {
      watch.cancel();
    }
  });

  it("a closed database: NOT_SERVING and /readyz 503 'database unavailable'", async () => {
    const watch = readStream((signal) => health.watch({ service: "" }, { signal }));
    try {
      expect((await watch.next()).status).toBe(Status.SERVING);
      await f.store.close();
      expect(await status("")).toBe(Status.NOT_SERVING);
      expect(await get("/readyz")).toMatchObject({
        status: 503,
        body: { status: "not_ready", reason: "database unavailable" },
      });
      expect((await watch.next(3000)).status).toBe(Status.NOT_SERVING);
    } finally {
      watch.cancel();
    }
  });

  it("a watcher hears of a change within the poll interval, without calling Check", async () => {
    const watch = readStream((signal) => health.watch({ service: "" }, { signal }));
    try {
      expect((await watch.next()).status).toBe(Status.SERVING);
      const started = Date.now();
      await f.store.close();
      expect((await watch.next(3000)).status).toBe(Status.NOT_SERVING);
      const waited = Date.now() - started;
      expect(waited).toBeLessThan(2500);
      expect(watch.received).toHaveLength(2);
    } finally {
      watch.cancel();
    }
  });

  it("server.close() turns NOT_SERVING first: Watch sees it and ends, /readyz is 503 on open connections", async () => {
    // Keep close() busy: a refresh in flight (slow Xero) must commit before the connections close.
    f.fake.setLatency(1500);
    await f.expireToken();
    const client = f.client();
    const pending = client.getToken({ selector: { case: "tenantId", value: f.tenantId } });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const h1 = (path: string) =>
      new Promise<{ status: number; body: unknown }>((resolve, reject) => {
        http
          .get(f.server.url + path, { agent }, (res) => {
            let text = "";
            res.setEncoding("utf8");
            res.on("data", (chunk: string) => (text += chunk));
            res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as unknown }));
          })
          .on("error", reject);
      });
    const watch = readStream((signal) => health.watch({ service: "" }, { signal }));
    try {
      expect((await watch.next()).status).toBe(Status.SERVING);
      expect((await h1("/readyz")).status).toBe(200); // opens the keep-alive connection
      const deadline = Date.now() + 3000;
      while (!f.server.broker.refresher.isRefreshing(f.connectionId) && Date.now() < deadline) {
        await delay(10);
      }
      expect(f.server.broker.refresher.isRefreshing(f.connectionId)).toBe(true);

      const closing = f.server.close();
      expect(f.server.health.shuttingDown).toBe(true); // before close() awaited anything

      expect((await watch.next(1000)).status).toBe(Status.NOT_SERVING);
      const end = await watch.end(1000);
      expect(end?.code).toBe(Code.Unavailable);
      expect(await h1("/readyz")).toEqual({ status: 503, body: { status: "not_ready", reason: "shutting down" } });
      expect(await status("")).toBe(Status.NOT_SERVING); // same HTTP/2 connection as the watch
      expect(f.server.broker.refresher.isRefreshing(f.connectionId)).toBe(true); // close() still waiting for it

      expect((await pending).token?.connectionId).toBe(f.connectionId);
      await closing;
    } finally {
      watch.cancel();
      agent.destroy();
    }
  });
});

describe("HTTP probes", () => {
  it("GET /healthz is 200 'alive' over HTTP/1.1 (fetch) and with curl, HTTP/1.1 and HTTP/2", async () => {
    expect(await get("/healthz")).toMatchObject({ status: 200, body: { status: "alive" } });
    expect(await curl(`${f.server.url}/healthz`)).toEqual({ status: 200, body: { status: "alive" } });
    expect(await curl("--http2-prior-knowledge", `${f.server.url}/healthz`)).toEqual({ status: 200, body: { status: "alive" } });
  });

  it("GET /readyz is 200 'ready' while serving", async () => {
    expect(await curl(`${f.server.url}/readyz`)).toEqual({ status: 200, body: { status: "ready" } });
  });

  it("an unknown path is 404; POST /healthz is 405 naming GET", async () => {
    const missing = await get("/nope");
    expect(missing.status).toBe(404);
    const post = await get("/healthz", { method: "POST", body: "{}" });
    expect(post.status).toBe(405);
    expect(post.allow).toBe("GET");
  });
});
