import { Code, ConnectError } from "@connectrpc/connect";
import { BrokerError, type BrokerErrorKind } from "../errors.js";
import { StoreUnavailableError } from "../store/store.js";

const codes: Record<BrokerErrorKind, Code> = {
  invalid_argument: Code.InvalidArgument,
  not_found: Code.NotFound,
  needs_reauthorization: Code.FailedPrecondition,
  unavailable: Code.Unavailable,
  misconfigured: Code.Unavailable,
  cancelled: Code.Canceled,
  unreadable: Code.FailedPrecondition,
};

/**
 * Maps whatever the token logic threw to the error a caller sees. Broker
 * errors keep their (secret-free) message; anything unexpected becomes
 * INTERNAL with a generic message, and is handed to `onInternal` for the log.
 */
export function toConnectError(e: unknown, onInternal: (e: unknown) => void): ConnectError {
  if (e instanceof ConnectError) return e;
  if (e instanceof BrokerError) return new ConnectError(e.message, codes[e.kind]);
  // The database is down or cut off (PostgreSQL): worth a retry, and said without a host or a password.
  if (e instanceof StoreUnavailableError)
    return new ConnectError("tokenbroker's database cannot be reached; retry shortly", Code.Unavailable);
  onInternal(e);
  return new ConnectError("internal error in tokenbroker; see its log", Code.Internal);
}
