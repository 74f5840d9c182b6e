import { Code, ConnectError } from "@connectrpc/connect";
import type { Duration } from "@bufbuild/protobuf/wkt";
import type { GetTokenRequest } from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import { MAX_LONG_POLL_WAIT_MS } from "../broker/long-poll.js";
import type { Selector } from "../broker/token-broker.js";

/** Longest tenant or connection id accepted (Xero's are 36-character UUIDs). */
const MAX_ID_LENGTH = 128;
const ID_PATTERN = /^[\x21-\x7e]+$/;

type SelectorField = { case: "tenantId"; value: string } | { case: "connectionId"; value: string } | { case: undefined; value?: undefined };

/** Checks the request's `selector` oneof: exactly one id, printable, not too long. */
export function parseSelector(selector: SelectorField): Selector {
  if (selector.case === undefined) {
    throw new ConnectError("name the token set: set exactly one of tenant_id or connection_id", Code.InvalidArgument);
  }
  const field = selector.case === "tenantId" ? "tenant_id" : "connection_id";
  const value = selector.value;
  if (value.length === 0) throw new ConnectError(`${field} is empty`, Code.InvalidArgument);
  if (value.length > MAX_ID_LENGTH) {
    throw new ConnectError(`${field} is longer than ${MAX_ID_LENGTH} characters`, Code.InvalidArgument);
  }
  if (!ID_PATTERN.test(value)) {
    throw new ConnectError(`${field} may contain only printable ASCII characters`, Code.InvalidArgument);
  }
  return selector.case === "tenantId" ? { tenantId: value } : { connectionId: value };
}

/** `min_valid_for` in ms, or undefined when unset. Negative durations are rejected. */
export function parseMinValidFor(duration: Duration | undefined): number | undefined {
  return durationMs("min_valid_for", duration);
}

/** A duration field in ms, or undefined when unset; negative ones are INVALID_ARGUMENT. */
function durationMs(field: string, duration: Duration | undefined): number | undefined {
  if (!duration) return undefined;
  const ms = Number(duration.seconds) * 1000 + Math.trunc(duration.nanos / 1_000_000);
  if (!Number.isFinite(ms) || ms < 0 || duration.nanos < 0) {
    throw new ConnectError(`${field} must not be negative`, Code.InvalidArgument);
  }
  return ms;
}

/** A GetToken request, checked: what `TokenBroker.getToken` takes. */
export interface ParsedGetToken {
  selector: Selector;
  minValidForMs: number | undefined;
  /** Long poll: the version the caller holds (undefined: unset, never waits). */
  newerThan: number | undefined;
  /** Long poll: how long to wait, ms (0: no wait). */
  waitMs: number;
}

/**
 * Checks a GetToken request, for every path that serves it (the Connect
 * service and the fast paths): the selector, `min_valid_for`, and the long
 * poll's `newer_than` and `wait` (at most 60 s: more is INVALID_ARGUMENT, not
 * cut, so that a client whose own timeouts were set for a longer wait learns
 * of it at once). A long poll waits only with both fields set.
 */
export function parseGetToken(req: GetTokenRequest): ParsedGetToken {
  const selector = parseSelector(req.selector);
  const minValidForMs = parseMinValidFor(req.minValidFor);
  let waitMs = durationMs("wait", req.wait) ?? 0;
  if (waitMs > MAX_LONG_POLL_WAIT_MS) {
    throw new ConnectError(`wait is longer than ${MAX_LONG_POLL_WAIT_MS / 1000}s`, Code.InvalidArgument);
  }
  if (req.newerThan > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new ConnectError("newer_than is not a token version", Code.InvalidArgument);
  }
  const newerThan = req.newerThan === 0n ? undefined : Number(req.newerThan);
  if (newerThan === undefined) waitMs = 0;
  return { selector, minValidForMs, newerThan, waitMs };
}

/** ReportExpired's `access_token`: the token the caller's API call was refused with; it must be set. */
export function parseAccessToken(accessToken: string): string {
  if (accessToken === "") throw new ConnectError("access_token is empty", Code.InvalidArgument);
  return accessToken;
}
