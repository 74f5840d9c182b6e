import { Code, ConnectError } from "@connectrpc/connect";
import type { Duration } from "@bufbuild/protobuf/wkt";
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
  if (!duration) return undefined;
  const ms = Number(duration.seconds) * 1000 + Math.trunc(duration.nanos / 1_000_000);
  if (!Number.isFinite(ms) || ms < 0 || duration.nanos < 0) {
    throw new ConnectError("min_valid_for must not be negative", Code.InvalidArgument);
  }
  return ms;
}

/** ReportExpired's `access_token`: the token the caller's API call was refused with; it must be set. */
export function parseAccessToken(accessToken: string): string {
  if (accessToken === "") throw new ConnectError("access_token is empty", Code.InvalidArgument);
  return accessToken;
}
