/**
 * docs/proxy.md's snippets, run as written against a real broker with the
 * proxy on and API keys required: the `curl` commands, and the TypeScript
 * `createXeroFetch` example (compiled with TypeScript's transpiler and run by
 * node against the client package built from this checkout).
 */
import { execFile } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import ts from "typescript";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { docSnippet, shellCommands } from "./helpers/doc-snippets.js";
import { startRecordingApi, type RecordingApi } from "./helpers/recording-api.js";
import { tempDir } from "./helpers/broker-fixture.js";
import { startSecureBroker, type SecureBrokerFixture } from "./helpers/secure-broker.js";

// `npm test` builds packages/client (npm run typecheck or build does too) before vitest runs.
const CLIENT_ENTRY = resolve(import.meta.dirname, "..", "packages", "client", "dist", "index.js");

let api: RecordingApi;
let f: SecureBrokerFixture;
let key: string;

beforeAll(async () => {
  api = await startRecordingApi();
  api.handler = (req, res) => {
    res.writeHead(200, { "content-type": "application/json" });
    res.end(req.url === "/connections" ? '[{"tenantId":"t","tenantName":"Org A"}]' : '{"Invoices":[]}');
  };
  f = await startSecureBroker({ server: { proxy: { apiUrl: api.url } } });
  key = f.createKey("docs", [f.tenantId]);
}, 30_000);

afterAll(async () => {
  await f?.close();
  await api?.close();
});

function run(command: string, args: string[], env: Record<string, string>): Promise<string> {
  return new Promise((done, reject) =>
    execFile(command, args, { env: { PATH: process.env["PATH"] ?? "", ...env }, timeout: 10_000 }, (e, stdout) =>
      e ? reject(e) : done(stdout),
    ),
  );
}

const fill = (text: string) => text.replaceAll("http://127.0.0.1:50051", f.server.url).replaceAll("<tenant id>", f.tenantId);

describe("docs/proxy.md", () => {
  it("runs the curl commands as written", async () => {
    const [connections, invoices, ...more] = shellCommands(docSnippet("docs/proxy.md", "proxy-curl"));
    expect(more).toEqual([]);
    const before = api.requests.length;
    expect(JSON.parse(await run("/bin/sh", ["-c", fill(connections!)], { KEY: key }))).toEqual([{ tenantId: "t", tenantName: "Org A" }]);
    expect(JSON.parse(await run("/bin/sh", ["-c", fill(invoices!)], { KEY: key }))).toEqual({ Invoices: [] });
    const token = (await f.store.tokens.getToken(f.connectionId))!.accessToken;
    expect(api.requests.slice(before).map((r) => [r.url, r.headers.authorization, r.headers["xero-tenant-id"], r.headers.accept])).toEqual([
      ["/connections", `Bearer ${token}`, undefined, "*/*"],
      ["/api.xro/2.0/Invoices?page=1", `Bearer ${token}`, f.tenantId, "application/json"],
    ]);
  });

  it("runs the createXeroFetch example", async () => {
    const source = fill(docSnippet("docs/proxy.md", "proxy-fetch")).replace(
      '"@tokenbroker/client"',
      JSON.stringify(pathToFileURL(CLIENT_ENTRY).href),
    );
    const js = ts.transpileModule(source, { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
    const dir = tempDir();
    try {
      const file = join(dir.path, "proxy-fetch.mjs");
      writeFileSync(file, js);
      const out = await run(process.execPath, [file], { TOKENBROKER_API_KEY: key });
      expect(out.trim()).toBe('200 {"Invoices":[]}');
    } finally {
      dir.cleanup();
    }
  });
});
