import type { DualHandler } from "./one-port-server.js";

/** The longest timer Node holds (2^31 - 1 ms, about 24.8 days): a longer one fires after 1 ms instead. */
export const MAX_DEADLINE_MS = 2 ** 31 - 1;

const GRPC_UNITS_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 1e-3, n: 1e-6 };

/** A valid `grpc-timeout` value longer than {@link MAX_DEADLINE_MS} cut to it; any other value as it is. */
export function clampGrpcTimeout(value: string): string {
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  return m && Number(m[1]) * GRPC_UNITS_MS[m[2]!]! > MAX_DEADLINE_MS ? `${Math.floor(MAX_DEADLINE_MS / 1000)}S` : value;
}

/** A valid `connect-timeout-ms` value longer than {@link MAX_DEADLINE_MS} cut to it; any other value as it is. */
export function clampConnectTimeout(value: string): string {
  return /^\d{1,10}$/.test(value) && Number(value) > MAX_DEADLINE_MS ? String(MAX_DEADLINE_MS) : value;
}

/**
 * Wraps a handler so that a deadline longer than a timer can hold is cut to
 * {@link MAX_DEADLINE_MS} before Connect reads it: gRPC allows `grpc-timeout:
 * 99999999H` (11,000 years) and Connect `connect-timeout-ms` up to 10 digits,
 * and Connect arms a timer with it, which Node clamps to 1 ms (with a warning
 * on standard error each time): the call ended at once, a WatchToken stream
 * with status OK. Other values, valid or not, are left to Connect.
 */
export function clampDeadlines(handler: DualHandler): DualHandler {
  return (req, res) => {
    const grpc = req.headers["grpc-timeout"];
    if (typeof grpc === "string") req.headers["grpc-timeout"] = clampGrpcTimeout(grpc);
    const connect = req.headers["connect-timeout-ms"];
    if (typeof connect === "string") req.headers["connect-timeout-ms"] = clampConnectTimeout(connect);
    return handler(req, res);
  };
}
