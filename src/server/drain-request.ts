import * as http2 from "node:http2";
import type { DualHandler } from "./one-port-server.js";

/**
 * Wraps a handler so that an HTTP/2 request whose response finished before its
 * body was read (a request over the size limit, answered RESOURCE_EXHAUSTED)
 * has the rest of its body discarded. Otherwise the stream stays half-open,
 * the client is blocked by flow control, and shutdown waits for it.
 */
export function drainUnreadBodies(handler: DualHandler): DualHandler {
  return (req, res) => {
    if (req instanceof http2.Http2ServerRequest) {
      const stream = req.stream;
      stream.once("finish", () => {
        if (stream.readableEnded || stream.destroyed) return;
        // The compatibility layer's own listener would pause the stream again.
        stream.removeAllListeners("data");
        stream.on("data", () => {});
        stream.resume();
      });
    }
    handler(req, res);
  };
}
