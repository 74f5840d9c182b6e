/**
 * Configuration of `tokenbroker serve` and `import`: command-line flags with
 * environment-variable fallbacks, checked up front so that a mistake gives one
 * clear line instead of a stack trace.
 */

/** A configuration mistake; the CLI prints the message alone and exits 2. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

/** Where to listen. */
export interface ListenAddress {
  host: string;
  port: number;
}

/** Everything needed to reach the identity server. */
export interface UpstreamConfig {
  issuer: URL;
  connectionsUrl: URL;
  clientId: string;
  clientSecret: string;
  allowInsecureIssuer: boolean;
  timeoutMs: number;
}

/** Default listen address: loopback only. */
export const DEFAULT_LISTEN = "127.0.0.1:50051";
/** Default database file, relative to the working directory. */
export const DEFAULT_DB = "tokenbroker.db";
const DEFAULT_ISSUER = "https://identity.xero.com";
const DEFAULT_CONNECTIONS_URL = "https://api.xero.com/connections";

/** Parses `host:port`, `[v6]:port` or a bare port (on 127.0.0.1). */
export function parseListen(value: string): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(value) ?? /^()()(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new ConfigError(`--listen ${JSON.stringify(value)} is not HOST:PORT (e.g. 127.0.0.1:50051 or [::1]:50051)`);
  }
  const host = m[1] ?? (m[2] === "" || m[2] === undefined ? "127.0.0.1" : m[2]);
  return { host, port };
}

/** Reads the upstream settings from the environment. */
export function upstreamFromEnv(env: NodeJS.ProcessEnv): UpstreamConfig {
  const allowInsecureIssuer = isTrue(env["TOKENBROKER_ALLOW_INSECURE_ISSUER"]);
  const issuer = parseUrl("TOKENBROKER_ISSUER", env["TOKENBROKER_ISSUER"] ?? DEFAULT_ISSUER, allowInsecureIssuer);
  const connectionsUrl = parseUrl(
    "TOKENBROKER_CONNECTIONS_URL",
    env["TOKENBROKER_CONNECTIONS_URL"] ?? DEFAULT_CONNECTIONS_URL,
    allowInsecureIssuer,
  );
  const clientId = env["TOKENBROKER_CLIENT_ID"]?.trim();
  const clientSecret = env["TOKENBROKER_CLIENT_SECRET"]?.trim();
  if (!clientId) throw new ConfigError("TOKENBROKER_CLIENT_ID is not set: set it to your Xero app's client id");
  if (!clientSecret) {
    throw new ConfigError("TOKENBROKER_CLIENT_SECRET is not set: set it to your Xero app's client secret");
  }
  const timeoutMs = positiveNumber("TOKENBROKER_UPSTREAM_TIMEOUT_MS", env["TOKENBROKER_UPSTREAM_TIMEOUT_MS"], 10_000);
  return { issuer, connectionsUrl, clientId, clientSecret, allowInsecureIssuer, timeoutMs };
}

/** A positive number from a flag or variable, or the default when unset. */
export function positiveNumber(name: string, value: string | undefined, fallback: number): number {
  if (value === undefined || value === "") return fallback;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new ConfigError(`${name} must be a positive number, not ${JSON.stringify(value)}`);
  return n;
}

function parseUrl(name: string, value: string, allowInsecure: boolean): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new ConfigError(`${name} ${JSON.stringify(value)} is not a URL`);
  }
  if (url.protocol === "http:" && !allowInsecure) {
    throw new ConfigError(`${name} uses http://; set TOKENBROKER_ALLOW_INSECURE_ISSUER=1 to allow it (local tests only)`);
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new ConfigError(`${name} must be an https:// URL`);
  }
  return url;
}

function isTrue(value: string | undefined): boolean {
  return value !== undefined && ["1", "true", "yes", "on"].includes(value.toLowerCase());
}
