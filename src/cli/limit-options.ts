import { ConfigError, positiveNumber } from "../config.js";
import { DEFAULT_CONNECTION_LIMITS as D, type ConnectionLimits } from "../server/connection-limits.js";

/** The `parseArgs` options of serve's per-client limits. */
export const LIMIT_FLAGS = {
  "max-concurrent-streams": { type: "string" },
  "max-connection-buffer-kib": { type: "string" },
  "header-timeout": { type: "string" },
  "idle-timeout": { type: "string" },
  "max-connections-per-address": { type: "string" },
} as const;

/** `--help` lines of {@link LIMIT_FLAGS}. */
export const LIMIT_HELP = `  --max-concurrent-streams N  open HTTP/2 streams per connection
                         [TOKENBROKER_MAX_CONCURRENT_STREAMS] (default ${D.maxConcurrentStreams})
  --max-connection-buffer-kib KIB  request bytes an HTTP/2 connection may hold on its open
                         streams; the stream going over it is reset (ENHANCE_YOUR_CALM)
                         [TOKENBROKER_MAX_CONNECTION_BUFFER_KIB] (default ${D.maxBufferedBytes / 1024})
  --header-timeout SECONDS  close a connection that sent no complete request headers
                         this long after it opened [TOKENBROKER_HEADER_TIMEOUT_SECONDS]
                         (default ${D.headersTimeoutMs / 1000})
  --idle-timeout SECONDS  close a connection without traffic this long, unless it carries
                         an authenticated WatchToken stream [TOKENBROKER_IDLE_TIMEOUT_SECONDS]
                         (default ${D.idleTimeoutMs / 1000})
  --max-connections-per-address N  open connections per client IP address; more are closed
                         at once [TOKENBROKER_MAX_CONNECTIONS_PER_ADDRESS] (default ${D.maxConnectionsPerAddress})`;

type LimitValues = { [K in keyof typeof LIMIT_FLAGS]?: string | undefined };

/** Serve's per-client limits from its flags and `TOKENBROKER_*` variables (a flag wins); a bad value is a ConfigError. */
export function limitsFromFlags(values: LimitValues, env: NodeJS.ProcessEnv): ConnectionLimits {
  const count = (flag: keyof LimitValues, variable: string, fallback: number) => {
    const n = positiveNumber(`--${flag}`, values[flag] ?? env[variable], fallback);
    if (!Number.isInteger(n)) throw new ConfigError(`--${flag} must be a whole number, not ${n}`);
    return n;
  };
  const seconds = (flag: keyof LimitValues, variable: string, fallbackMs: number) =>
    Math.round(1000 * positiveNumber(`--${flag}`, values[flag] ?? env[variable], fallbackMs / 1000));
  const streams = count("max-concurrent-streams", "TOKENBROKER_MAX_CONCURRENT_STREAMS", D.maxConcurrentStreams);
  if (streams > 2 ** 31 - 1) throw new ConfigError(`--max-concurrent-streams must be at most ${2 ** 31 - 1}, not ${streams}`);
  return {
    maxConcurrentStreams: streams,
    maxBufferedBytes: 1024 * count("max-connection-buffer-kib", "TOKENBROKER_MAX_CONNECTION_BUFFER_KIB", D.maxBufferedBytes / 1024),
    headersTimeoutMs: seconds("header-timeout", "TOKENBROKER_HEADER_TIMEOUT_SECONDS", D.headersTimeoutMs),
    idleTimeoutMs: seconds("idle-timeout", "TOKENBROKER_IDLE_TIMEOUT_SECONDS", D.idleTimeoutMs),
    maxConnectionsPerAddress: count("max-connections-per-address", "TOKENBROKER_MAX_CONNECTIONS_PER_ADDRESS", D.maxConnectionsPerAddress),
  };
}
