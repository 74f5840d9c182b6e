import { ConnectError } from "@connectrpc/connect";

/** The error a call rejected with, as a ConnectError (fails the test if the call resolved). */
export async function rejection(call: Promise<unknown>): Promise<ConnectError> {
  try {
    await call;
  } catch (e) {
    return ConnectError.from(e);
  }
  throw new Error("expected the call to fail, but it succeeded");
}
