/**
 * The port's safety net (src/server/request-guard.ts, one-port-server.ts): a
 * handler that throws or rejects, or an HTTP/2 stream handler that throws,
 * fails that request alone, is reported once, and the port keeps serving.
 * These handlers are broken on purpose: a bug in one handler is caught at
 * its request, never at the process (an uncaught exception here would fail
 * the test run).
 */
import * as http2 from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { routeHttp } from "../src/server/http-routes.js";
import { listenOnePort, type OnePortServer } from "../src/server/one-port-server.js";
import { exchange, h1Status, h2Request } from "./helpers/raw-http.js";

let server: OnePortServer;
let url: string;
const failures: Array<{ error: string; path: string }> = [];

beforeAll(async () => {
  const routes = routeHttp(
    [
      { method: "GET", path: "/ok", handle: (_req, res) => res.end("ok") },
      { method: "GET", path: "/rejects", handle: async () => Promise.reject(new Error("rejected on purpose")) },
    ],
    (e, r) => failures.push({ error: (e as Error).message, path: r.path }),
  );
  server = await listenOnePort({
    host: "127.0.0.1",
    port: 0,
    handler(req, res) {
      if (req.url === "/throws") throw new Error("thrown on purpose");
      if (req.url === "/throws-late") {
        res.writeHead(200, { "content-type": "text/plain" });
        (res as import("node:http").ServerResponse).write("partial");
        throw new Error("thrown after the headers");
      }
      if (req.url === "/rejects-here") return Promise.reject(new Error("handler rejected")) as unknown as undefined;
      routes(req, res);
    },
    streamHandler(_stream, headers) {
      if (headers[":path"] === "/stream-throws") throw new Error("stream handler threw");
      return false;
    },
    onRequestFailure: (e, r) => failures.push({ error: (e as Error).message, path: r.path }),
  });
  url = `http://127.0.0.1:${server.port}`;
});

afterAll(() => {
  server?.destroyAll();
  server?.stopAccepting();
});

const h1 = async (path: string, extra = "") =>
  exchange({ url }, "http/1.1", Buffer.from(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n${extra}\r\n`));

describe("a failing handler fails its request alone", () => {
  it.each(["/throws", "/rejects-here", "/rejects"])("%s: 500 over HTTP/1.1 and HTTP/2, reported once each", async (path) => {
    failures.length = 0;
    expect(h1Status(await h1(path))).toBe(500);
    const r = await h2Request({ url }, { ":path": path });
    expect(r.headers?.[":status"]).toBe(500);
    expect(JSON.parse(r.body.toString())).toEqual({ code: "internal", message: "internal error" });
    expect(failures.map((f) => f.path)).toEqual([path, path]);
    expect(h1Status(await h1("/ok"))).toBe(200);
  });

  it("a gRPC request gets an INTERNAL status instead", async () => {
    const r = await h2Request({ url }, { ":method": "POST", ":path": "/throws", "content-type": "application/grpc" }, Buffer.alloc(5));
    expect(r.headers?.[":status"]).toBe(200);
    expect(r.headers?.["grpc-status"]).toBe("13");
  });

  it("a response already under way is cut off (the client sees it incomplete), and the port keeps serving", async () => {
    const bytes = (await h1("/throws-late")).toString("latin1");
    expect(bytes).not.toMatch(/\r\n0\r\n\r\n$/); // no last chunk: the client knows it is incomplete
    const r = await h2Request({ url }, { ":path": "/throws-late" });
    expect(r.error).toMatch(/NGHTTP2_INTERNAL_ERROR|aborted|closed/i);
    expect(h1Status(await h1("/ok"))).toBe(200);
  });

  it("an HTTP/2 stream handler that throws resets its stream (INTERNAL_ERROR); the session serves on", async () => {
    failures.length = 0;
    const session = http2.connect(url);
    try {
      const failed = await new Promise<number>((resolve) => {
        const req = session.request({ ":path": "/stream-throws" });
        req.on("error", () => {});
        req.on("close", () => resolve(req.rstCode!));
        req.resume();
      });
      expect(failed).toBe(http2.constants.NGHTTP2_INTERNAL_ERROR);
      const ok = await new Promise<number>((resolve) => {
        const req = session.request({ ":path": "/ok" });
        req.on("response", (h) => resolve(Number(h[":status"])));
        req.resume();
      });
      expect(ok).toBe(200);
      expect(failures).toEqual([{ error: "stream handler threw", path: "/stream-throws" }]);
    } finally {
      session.close();
    }
  });

  it("HTTP/1.1 that does not parse is answered 400 and the connection closed (Node's clientError)", async () => {
    for (const bad of [
      "GET / HTTP/1.1\r\nHost: x\r\nbad header\r\n\r\n",
      "GET\x00/ HTTP/1.1\r\n\r\n",
      "\r\n\r\n\r\nx",
      "GET / HTTP/9.9\r\nHost: x\r\n\r\n",
    ]) {
      const bytes = await exchange({ url }, "http/1.1", Buffer.from(bad, "latin1"), 2_000);
      expect(h1Status(bytes), JSON.stringify(bad)).toBe(400);
    }
    expect(h1Status(await h1("/ok"))).toBe(200);
  });
});
