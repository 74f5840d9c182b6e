#!/usr/bin/env node
/**
 * TEST-ONLY: WatchToken streams in a process of their own, so that the arrival times they record are not
 * delayed by the test process answering a storm's thousand calls (in production, watchers and callers are
 * other machines). Plain JavaScript on the compiled generated code (`npm run build`), like
 * serve-with-fault-hooks.mjs; not shipped.
 *
 * Usage: node test/helpers/watch-process.mjs '{"urls":["http://127.0.0.1:PORT",…],"perHost":50,"selector":{"case":"connectionId","value":"…"}}'
 * The API key comes in TOKENBROKER_TEST_API_KEY (never on the command line, where other users could see it).
 * For each stream and each version it receives, writes one line to standard output:
 * `{"host":0,"stream":3,"version":5,"at":<wall-clock ms, fractional>}`; when a stream fails,
 * `{"host":0,"stream":3,"error":"[unavailable] …"}`. Runs until killed.
 */
import { ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { TokenService } from "../../dist/gen/ts/tokenbroker/v1/token_service_pb.js";

const { urls, perHost, selector } = JSON.parse(process.argv[2] ?? "{}");
const headers = { authorization: `Bearer ${process.env["TOKENBROKER_TEST_API_KEY"] ?? ""}` };
const wallNow = () => performance.timeOrigin + performance.now();
const write = (line) => process.stdout.write(`${JSON.stringify(line)}\n`);

/** @param {number} host @param {import("@connectrpc/connect").Client<typeof TokenService>} client @param {number} stream */
async function watch(host, client, stream) {
  try {
    for await (const m of client.watchToken({ selector }, { headers })) {
      write({ host, stream, version: Number(m.token?.version ?? -1), at: wallNow() });
    }
    write({ host, stream, error: "the stream ended" });
  } catch (e) {
    write({ host, stream, error: ConnectError.from(e).message });
  }
}

for (const [host, baseUrl] of urls.entries()) {
  // One HTTP/2 connection per host, every stream of that host on it.
  const client = createClient(TokenService, createGrpcTransport({ baseUrl }));
  for (let stream = 0; stream < perHost; stream++) void watch(host, client, stream);
}
