/**
 * `tokenbroker serve`'s per-client limits as a user sets them: flags, their
 * `TOKENBROKER_*` variables, and a clear error for a bad value.
 */
import * as http2 from "node:http2";
import * as net from "node:net";
import { describe, expect, it } from "vitest";
import { oneLine, useCliSandbox } from "./helpers/cli-sandbox.js";
import { fakeEnv, runCli, startServe } from "./helpers/serve-process.js";

const sb = useCliSandbox();

describe("serve's limits", () => {
  it("--max-concurrent-streams and TOKENBROKER_HEADER_TIMEOUT_SECONDS reach the port", async () => {
    const serve = await startServe({
      env: fakeEnv(sb.fake, { TOKENBROKER_HEADER_TIMEOUT_SECONDS: "0.3" }),
      db: sb.db,
      args: ["--max-concurrent-streams", "25"],
    });
    const session = http2.connect(serve.url);
    session.on("error", () => {});
    const settings = await new Promise<http2.Settings>((resolve) => session.once("remoteSettings", resolve));
    expect(settings.maxConcurrentStreams).toBe(25);
    session.close();
    const { port } = new URL(serve.url);
    const silent = net.connect({ port: Number(port), host: "127.0.0.1" });
    silent.on("error", () => {});
    const started = performance.now();
    await new Promise((resolve, reject) => {
      silent.once("close", resolve);
      setTimeout(() => reject(new Error("silent socket still open after 5 s")), 5000);
    });
    expect(performance.now() - started).toBeGreaterThanOrEqual(200);
  });

  it.each([
    [["--idle-timeout", "0"], /--idle-timeout must be a positive number/],
    [["--max-connections-per-address", "1.5"], /--max-connections-per-address must be a whole number/],
  ])("%j is refused with one line", async (args, message) => {
    const r = await runCli(
      ["serve", "--db", sb.db, "--listen", "127.0.0.1:0", "--insecure-no-auth", "--insecure-no-encryption", ...args],
      fakeEnv(sb.fake),
    );
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(message);
  });

  it("TOKENBROKER_MAX_CONNECTION_BUFFER_KIB=lots is refused with one line", async () => {
    const r = await runCli(
      ["serve", "--db", sb.db, "--listen", "127.0.0.1:0", "--insecure-no-auth", "--insecure-no-encryption"],
      fakeEnv(sb.fake, { TOKENBROKER_MAX_CONNECTION_BUFFER_KIB: "lots" }),
    );
    expect(r.code).toBe(2);
    expect(oneLine(r.stderr)).toMatch(/--max-connection-buffer-kib must be a positive number, not "lots"/);
  });
});
