/** Settings of the server process: where it listens, its database, its logs and how it stops. */
import { ConfigError } from "./config-error.js";
import type { Setting, SettingSection, ValueType } from "./setting.js";
import { filePath, notOff, oneOf, positiveNumberValue, wholeNumberValue } from "./value-types.js";

/** Where to listen. */
export interface ListenAddress {
  host: string;
  port: number;
}

/** Parses `host:port`, `[v6]:port` or a bare port (on 127.0.0.1); `name` is the flag in the error. */
export function parseListen(value: string, name = "--listen"): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value) ?? /^()()(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new ConfigError(`${name} ${JSON.stringify(value)} is not HOST:PORT (e.g. 127.0.0.1:50051 or [::1]:50051)`);
  }
  const host = m[1] ?? (m[2] === "" || m[2] === undefined ? "127.0.0.1" : m[2]);
  return { host, port };
}

const listenAddress: ValueType<ListenAddress> = {
  accepts: "HOST:PORT, [IPv6]:PORT, or a port (on 127.0.0.1)",
  parse: (text, ctx) => parseListen(text.trim(), ctx.name),
};

/** The server section. */
export const SERVER: SettingSection = {
  title: "Server",
  about:
    "Where `tokenbroker serve` listens, what it logs, and how long it takes to stop: see [Operations](operations.md#running-it) " +
    "and [Shutdown](high-availability.md#shutdown).",
};

/** The database section. */
export const DATABASE: SettingSection = {
  title: "Database",
  about:
    "The database that holds the tokens, API keys and audit log; every command that reads or writes them takes it: a SQLite " +
    "file, which several processes on one host may share ([High availability](high-availability.md#several-processes-on-one-database)) " +
    "and `tokenbroker backup` copies ([Backups](operations.md#backups)), or a PostgreSQL database, which brokers on several hosts " +
    "share ([Several hosts](high-availability.md#several-hosts-on-postgresql)).",
};

/** Default database file, relative to the working directory. */
export const DEFAULT_DB = "tokenbroker.db";

/** `--listen`. */
export const LISTEN = {
  section: SERVER,
  flag: "--listen",
  placeholder: "HOST:PORT",
  env: "TOKENBROKER_LISTEN",
  type: listenAddress,
  default: "127.0.0.1:50051",
  description: "address to listen on; `[::1]:50051` for IPv6, `0.0.0.0:50051` for every interface",
} satisfies Setting<ListenAddress>;

/** `--db`: every command that opens the database takes it. */
export const DB = {
  section: DATABASE,
  flag: "--db",
  placeholder: "PATH|URL",
  env: "TOKENBROKER_DB",
  type: filePath,
  default: DEFAULT_DB,
  description:
    "SQLite database file, created if missing, or `postgres://user:password@host:port/database` (also `postgresql://`, " +
    "with libpq's parameters such as `?sslmode=verify-full`) for PostgreSQL; the schema is created or migrated on open. " +
    "A password in the URL is never shown",
} satisfies Setting<string>;

/** `--db-pool-size`: connections of each broker process to PostgreSQL. */
export const DB_POOL_SIZE = {
  section: DATABASE,
  flag: "--db-pool-size",
  placeholder: "N",
  env: "TOKENBROKER_DB_POOL_SIZE",
  type: wholeNumberValue(1000),
  default: "10",
  description:
    "PostgreSQL only: connections each `serve` process keeps in its pool, plus one that listens for the other brokers' changes; " +
    "a cached GetToken uses none",
} satisfies Setting<number>;

/** `--shutdown-grace`, in seconds. */
export const SHUTDOWN_GRACE = {
  section: SERVER,
  flag: "--shutdown-grace",
  placeholder: "SECONDS",
  env: "TOKENBROKER_SHUTDOWN_GRACE_SECONDS",
  type: positiveNumberValue(),
  default: "10",
  description:
    "on SIGTERM or Ctrl-C, exit within this long: a refresh in flight may commit and calls finish until then, " +
    "then its request is abandoned (the next start finishes it)",
} satisfies Setting<number>;

/** `--log-level`. */
export const LOG_LEVEL = {
  section: SERVER,
  flag: "--log-level",
  placeholder: "LEVEL",
  env: "TOKENBROKER_LOG_LEVEL",
  type: oneOf(["debug", "info", "warn", "error"], ["silent", "trace", "fatal"]),
  default: "info",
  description: "the least severe log lines written",
} satisfies Setting<string>;

/** `--log-format`. */
export const LOG_FORMAT = {
  section: SERVER,
  flag: "--log-format",
  placeholder: "FORMAT",
  env: "TOKENBROKER_LOG_FORMAT",
  type: oneOf(["json", "pretty"]),
  default: "json",
  description: "json is one JSON object a line, for a log shipper; pretty is `HH:MM:SS.mmm LEVEL msg key=value…`, for people",
} satisfies Setting<"json" | "pretty">;

/** The diagnostics section. */
export const DIAGNOSTICS: SettingSection = {
  title: "Diagnostics",
  about: "What every command prints when something unexpected happens.",
};

/** `TOKENBROKER_DEBUG`: the stack of an unexpected error. */
export const DEBUG = {
  section: DIAGNOSTICS,
  env: "TOKENBROKER_DEBUG",
  type: notOff,
  unset: "off",
  description: "print the stack trace of an unexpected error (exit status 1), for a bug report",
} satisfies Setting<boolean>;

/** Every setting of this section, in `--help` order. */
export const SERVER_SETTINGS = [LISTEN, DB, DB_POOL_SIZE, SHUTDOWN_GRACE, LOG_LEVEL, LOG_FORMAT] as const;
