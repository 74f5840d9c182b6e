/**
 * A throwaway PostgreSQL server, for the tests (test/helpers/postgres-server.ts)
 * and the bench alike: Debian's `postgresql-15` on a temporary data directory
 * and a free port of 127.0.0.1.
 */
import { spawnSync } from "node:child_process";
import { chownSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";

/** Where Debian's `postgresql-15` puts the server's programs. */
export const POSTGRES_BIN = "/usr/lib/postgresql/15/bin";

/** The package to install when {@link postgresInstalled} says no. */
export const POSTGRES_PACKAGE = { what: "PostgreSQL 15", install: "apt-get install postgresql-15" } as const;

/** The command that exits 0 when the server's programs are installed. */
export const POSTGRES_PROBE: readonly [string, ...string[]] = [join(POSTGRES_BIN, "postgres"), "--version"];

/** Whether Debian's `postgresql-15` is installed here (its server answers `--version`). */
export function postgresInstalled(): boolean {
  const [file, ...args] = POSTGRES_PROBE;
  return spawnSync(file, args, { stdio: "ignore", timeout: 20_000 }).status === 0;
}

/** A PostgreSQL server of one's own (a test file's, a bench run's), on a temporary data directory and a free port on 127.0.0.1. */
export interface PostgresServer {
  /** e.g. 54329. */
  readonly port: number;
  /** A URL of database `database` on this server, as `--db` takes it (user `postgres`, trust authentication: any password is accepted). */
  url(database: string, password?: string): string;
  /** Creates a new, empty database and returns its URL. */
  createDatabase(): Promise<string>;
  /** Stops the server (fast shutdown: open connections are ended), keeping its data. */
  stop(): void;
  /** Starts it again on the same port and data. */
  start(): void;
  /** Stops it and removes its data directory. */
  destroy(): void;
}

let databases = 0;

/**
 * Initialises and starts a PostgreSQL 15 server: `initdb` on a temporary
 * directory (trust authentication on loopback, fsync off: test data only),
 * then `pg_ctl start` on a free port of 127.0.0.1. The server refuses to run
 * as root, so as root it runs as the `postgres` user, which owns the
 * directory. Call `destroy()` when done (an exit of this process stops it too).
 */
export async function startPostgres(): Promise<PostgresServer> {
  const dir = mkdtempSync(join(tmpdir(), "tokenbroker-pg-"));
  const data = join(dir, "data");
  const asRoot = process.getuid?.() === 0;
  if (asRoot) {
    const ids = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
    const gids = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
    chownSync(dir, Number(ids.stdout.trim()), Number(gids.stdout.trim()));
  }
  const run = (program: string, args: string[]) => {
    const [file, argv] = asRoot
      ? ["runuser", ["-u", "postgres", "--", join(POSTGRES_BIN, program), ...args]]
      : [join(POSTGRES_BIN, program), args];
    const result = spawnSync(file, argv, { encoding: "utf8", timeout: 60_000, cwd: dir });
    if (result.status !== 0) {
      throw new Error(`${program} ${args.join(" ")} failed (${result.status ?? result.signal}): ${result.stderr || result.stdout}`);
    }
  };
  run("initdb", ["-D", data, "-U", "postgres", "-A", "trust", "--no-sync", "--no-instructions", "-E", "UTF8"]);
  const port = await freePort();
  const options = [
    `-p ${port}`,
    `-k ${dir}`, // the Unix socket in the test's own directory, not /var/run/postgresql
    "-c listen_addresses=127.0.0.1",
    "-c fsync=off",
    "-c synchronous_commit=off",
    "-c full_page_writes=off",
    "-c max_connections=300",
  ].join(" ");
  let running = false;
  const server: PostgresServer = {
    port,
    url: (database, password) =>
      `postgres://postgres${password === undefined ? "" : `:${encodeURIComponent(password)}`}@127.0.0.1:${port}/${database}`,
    async createDatabase() {
      const name = `t${process.pid}_${++databases}`;
      const admin = new pg.Client({ connectionString: server.url("postgres") });
      await admin.connect();
      try {
        await admin.query(`CREATE DATABASE ${name}`);
      } finally {
        await admin.end();
      }
      return server.url(name);
    },
    start() {
      run("pg_ctl", ["start", "-D", data, "-w", "-t", "60", "-l", join(dir, "server.log"), "-o", options]);
      running = true;
    },
    stop() {
      if (!running) return;
      running = false;
      run("pg_ctl", ["stop", "-D", data, "-m", "fast", "-w", "-t", "60"]);
    },
    destroy() {
      process.off("exit", onExit);
      try {
        server.stop();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
  const onExit = () => {
    if (running)
      spawnSync(
        asRoot ? "runuser" : join(POSTGRES_BIN, "pg_ctl"),
        asRoot
          ? ["-u", "postgres", "--", join(POSTGRES_BIN, "pg_ctl"), "stop", "-D", data, "-m", "immediate"]
          : ["stop", "-D", data, "-m", "immediate"],
      );
    rmSync(dir, { recursive: true, force: true });
  };
  process.on("exit", onExit);
  server.start();
  return server;
}

/** A TCP port nobody listens on at this moment, on 127.0.0.1. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address() as { port: number };
      probe.close(() => resolve(port));
    });
  });
}
