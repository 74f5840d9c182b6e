import {
  HEADER_TIMEOUT,
  IDLE_TIMEOUT,
  type LIMIT_SETTINGS,
  MAX_CONCURRENT_STREAMS,
  MAX_CONNECTION_BUFFER_KIB,
  MAX_CONNECTIONS_PER_ADDRESS,
  REQUEST_TIMEOUT,
} from "../settings/limit-settings.js";
import { readSetting, type FlagOptions, type SettingsSource } from "../settings/setting.js";
import type { ConnectionLimits } from "../server/connection-limits.js";

type LimitValues = { [K in keyof FlagOptions<typeof LIMIT_SETTINGS>]?: string | undefined };

/** Serve's per-client limits from its flags and `TOKENBROKER_*` variables (a flag wins); a bad value is a ConfigError. */
export function limitsFromFlags(values: LimitValues, env: NodeJS.ProcessEnv): ConnectionLimits {
  const source: SettingsSource = { flags: values, env };
  return {
    maxConcurrentStreams: readSetting(MAX_CONCURRENT_STREAMS, source),
    maxBufferedBytes: 1024 * readSetting(MAX_CONNECTION_BUFFER_KIB, source),
    headersTimeoutMs: Math.round(1000 * readSetting(HEADER_TIMEOUT, source)),
    idleTimeoutMs: Math.round(1000 * readSetting(IDLE_TIMEOUT, source)),
    maxConnectionsPerAddress: readSetting(MAX_CONNECTIONS_PER_ADDRESS, source),
    requestTimeoutMs: Math.round(1000 * readSetting(REQUEST_TIMEOUT, source)),
  };
}
