import { setTimeout as delay } from "node:timers/promises";
import { ConnectError } from "@connectrpc/connect";

/** Reads a server stream in the background, so a test can wait for each message with a timeout. */
export interface StreamReader<T> {
  /** Every message received so far, in order. */
  readonly received: readonly T[];
  /** True once the stream has ended (cleanly or with an error). */
  readonly ended: boolean;
  /** The next message not yet taken; rejects if none arrives within `timeoutMs` or the stream ends first. */
  next(timeoutMs?: number): Promise<T>;
  /** Takes messages until `done(message)` is true; returns all of them. */
  until(done: (message: T) => boolean, timeoutMs?: number): Promise<T[]>;
  /** Waits for the end of the stream; resolves with its error as a ConnectError, or undefined if it ended cleanly. */
  end(timeoutMs?: number): Promise<ConnectError | undefined>;
  /** Cancels the stream from the client side. */
  cancel(): void;
}

/**
 * Opens a stream with an AbortSignal the reader controls and starts reading it.
 * `open` is e.g. `(signal) => client.watchToken(req, { signal })`.
 */
export function readStream<T>(open: (signal: AbortSignal) => AsyncIterable<T>): StreamReader<T> {
  const controller = new AbortController();
  const received: T[] = [];
  let taken = 0;
  let ended = false;
  let error: ConnectError | undefined;
  let wake: (() => void) | undefined;
  const changed = () => {
    const w = wake;
    wake = undefined;
    w?.();
  };

  void (async () => {
    try {
      for await (const message of open(controller.signal)) {
        received.push(message);
        changed();
      }
    } catch (e) {
      error = ConnectError.from(e);
    } finally {
      ended = true;
      changed();
    }
  })();

  /** Waits until `ready()` holds or the timeout passes. */
  async function waitFor(ready: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!ready()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  }

  const reader: StreamReader<T> = {
    get received() {
      return received;
    },
    get ended() {
      return ended;
    },
    async next(timeoutMs = 5000) {
      await waitFor(() => received.length > taken || ended, timeoutMs, "the next stream message");
      if (received.length > taken) return received[taken++]!;
      throw new Error(`the stream ended before the next message${error ? `: [${error.code}] ${error.rawMessage}` : ""}`);
    },
    async until(done, timeoutMs = 5000) {
      const out: T[] = [];
      for (;;) {
        const message = await reader.next(timeoutMs);
        out.push(message);
        if (done(message)) return out;
      }
    },
    async end(timeoutMs = 5000) {
      await waitFor(() => ended, timeoutMs, "the end of the stream");
      return error;
    },
    cancel() {
      controller.abort();
    },
  };
  return reader;
}

/** Polls `check` every 10 ms until it returns true; fails after `timeoutMs`. */
export async function eventually(check: () => boolean, timeoutMs = 3000, what = "condition"): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await delay(10);
  }
}
