/**
 * The store keeps its drivers: no module outside `src/store` imports
 * better-sqlite3, pg, or a SQLite or PostgreSQL part of the store; the
 * interfaces of the store's parts carry no driver's type; and nothing
 * reachable from an opened store (of either kind) is a database connection, a
 * pool or a prepared statement.
 */
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { openStore } from "../src/store/open-store.js";
import pg from "pg";
import { useStoreBackends } from "./helpers/store-backends.js";

const backends = useStoreBackends();

/** The database drivers: only src/store may import them. */
const DRIVERS = ["better-sqlite3", "pg"];

const root = fileURLToPath(new URL("..", import.meta.url));
const src = join(root, "src");

/** Every TypeScript file under `dir`, relative to the repository. */
function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith(".ts"))
    .map((e) => relative(root, join(e.parentPath, e.name)));
}

/** The module specifiers a file imports (static, dynamic and `require`). */
function importsOf(file: string): string[] {
  const text = readFileSync(join(root, file), "utf8");
  const found = [...text.matchAll(/(?:from\s+|import\s*\(\s*|require\s*\(\s*)["']([^"']+)["']/g)].map((m) => m[1]!);
  return found;
}

/** The interfaces of the store's parts: what every implementation (SQLite today, PostgreSQL next) implements. */
const INTERFACES = [
  "src/store/store.ts",
  "src/store/token-set-store.ts",
  "src/store/connection-store.ts",
  "src/store/consent-store.ts",
  "src/store/api-key-store.ts",
  "src/store/audit-store.ts",
  "src/store/pending-authorization.ts",
];

describe("the store's boundary", () => {
  const all = sources(src);
  const outside = all.filter((f) => !f.startsWith("src/store/"));

  it("finds the sources it checks (the check itself can fail)", () => {
    expect(outside.length).toBeGreaterThan(50);
    expect(importsOf("src/store/sqlite-database.ts")).toContain("better-sqlite3");
    for (const f of INTERFACES) expect(all).toContain(f);
  });

  it("no module outside src/store imports better-sqlite3, pg, or a SQLite or PostgreSQL part of the store", () => {
    expect(importsOf("src/store/postgres-database.ts")).toContain("pg");
    const offenders = outside.flatMap((f) =>
      importsOf(f)
        .filter((spec) => DRIVERS.includes(spec) || /(^|\/)store\/(sqlite|postgres)-[^/]*$/.test(spec.replace(/\.js$/, "")))
        .map((spec) => `${f} imports ${spec}`),
    );
    expect(offenders).toEqual([]);
  });

  it("the interfaces of the store's parts name no SQLite or PostgreSQL type", () => {
    const offenders = INTERFACES.flatMap((f) => {
      const text = readFileSync(join(root, f), "utf8");
      const leaks = importsOf(f).filter((spec) => DRIVERS.includes(spec) || /sqlite|postgres|read-cache|migration/.test(spec));
      if (/\bDatabase\b|\bStatement\b|\bPool\b|\bPoolClient\b|\bClient\b/.test(text.replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, "")))
        leaks.push("a Database or Statement type");
      return leaks.map((l) => `${f}: ${l}`);
    });
    expect(offenders).toEqual([]);
  });

  it.each(backends)(
    "nothing reachable from an opened $name store is a database connection, a pool or a prepared statement",
    async (backend) => {
      if (backend.skip) return;
      const store = await openStore(await backend.location());
      try {
        const statementClass = (() => {
          const db = new Database(":memory:");
          try {
            return db.prepare("SELECT 1").constructor;
          } finally {
            db.close();
          }
        })();
        const seen = new Set<unknown>();
        const handles: string[] = [];
        const visit = (value: unknown, path: string, depth: number): void => {
          if (value === null || (typeof value !== "object" && typeof value !== "function") || seen.has(value) || depth > 6) return;
          seen.add(value);
          if (value instanceof Database || value instanceof statementClass || value instanceof pg.Pool || value instanceof pg.Client)
            handles.push(path);
          // Own properties and those of the prototypes (getters included), as any caller could read them.
          for (
            let o: object | null = value as object;
            o && o !== Object.prototype && o !== Function.prototype;
            o = Object.getPrototypeOf(o)
          ) {
            for (const name of Object.getOwnPropertyNames(o)) {
              if (name === "constructor" || name === "prototype" || name === "caller" || name === "arguments") continue;
              let child: unknown;
              try {
                child = (value as Record<string, unknown>)[name];
              } catch {
                continue;
              }
              visit(child, `${path}.${name}`, depth + 1);
            }
          }
        };
        visit(store, "store", 0);
        expect(seen.size).toBeGreaterThan(10); // it walked the parts and their methods
        expect(handles).toEqual([]);
      } finally {
        await store.close();
      }
    },
  );
});
