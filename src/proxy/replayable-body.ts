import { Readable } from "node:stream";

/** A request body as the proxy sends it: whole in memory (replayable), or the start of it and the rest still streaming. */
export type ProxyBody = { readonly replayable: true; readonly bytes: Buffer } | { readonly replayable: false; readonly stream: Readable };

/**
 * Reads a request body up to `maxBytes`. A body that ends within the bound is
 * held whole, so the call can be sent again after a 401 (a refresh); a longer
 * one stops being read at the bound and is handed on as a stream of what was
 * read and the rest, sent once. Rejects when the request fails or `signal`
 * aborts while reading.
 */
export function readReplayableBody(req: Readable, maxBytes: number, signal: AbortSignal): Promise<ProxyBody> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off("data", onData);
      req.off("end", onEnd);
      req.off("error", onError);
      req.off("close", onClose);
      signal.removeEventListener("abort", onAbort);
    };
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size > maxBytes) {
        req.pause();
        cleanup();
        resolve({ replayable: false, stream: concatStreams(chunks, req) });
      }
    };
    const onEnd = () => {
      cleanup();
      resolve({ replayable: true, bytes: Buffer.concat(chunks, size) });
    };
    const onError = (e: unknown) => {
      cleanup();
      reject(e);
    };
    const onClose = () => {
      if (req.readableEnded) return;
      cleanup();
      reject(new Error("the request was closed before its body ended"));
    };
    const onAbort = () => {
      cleanup();
      reject(signal.reason);
    };
    if (signal.aborted) return onAbort();
    req.on("data", onData);
    req.on("end", onEnd);
    req.on("error", onError);
    req.on("close", onClose);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** The chunks already read, then the rest of `rest`, as one stream (back-pressure kept). */
function concatStreams(head: Buffer[], rest: Readable): Readable {
  return Readable.from(
    (async function* () {
      yield* head;
      for await (const chunk of rest) yield chunk as Buffer;
    })(),
    { objectMode: false },
  );
}
