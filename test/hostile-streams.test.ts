/**
 * Streams opened and dropped by the thousand: 2000 WatchToken streams over a
 * few HTTP/2 connections, cancelled before or right after their first token.
 * The server stays up, every subscription is released and memory returns to
 * near its baseline.
 */
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { setTimeout as delay } from "node:timers/promises";
import { createClient, type Client } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { afterEach, expect, it } from "vitest";
import { TokenService } from "../gen/ts/tokenbroker/v1/token_service_pb.js";
import { eventually } from "./helpers/stream-reader.js";
import { startSecureBroker, withKey, type SecureBrokerFixture } from "./helpers/secure-broker.js";

setFlagsFromString("--expose-gc");
const gc = runInNewContext("gc") as () => void;

/** Heap in use after full collections, MB. */
async function settledHeapMb(): Promise<number> {
  for (let i = 0; i < 3; i++) {
    await delay(20);
    gc();
  }
  return process.memoryUsage().heapUsed / 1024 / 1024;
}

let f: SecureBrokerFixture | undefined;
afterEach(async () => {
  await f?.close();
});

it("2000 WatchToken streams opened and cancelled over 4 HTTP/2 connections leave nothing behind", async () => {
  f = await startSecureBroker({ server: { shutdownGraceMs: 2000 } });
  const broker = f;
  const key = broker.createKey("flood", "*");
  const clients: Client<typeof TokenService>[] = Array.from({ length: 4 }, () =>
    createClient(TokenService, createGrpcTransport({ baseUrl: broker.server.url })),
  );
  const selector = { case: "tenantId" as const, value: broker.tenantId };

  /** Opens `n` streams, `concurrency` at a time; odd ones are cancelled at once, even ones after their first token. */
  async function flood(n: number, concurrency: number): Promise<{ firstTokens: number }> {
    let firstTokens = 0;
    let next = 0;
    const worker = async () => {
      while (next < n) {
        const i = next++;
        const cancel = new AbortController();
        const stream = clients[i % clients.length]!.watchToken({ selector }, { ...withKey(key), signal: cancel.signal });
        try {
          if (i % 2 === 1) {
            const it = stream[Symbol.asyncIterator]();
            const first = it.next();
            setImmediate(() => cancel.abort());
            await first.then(
              () => {},
              () => {},
            );
          } else {
            for await (const m of stream) {
              if (m.token) firstTokens++;
              cancel.abort();
            }
          }
        } catch {
          // cancelled: expected
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    return { firstTokens };
  }

  await flood(200, 50); // warm-up: code paths compiled, pools allocated
  await eventually(() => broker.server.broker.hub.size === 0, 5000, "warm-up subscriptions released");
  await broker.audit.flush();
  const baseline = await settledHeapMb();

  const started = performance.now();
  const { firstTokens } = await flood(2000, 200);
  const elapsed = performance.now() - started;
  expect(firstTokens).toBe(1000); // every stream that waited got its token at once
  await eventually(() => broker.server.broker.hub.size === 0, 5000, "all subscriptions released");
  await broker.audit.flush();
  const after = await settledHeapMb();
  console.log(`2000 streams in ${Math.round(elapsed)} ms; heap ${baseline.toFixed(1)} MB → ${after.toFixed(1)} MB`);
  expect(after - baseline).toBeLessThan(8);

  // Still serving, nothing stored changed, nothing went upstream.
  const { token } = await clients[0]!.getToken({ selector }, withKey(key));
  expect(token?.version).toBe(1n);
  expect(broker.fake.tokenEndpointCalls).toBe(1); // the import only
});
