/**
 * Fuzzes the HTTP layer of a real `tokenbroker serve` (API keys and
 * encryption on, as in production; a fake Xero behind it) through raw
 * sockets: generated HTTP/1.1 requests (request lines, methods, targets,
 * header sets, bodies) over cleartext and TLS (ALPN http/1.1), and HTTP/2
 * frame sequences (random frames, and HEADERS whose HPACK-literal blocks carry
 * arbitrary pseudo-headers: missing, duplicated, upper-case, huge, `:path` =
 * `//`) over h2c and TLS (ALPN h2), plus a corpus of requests that once ended
 * the process. After each batch the process is alive, `/healthz` answers 200
 * and an authenticated GetToken works; an HTTP/1.1 answer is never a 5xx; and
 * the broker logged no error (its safety net logs each request it caught).
 *
 * Fixed seed and bounded count; a longer run:
 * `TOKENBROKER_FUZZ_RUNS=20000 npx vitest run test/fuzz-http.test.ts`
 * (`TOKENBROKER_FUZZ_SEED` picks another seed).
 */
import { setTimeout as delay } from "node:timers/promises";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { KILLER_TARGETS } from "./helpers/http-corpus.js";
import {
  END_HEADERS,
  END_STREAM,
  exchange,
  FrameType,
  h1Status,
  h2Frame,
  h2Opening,
  hpackLiterals,
  readFrames,
  type RawTarget,
} from "./helpers/raw-http.js";
import { getStatus, grpcClient, isAlive, startProductionBrokers, type ProductionBrokers } from "./helpers/production-serve.js";
import type { ServeProcess } from "./helpers/serve-process.js";
import { withKey } from "./helpers/secure-broker.js";

/** Generated inputs per transport (cleartext; TLS gets a third, its handshakes cost more). */
const RUNS = Number(process.env["TOKENBROKER_FUZZ_RUNS"] ?? 400);
const SEED = Number(process.env["TOKENBROKER_FUZZ_SEED"] ?? 20_261_204);
/** Inputs in flight at once, and between two health checks. */
const CONCURRENCY = 24;
const BATCH = 96;
/** Per test: a minute, and more for a longer run. */
const TIMEOUT_MS = 60_000 + RUNS * 60;

let b: ProductionBrokers;

beforeAll(async () => {
  b = await startProductionBrokers();
}, 60_000);

afterAll(async () => {
  await b?.close();
});

const RPC_PATHS = [
  "/tokenbroker.v1.TokenService/GetToken",
  "/tokenbroker.v1.TokenService/WatchToken",
  "/tokenbroker.v1.TokenService/ReportExpired",
  "/grpc.health.v1.Health/Check",
  "/grpc.health.v1.Health/Watch",
  "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
];
const PAGE_PATHS = ["/", "/healthz", "/readyz", "/livez", "/metrics", "/connect", "/oauth/callback", "/login", "/logout"];
/** The Xero API proxy: real paths and ways out of it (answered 400 before any key is looked at). */
const PROXY_PATHS = [
  "/xero/connections",
  "/xero/api.xro/2.0/Invoices",
  "/xero/../connect/token",
  "/xero/%2e%2e/connect/token",
  "/xero//x",
  "/xero/",
];

/** Request targets: the corpus, known paths with generated queries, generated paths. */
function targets(): fc.Arbitrary<string> {
  const segment = fc.stringMatching(/^[A-Za-z0-9._~%:@!$&'()*+,;=\-\\[\]{}|^`"<> ]{0,12}$/);
  return fc.oneof(
    { arbitrary: fc.constantFrom(...KILLER_TARGETS), weight: 3 },
    { arbitrary: fc.constantFrom(...RPC_PATHS, ...PAGE_PATHS, ...PROXY_PATHS), weight: 8 },
    fc.tuple(fc.constantFrom(...RPC_PATHS, ...PAGE_PATHS), fc.string({ unit: "binary-ascii", maxLength: 40 })).map(([p, q]) => `${p}?${q}`),
    fc.constantFrom(...PAGE_PATHS).map((p) => `${p}?state=${"s".repeat(8)}&code=x&error=access_denied&connected=%ZZ&moved=1`),
    fc.array(segment, { minLength: 0, maxLength: 6 }).map((s) => `/${s.join("/")}`),
    fc.string({ unit: "binary-ascii", maxLength: 60 }),
    fc.constantFrom("*", "http://127.0.0.1/healthz", "https://a:b@c/", "127.0.0.1:80", "", "/%00", "/\t", `/${"a".repeat(9000)}`),
  );
}

const METHODS = ["GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "PATCH", "CONNECT", "TRACE", "PRI", "get", "G\x01T", ""];
const CONTENT_TYPES = [
  "application/json",
  "application/proto",
  "application/connect+json",
  "application/connect+proto",
  "application/grpc",
  "application/grpc-web+proto",
  "application/grpc-web-text",
  "application/x-www-form-urlencoded",
  "text/html",
  "application/json; charset=utf-16",
  "",
];

/** Headers of an HTTP/1.1 request or an HTTP/2 HEADERS block (without pseudo-headers): known names with good and bad values, and generated ones. */
function headerSets(key: () => string): fc.Arbitrary<Array<[string, string]>> {
  const known = fc.oneof(
    fc.constantFrom<[string, string]>(
      ["host", "127.0.0.1"],
      ["host", "a b"],
      ["host", "["],
      ["host", ""],
      ["authorization", "Bearer tbk_garbage"],
      ["authorization", "Basic Zm9vOmJhcg=="],
      ["authorization", ""],
      ["connect-protocol-version", "1"],
      ["connect-protocol-version", "2"],
      ["connect-timeout-ms", "-1"],
      ["connect-timeout-ms", "99999999999999999999"],
      ["grpc-timeout", "1S"],
      ["grpc-timeout", "99999999H"],
      ["grpc-timeout", "garbage"],
      ["grpc-encoding", "gzip"],
      ["grpc-encoding", "br"],
      ["grpc-encoding", "zstd"],
      ["content-encoding", "gzip"],
      ["accept", "text/html"],
      ["accept-encoding", "gzip, br"],
      ["cookie", "tb_session=x; tokenbroker_consent_s=y"],
      ["transfer-encoding", "chunked"],
      ["transfer-encoding", "gzip, chunked"],
      ["content-length", "0"],
      ["content-length", "-1"],
      ["content-length", "99999999999999999999"],
      ["expect", "100-continue"],
      ["upgrade", "h2c"],
      ["http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"],
      ["te", "trailers"],
      ["x-forwarded-for", "1.2.3.4"],
      ["xero-tenant-id", "00000000-0000-0000-0000-000000000000"],
      ["xero-tenant-id", ""],
      ["origin", "http://evil.example"],
    ),
    fc.constantFrom(...CONTENT_TYPES).map((v): [string, string] => ["content-type", v]),
    fc.constant(null).map((): [string, string] => ["authorization", `Bearer ${key()}`]),
    { arbitrary: fc.constant(null).map((): [string, string] => ["authorization", `Bearer ${key()}`]), weight: 3 },
    fc.tuple(fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,20}$/), fc.stringMatching(/^[\x20-\x7e]{0,200}$/)),
    { arbitrary: fc.tuple(fc.stringMatching(/^[a-z0-9-]{1,20}$/), fc.string({ unit: "binary-ascii", maxLength: 40 })), weight: 1 },
  );
  return fc.array(known, { maxLength: 6 });
}

/** Bodies: nothing, JSON (a GetToken), gRPC envelopes, generated bytes. */
function bodies(tenant: () => string): fc.Arbitrary<Buffer> {
  return fc.oneof(
    fc.constant(Buffer.alloc(0)),
    fc.constant(null).map(() => Buffer.from(JSON.stringify({ tenantId: tenant() }))),
    fc.uint8Array({ maxLength: 64 }).map((m) => {
      const envelope = Buffer.alloc(5 + m.length);
      envelope.writeUInt32BE(m.length, 1);
      envelope.set(m, 5);
      return envelope;
    }),
    fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
  );
}

/** One generated HTTP/1.x request, as bytes. */
function h1Requests(): fc.Arbitrary<Buffer> {
  const structured = fc
    .record({
      method: fc.oneof(
        { arbitrary: fc.constantFrom("GET", "POST", "POST", "HEAD"), weight: 6 },
        fc.constantFrom(...METHODS),
        fc.stringMatching(/^[A-Z]{1,12}$/),
      ),
      target: targets(),
      version: fc.oneof(
        { arbitrary: fc.constant("HTTP/1.1"), weight: 8 },
        fc.constantFrom("HTTP/1.0", "HTTP/2.0", "HTTP/0.9", "HTTP/1.1 x", "http/1.1"),
      ),
      host: fc.oneof(
        { arbitrary: fc.constant("127.0.0.1"), weight: 8 },
        fc.constantFrom(undefined, "a b", "[", "", "127.0.0.1:99999", "x/y"),
      ),
      headers: headerSets(() => b.key),
      body: bodies(() => b.grant.tenants[0]!.tenantId),
      withLength: fc.boolean(),
      close: fc.boolean(),
      eol: fc.oneof({ arbitrary: fc.constant("\r\n"), weight: 10 }, fc.constantFrom("\n", "\r")),
    })
    .map(({ method, target, version, host, headers, body, withLength, close, eol }) => {
      const lines = [`${method} ${target} ${version}`];
      if (host !== undefined) lines.push(`host: ${host}`);
      for (const [n, v] of headers) lines.push(`${n}: ${v}`);
      if (withLength) lines.push(`content-length: ${body.length}`);
      if (close) lines.push("connection: close");
      return Buffer.concat([Buffer.from(lines.join(eol) + eol + eol, "latin1"), body]);
    });
  // Well-formed requests (known paths, content types and keys; the body's length given) reach the routes and RPCs.
  const wellFormed = fc
    .record({
      method: fc.constantFrom("GET", "POST", "POST", "HEAD", "PUT"),
      target: fc.oneof(
        fc.constantFrom(...RPC_PATHS, ...PAGE_PATHS),
        fc
          .tuple(fc.constantFrom(...RPC_PATHS, ...PAGE_PATHS), fc.stringMatching(/^[A-Za-z0-9=&%+._-]{0,40}$/))
          .map(([p, q]) => `${p}?${q}`),
      ),
      contentType: fc.constantFrom(...CONTENT_TYPES),
      key: fc.constantFrom(true, true, false),
      admin: fc.boolean(),
      protocolVersion: fc.boolean(),
      body: bodies(() => b.grant.tenants[0]!.tenantId),
    })
    .map(({ method, target, contentType, key, admin, protocolVersion, body }) => {
      const lines = [
        `${method} ${target} HTTP/1.1`,
        "host: 127.0.0.1",
        "connection: close",
        `content-type: ${contentType}`,
        `content-length: ${body.length}`,
      ];
      if (key) lines.push(`authorization: Bearer ${admin ? b.adminKey : b.key}`);
      if (protocolVersion) lines.push("connect-protocol-version: 1");
      return Buffer.concat([Buffer.from(`${lines.join("\r\n")}\r\n\r\n`, "latin1"), body]);
    });
  return fc.oneof(
    { arbitrary: structured, weight: 6 },
    { arbitrary: wellFormed, weight: 4 },
    fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
  );
}

/** A HEADERS block with generated pseudo-headers (any order, missing, repeated, upper-case, unknown, huge) and headers. */
function headerBlocks(): fc.Arbitrary<Buffer> {
  const pseudo = fc.oneof(
    fc
      .oneof(fc.constantFrom("GET", "POST", "HEAD", "CONNECT", "OPTIONS", ""), fc.string({ maxLength: 8 }))
      .map((v): [string, string] => [":method", v]),
    targets().map((v): [string, string] => [":path", v]),
    fc.constantFrom("http", "https", "", "ftp").map((v): [string, string] => [":scheme", v]),
    fc.constantFrom("127.0.0.1", "localhost:1", "a b", "[", "", "a".repeat(300)).map((v): [string, string] => [":authority", v]),
    fc.constantFrom<[string, string]>(
      [":status", "200"],
      [":protocol", "websocket"],
      [":foo", "bar"],
      [":PATH", "/healthz"],
      [":Method", "GET"],
      ["Content-Type", "application/grpc"],
    ),
    fc.integer({ min: 1_000, max: 12_000 }).map((n): [string, string] => ["x-huge", "v".repeat(n)]),
  );
  const request = fc
    .record({
      method: fc.constantFrom("GET", "POST", "POST", "POST"),
      path: targets(),
      extra: fc.oneof({ arbitrary: fc.constant<Array<[string, string]>>([]), weight: 2 }, fc.array(pseudo, { maxLength: 3 })),
      drop: fc.oneof(
        { arbitrary: fc.constant<string[]>([]), weight: 3 },
        fc.subarray([":method", ":path", ":scheme", ":authority"], { maxLength: 2 }),
      ),
      headers: headerSets(() => b.key),
      contentType: fc.constantFrom(
        "application/grpc",
        "application/grpc",
        "application/connect+proto",
        "application/json",
        "application/grpc-web+proto",
      ),
      shuffle: fc.boolean(),
    })
    .map(({ method, path, extra, drop, headers, contentType, shuffle }) => {
      const pseudos: Array<[string, string]> = [
        [":method", method],
        [":scheme", "http"],
        [":path", path],
        [":authority", "127.0.0.1"],
      ];
      const fields: Array<[string, string]> = [
        ...pseudos.filter(([n]) => !drop.includes(n)),
        ...extra,
        ["content-type", contentType],
        ["te", "trailers"],
        ...headers,
      ];
      return hpackLiterals(shuffle ? fields.reverse() : fields);
    });
  return fc.oneof(
    { arbitrary: request, weight: 9 },
    fc.uint8Array({ maxLength: 80 }).map((a) => Buffer.from(a)),
  );
}

/** One generated frame; HEADERS (with a generated block) and DATA weigh most. */
function frames(): fc.Arbitrary<Buffer> {
  const streamId = fc.oneof(fc.constantFrom(1, 1, 3, 5, 0, 2, 0x7fffffff), fc.integer({ min: 0, max: 0xffffffff }));
  const flags = fc.oneof(fc.constantFrom(END_HEADERS, END_HEADERS | END_STREAM, END_STREAM, 0), fc.integer({ min: 0, max: 255 }));
  const headers = fc.tuple(streamId, flags, headerBlocks()).map(([id, f, block]) => h2Frame(FrameType.HEADERS, f, id, block));
  const data = fc
    .tuple(
      streamId,
      flags,
      bodies(() => b.grant.tenants[0]!.tenantId),
    )
    .map(([id, f, body]) => h2Frame(FrameType.DATA, f, id, body));
  const settings = fc
    .array(fc.tuple(fc.integer({ min: 0, max: 10 }), fc.integer({ min: 0, max: 0xffffffff })), { maxLength: 4 })
    .map((entries) => {
      const payload = Buffer.alloc(6 * entries.length);
      entries.forEach(([id, value], i) => {
        payload.writeUInt16BE(id, 6 * i);
        payload.writeUInt32BE(value, 6 * i + 2);
      });
      return payload;
    });
  const any = fc
    .record({
      type: fc.oneof(fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 255 })),
      flags,
      streamId,
      payload: fc.oneof(
        settings,
        fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)),
      ),
      lie: fc.option(fc.integer({ min: 0, max: 0xffffff }), { freq: 8 }),
    })
    .map(({ type, flags: f, streamId: id, payload, lie }) => h2Frame(type, f, id, payload, lie ?? payload.length));
  return fc.oneof({ arbitrary: headers, weight: 4 }, { arbitrary: data, weight: 2 }, { arbitrary: any, weight: 3 });
}

/**
 * A connection's worth of HTTP/2: the opening (usually), then either 1-4
 * requests on streams 1, 3, 5, 7 (a generated HEADERS block, maybe a body,
 * maybe a random frame or two after), which reach the request handlers, or
 * 1-8 random frames, which mostly reach Node's frame checks.
 */
function h2Sequences(): fc.Arbitrary<Buffer[]> {
  const request = fc.record({
    block: headerBlocks(),
    endStream: fc.boolean(),
    body: fc.option(
      bodies(() => b.grant.tenants[0]!.tenantId),
      { freq: 2 },
    ),
  });
  const requests = fc
    .tuple(
      fc.array(request, { minLength: 1, maxLength: 4 }),
      fc.oneof({ arbitrary: fc.constant([]), weight: 3 }, fc.array(frames(), { maxLength: 2 })),
    )
    .map(([rs, after]) => [
      ...rs.flatMap(({ block, endStream, body }, i) => [
        h2Frame(FrameType.HEADERS, END_HEADERS | (endStream && body === null ? END_STREAM : 0), 2 * i + 1, block),
        ...(body === null ? [] : [h2Frame(FrameType.DATA, END_STREAM, 2 * i + 1, body)]),
      ]),
      ...after,
    ]);
  const chaos = fc.array(frames(), { minLength: 1, maxLength: 8 });
  return fc
    .tuple(
      fc.constantFrom(true, true, true, true, true, true, true, false),
      fc.oneof({ arbitrary: requests, weight: 3 }, { arbitrary: chaos, weight: 1 }),
    )
    .map(([opening, fs]) => (opening ? [h2Opening(), ...fs] : [Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), ...fs]));
}

/** Runs `fn` over `items`, `CONCURRENCY` at a time. */
async function inParallel<T>(items: readonly T[], fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(CONCURRENCY, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** What a healthy broker answers: alive, `/healthz` 200, an authenticated GetToken. */
async function expectServing(serve: ServeProcess, after: string): Promise<void> {
  expect(await isAlive(serve), `the process exited after ${after}: ${serve.stderr().slice(-3000)}`).toBe(true);
  expect(await getStatus(serve, b.certs.ca, "/healthz"), `/healthz after ${after}`).toBe(200);
  const res = await grpcClient(serve, b.certs.ca).getToken(
    { selector: { case: "tenantId", value: b.grant.tenants[0]!.tenantId } },
    { ...withKey(b.key), timeoutMs: 10_000 },
  );
  expect(res.token?.tokenType, `GetToken after ${after}`).toBe("Bearer");
}

/** The broker's log lines at error level or above, and anything on stderr that is not a log line. */
function errorsLogged(serve: ServeProcess): string[] {
  return serve
    .stderr()
    .split("\n")
    .filter((line) => line.trim() !== "")
    .filter((line) => {
      try {
        return Number((JSON.parse(line) as { level?: number }).level) >= 50;
      } catch {
        return true;
      }
    });
}

/**
 * A 5xx that is Connect's answer in its own protocol, not a failure: 505 to a
 * bidi-streaming method over HTTP/1.1, or a Connect error (an RPC status:
 * `internal` for a body that is no message, as gRPC servers answer it) other
 * than the safety net's "internal error".
 */
function isConnectStatus(status: number, answer: Buffer): boolean {
  if (status === 505) return true;
  const text = answer.toString("latin1");
  const body = text.slice(text.indexOf("\r\n\r\n") + 4);
  try {
    const error = JSON.parse(body) as { code?: string; message?: string };
    return typeof error.code === "string" && error.message !== "internal error";
  } catch {
    return false;
  }
}

/** Sends generated inputs in batches, checking the broker between batches; returns the HTTP/1.x statuses seen. */
async function fuzz(
  serve: () => ServeProcess,
  arbitrary: fc.Arbitrary<Buffer | Buffer[]>,
  alpn: "h2" | "http/1.1",
  runs: number,
  seed: number,
): Promise<Map<string, number>> {
  const inputs = fc.sample(arbitrary, { numRuns: runs, seed });
  const seen = new Map<string, number>();
  for (let i = 0; i < inputs.length; i += BATCH) {
    const batch = inputs.slice(i, i + BATCH);
    const target: RawTarget = { url: serve().url, ca: b.certs.ca };
    await inParallel(batch, async (input) => {
      // A connection refused at connect time under thousands of short loopback connections is tried once more
      // (a broker that stopped accepting fails the check after the batch all the same).
      const answer = await exchange(target, alpn, input, 250).catch(async () => {
        await delay(200);
        return exchange(target, alpn, input, 250).catch((e: Error) => {
          throw new Error(`${e.message}; the broker's standard error ends: ${serve().stderr().slice(-3000)}`);
        });
      });
      if (alpn === "http/1.1") {
        const status = h1Status(answer);
        const name = status === undefined ? "none" : String(status);
        seen.set(name, (seen.get(name) ?? 0) + 1);
        if (status !== undefined && status >= 500 && !isConnectStatus(status, answer)) {
          expect.fail(
            `answered ${status} to ${JSON.stringify(Buffer.concat([input].flat()).toString("latin1").slice(0, 600))}: ${JSON.stringify(answer.toString("latin1").slice(0, 600))}`,
          );
        }
      } else {
        // What the server sent back on the connection, beyond its SETTINGS: answers, resets, GOAWAY.
        const kinds = new Set(
          readFrames(answer).map((f) =>
            f.type === FrameType.HEADERS
              ? "headers"
              : f.type === FrameType.RST_STREAM
                ? "reset"
                : f.type === FrameType.GOAWAY
                  ? "goaway"
                  : "other",
          ),
        );
        const name =
          [...kinds]
            .filter((k) => k !== "other")
            .sort()
            .join("+") || "none";
        seen.set(name, (seen.get(name) ?? 0) + 1);
      }
    });
    await expectServing(serve(), `inputs ${i}-${i + batch.length - 1} (seed ${seed})`);
  }
  expect(errorsLogged(serve())).toEqual([]);
  return seen;
}

describe("the corpus of requests that ended the process", () => {
  it.each([
    { name: "HTTP/1.1", tls: false },
    { name: "TLS", tls: true },
  ])("over $name, HTTP/1.1 and HTTP/2 alike, leaves the broker serving", async ({ tls }) => {
    const serve = tls ? b.tls : b.plain;
    const target = { url: serve.url, ca: b.certs.ca };
    const h1 = KILLER_TARGETS.flatMap((t) =>
      ["GET", "POST"].map((m) =>
        Buffer.from(`${m} ${t} HTTP/1.1\r\nHost: 127.0.0.1\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`, "latin1"),
      ),
    );
    await inParallel(h1, async (input) => {
      expect(h1Status(await exchange(target, "http/1.1", input))).toBe(400);
    });
    const h2 = KILLER_TARGETS.flatMap((t) =>
      ["application/grpc", "application/json"].map((ct) => [
        h2Opening(),
        h2Frame(
          FrameType.HEADERS,
          END_HEADERS | END_STREAM,
          1,
          hpackLiterals([
            [":method", "POST"],
            [":scheme", "http"],
            [":path", t],
            [":authority", "127.0.0.1"],
            ["content-type", ct],
          ]),
        ),
      ]),
    );
    await inParallel(h2, async (input) => {
      await exchange(target, "h2", input);
    });
    await expectServing(serve, "the corpus");
    expect(errorsLogged(serve)).toEqual([]);
  });
});

describe("generated input", () => {
  it(
    "HTTP/1.1 requests over cleartext: never a 5xx, and the broker keeps serving",
    async () => {
      const seen = await fuzz(() => b.plain, h1Requests(), "http/1.1", RUNS, SEED);
      console.log("HTTP/1.1 statuses", Object.fromEntries(seen));
      // The mix reached the routes and the RPCs, not only the parser.
      expect([...seen.keys()].filter((s) => s !== "400" && s !== "none").length).toBeGreaterThan(2);
    },
    TIMEOUT_MS,
  );

  it(
    "HTTP/2 frame sequences over h2c: the broker keeps serving",
    async () => {
      const seen = await fuzz(() => b.plain, h2Sequences(), "h2", RUNS, SEED + 1);
      console.log("HTTP/2 answers", Object.fromEntries(seen));
      // The mix reached the request handlers (responses), not only Node's frame checks (resets, GOAWAY).
      expect([...seen.keys()].filter((k) => k.includes("headers")).reduce((n, k) => n + seen.get(k)!, 0)).toBeGreaterThan(RUNS / 20);
    },
    TIMEOUT_MS,
  );

  it(
    "HTTP/1.1 requests over TLS (ALPN http/1.1): never a 5xx, and the broker keeps serving",
    async () => {
      await fuzz(() => b.tls, h1Requests(), "http/1.1", Math.ceil(RUNS / 3), SEED + 2);
    },
    TIMEOUT_MS,
  );

  it(
    "HTTP/2 frame sequences over TLS (ALPN h2): the broker keeps serving",
    async () => {
      await fuzz(() => b.tls, h2Sequences(), "h2", Math.ceil(RUNS / 3), SEED + 3);
    },
    TIMEOUT_MS,
  );
});
