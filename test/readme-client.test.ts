import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startBroker, tempDir, type BrokerFixture } from "./helpers/broker-fixture.js";
import { startFakeXeroApi, type FakeXeroApi } from "./helpers/fake-xero-api.js";
import { docSnippet } from "./helpers/doc-snippets.js";
import { eventually } from "./helpers/stream-reader.js";

// `npm test` compiles packages/client to its dist/ before vitest runs; run `npm run build` first when running this file alone.
const ROOT = resolve(import.meta.dirname, "..");
const CLIENT = join(ROOT, "packages", "client");
const CLIENT_ENTRY = join(CLIENT, "dist", "index.js");

/** Runs a command to completion (killed after 12 s). */
function run(command: string, args: string[], options: { cwd: string; env?: NodeJS.ProcessEnv }) {
  return new Promise<{ code: number | null; stdout: string; stderr: string; ms: number }>((done) => {
    const started = Date.now();
    const child = spawn(command, args, { cwd: options.cwd, env: options.env ?? { PATH: process.env["PATH"] ?? "" } });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (s: string) => (stdout += s));
    child.stderr.setEncoding("utf8").on("data", (s: string) => (stderr += s));
    const timer = setTimeout(() => child.kill("SIGKILL"), 12_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      done({ code, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** Relative files and bare module names imported (statically) by an ES module and what it imports. */
function importGraph(entry: string): { files: Set<string>; packages: Set<string> } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const visit = (file: string) => {
    if (files.has(file)) return;
    files.add(file);
    const source = readFileSync(file, "utf8");
    for (const m of source.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g)) {
      const spec = (m[1] ?? m[2])!;
      if (spec.startsWith(".")) visit(resolve(dirname(file), spec));
      else packages.add(spec);
    }
  };
  visit(entry);
  return { files, packages };
}

describe("@tokenbroker/client as a package", () => {
  let f: BrokerFixture;
  let api: FakeXeroApi;
  let dir: ReturnType<typeof tempDir>;

  beforeEach(async () => {
    expect(existsSync(CLIENT_ENTRY), "dist/ is built (npm run build)").toBe(true);
    f = await startBroker();
    api = await startFakeXeroApi(() => false);
    dir = tempDir();
  });
  afterEach(async () => {
    await api.close();
    await f.close();
    dir.cleanup();
  });

  it("imports nothing of the server: only Connect, the generated stubs and Node", () => {
    const { files, packages } = importGraph(CLIENT_ENTRY);
    for (const file of files) {
      expect(file.startsWith(join(CLIENT, "dist")), file).toBe(true);
    }
    for (const name of packages) {
      expect(/^(node:|@connectrpc\/connect(-node)?$|@bufbuild\/protobuf(\/|$))/.test(name), name).toBe(true);
    }
    expect(packages.has("@connectrpc/connect")).toBe(true);
    expect(files.has(join(CLIENT, "dist", "gen", "tokenbroker", "v1", "token_service_pb.js"))).toBe(true);
  });

  /**
   * Type-checks a docs example as the main module of a consumer project (tokenbroker in its
   * node_modules, the broker and the Xero API on loopback instead of the URLs shown), runs it,
   * and resolves with what it printed.
   */
  async function runExample(example: string) {
    for (const [from, to] of [
      ["http://127.0.0.1:50051", f.server.url],
      ["https://api.xero.com", api.url],
    ] as const) {
      example = example.replaceAll(from, to);
    }
    expect(example).toContain(f.server.url);
    mkdirSync(join(dir.path, "node_modules", "@tokenbroker"), { recursive: true });
    // The packages as a consumer installs them: @tokenbroker/client, and Connect for the examples that use it directly.
    for (const [name, target] of [
      ["@tokenbroker/client", CLIENT],
      ["@connectrpc", join(ROOT, "node_modules", "@connectrpc")],
    ] as const) {
      if (!existsSync(join(dir.path, "node_modules", name))) symlinkSync(target, join(dir.path, "node_modules", name), "dir");
    }
    writeFileSync(join(dir.path, "package.json"), JSON.stringify({ type: "module", private: true }));
    writeFileSync(join(dir.path, "example.ts"), example);
    writeFileSync(
      join(dir.path, "tsconfig.json"),
      JSON.stringify({
        compilerOptions: {
          target: "ES2022",
          module: "NodeNext",
          moduleResolution: "NodeNext",
          strict: true,
          exactOptionalPropertyTypes: true,
          noUncheckedIndexedAccess: true,
          skipLibCheck: true,
          types: ["node"],
          typeRoots: [join(ROOT, "node_modules", "@types")],
          outDir: "out",
        },
        files: ["example.ts"],
      }),
    );
    const tsc = await run(process.execPath, [join(ROOT, "node_modules", "typescript", "bin", "tsc"), "-p", dir.path], {
      cwd: dir.path,
    });
    expect(tsc.stdout + tsc.stderr).toBe("");
    expect(tsc.code).toBe(0);
    // No process.exit in the examples: the child ends only if close() left nothing open.
    const child = await run(process.execPath, [join(dir.path, "out", "example.js")], {
      cwd: dir.path,
      env: { PATH: process.env["PATH"] ?? "", XERO_TENANT_ID: f.tenantId },
    });
    expect(child.stderr).toBe("");
    expect(child.code).toBe(0);
    expect(child.ms).toBeLessThan(10_000);
    return child;
  }

  it("the client example of docs/clients.md type-checks against the package and runs, then the process exits by itself", async () => {
    const example = docSnippet("docs/clients.md", "ts-client");
    expect(example).toContain('from "@tokenbroker/client"');
    expect(example).toContain("https://api.xero.com");
    const child = await runExample(example);
    const { token } = await f.client().getToken({ selector: { case: "tenantId", value: f.tenantId } });
    expect(child.stdout).toContain(`token version ${token!.version}, expires `);
    expect(child.stdout).toContain("Xero answered 200");
    expect(child.stdout).not.toContain(token!.accessToken);

    expect(api.requests).toHaveLength(1);
    expect(api.requests[0]!.token).toBe(token!.accessToken);
    expect(api.requests[0]!.tenantId).toBe(f.tenantId);
    expect(api.requests[0]!.path).toBe("/api.xro/2.0/Invoices");
    await eventually(() => f.server.broker.hub.size === 0, 3000, "the example's stream to end");
  });

  it("the README's client example calls the Xero API with the broker's token, then the process exits by itself", async () => {
    const child = await runExample(docSnippet("README.md", "ts-client-short"));
    const { token } = await f.client().getToken({ selector: { case: "tenantId", value: f.tenantId } });
    expect(child.stdout).toBe("Xero answered 200\n");
    expect(api.requests.map((r) => [r.path, r.token, r.tenantId])).toEqual([["/api.xro/2.0/Invoices", token!.accessToken, f.tenantId]]);
    await eventually(() => f.server.broker.hub.size === 0, 3000, "the example's stream to end");
  });

  it("the stubs example of docs/clients.md type-checks and gets the token", async () => {
    const child = await runExample(docSnippet("docs/clients.md", "ts-stubs"));
    const { token } = await f.client().getToken({ selector: { case: "tenantId", value: f.tenantId } });
    expect(child.stdout).toBe(`token version ${token!.version} for ${token!.tenantIds.length} tenants\n`);
  });

  it("the xero-node illustration hands the SDK the broker's token and nothing to refresh with", () => {
    const illustration = readFileSync(join(ROOT, "docs", "clients.md"), "utf8");
    expect(illustration).toContain('xero.setTokenSet({ access_token: await tb.getToken(tenantId), token_type: "Bearer" })');
  });
});
