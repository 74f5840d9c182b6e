/** Settings of what one client may hold on the broker's port. */
import { DEFAULT_CONNECTION_LIMITS as D } from "../server/connection-limits.js";
import type { Setting, SettingSection } from "./setting.js";
import { positiveNumberValue, wholeNumberValue } from "./value-types.js";

/** The limits section. */
export const LIMITS: SettingSection = {
  title: "Limits per client",
  about:
    "What one client may hold on the port: streams, request bytes, time without headers or traffic, time to send a request, connections per address. " +
    "What each protects, and what the log says when one is reached: [Limits per client](security.md#limits-per-client).",
};

/** `--max-concurrent-streams`. */
export const MAX_CONCURRENT_STREAMS = {
  section: LIMITS,
  flag: "--max-concurrent-streams",
  placeholder: "N",
  env: "TOKENBROKER_MAX_CONCURRENT_STREAMS",
  type: wholeNumberValue(2 ** 31 - 1),
  default: String(D.maxConcurrentStreams),
  description:
    "open HTTP/2 streams per connection, advertised in SETTINGS_MAX_CONCURRENT_STREAMS: clients queue their calls; " +
    "one that opens more anyway gets GOAWAY and its connection closed",
} satisfies Setting<number>;

/** `--max-connection-buffer-kib`. */
export const MAX_CONNECTION_BUFFER_KIB = {
  section: LIMITS,
  flag: "--max-connection-buffer-kib",
  placeholder: "KIB",
  env: "TOKENBROKER_MAX_CONNECTION_BUFFER_KIB",
  type: wholeNumberValue(),
  default: String(D.maxBufferedBytes / 1024),
  description: "request bytes an HTTP/2 connection may hold on its open streams; the stream going over it is reset (ENHANCE_YOUR_CALM)",
} satisfies Setting<number>;

/** `--header-timeout`, in seconds. */
export const HEADER_TIMEOUT = {
  section: LIMITS,
  flag: "--header-timeout",
  placeholder: "SECONDS",
  env: "TOKENBROKER_HEADER_TIMEOUT_SECONDS",
  type: positiveNumberValue(),
  default: String(D.headersTimeoutMs / 1000),
  description: "close a connection that sent no complete request headers this long after it opened",
} satisfies Setting<number>;

/** `--idle-timeout`, in seconds. */
export const IDLE_TIMEOUT = {
  section: LIMITS,
  flag: "--idle-timeout",
  placeholder: "SECONDS",
  env: "TOKENBROKER_IDLE_TIMEOUT_SECONDS",
  type: positiveNumberValue(),
  default: String(D.idleTimeoutMs / 1000),
  description:
    "close a connection without traffic this long (HTTP/2: GOAWAY first), unless it carries an authenticated WatchToken stream or a waiting long poll (GetToken with wait)",
} satisfies Setting<number>;

/** `--max-connections-per-address`. */
export const MAX_CONNECTIONS_PER_ADDRESS = {
  section: LIMITS,
  flag: "--max-connections-per-address",
  placeholder: "N",
  env: "TOKENBROKER_MAX_CONNECTIONS_PER_ADDRESS",
  type: wholeNumberValue(),
  default: String(D.maxConnectionsPerAddress),
  description: "open connections per client IP address; more are closed at once",
} satisfies Setting<number>;

/** `--request-timeout`, in seconds. */
export const REQUEST_TIMEOUT = {
  section: LIMITS,
  flag: "--request-timeout",
  placeholder: "SECONDS",
  env: "TOKENBROKER_REQUEST_TIMEOUT_SECONDS",
  type: positiveNumberValue(),
  default: String(D.requestTimeoutMs / 1000),
  description:
    "drop a request whose body has not wholly arrived this long after its headers (HTTP/2: the stream is reset; HTTP/1.1: the connection is closed)",
} satisfies Setting<number>;

/** Every setting of this section, in `--help` order. */
export const LIMIT_SETTINGS = [
  MAX_CONCURRENT_STREAMS,
  MAX_CONNECTION_BUFFER_KIB,
  HEADER_TIMEOUT,
  IDLE_TIMEOUT,
  REQUEST_TIMEOUT,
  MAX_CONNECTIONS_PER_ADDRESS,
] as const;
