import * as http from "node:http";
import * as https from "node:https";
import type { OutgoingHttpHeaders } from "node:http";
import { pipeline, type Readable } from "node:stream";

/** How a call to Xero failed before its response headers arrived. */
export type UpstreamFailureKind =
  /** No connection, or it broke before the response headers (answered 502). */
  | "unreachable"
  /** No response headers within the timeout (answered 504). */
  | "timeout"
  /** The caller went away (nothing is answered). */
  | "aborted";

/** A call to Xero that failed before its response headers arrived; the message never holds a header or a body. */
export class UpstreamCallError extends Error {
  override readonly name = "UpstreamCallError";
  constructor(
    readonly kind: UpstreamFailureKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** One request to Xero. */
export interface UpstreamRequest {
  method: string;
  url: URL;
  headers: OutgoingHttpHeaders;
  /** The body: bytes, a stream (sent once), or none. */
  body: Buffer | Readable | undefined;
  /** Aborts the request (and its response) when the caller goes away. */
  signal: AbortSignal;
}

/** Sends requests to Xero over kept-alive connections. */
export interface UpstreamClient {
  /**
   * Sends the request; resolves once the response headers arrive, with the
   * response still streaming (its socket idle timeout still applies: a body
   * that stalls longer than the timeout is cut off). Rejects with
   * {@link UpstreamCallError}.
   */
  send(request: UpstreamRequest): Promise<http.IncomingMessage>;
  /** Closes idle kept-alive connections. */
  close(): void;
}

/** Options for {@link createUpstreamClient}. */
export interface UpstreamClientOptions {
  /** No byte from Xero this long (before or during the response) ends the call, ms. */
  timeoutMs: number;
  /** Connections per origin at most (default 256). */
  maxSockets?: number;
  /** Extra TLS options for an `https:` API (a test's CA). */
  tls?: https.AgentOptions;
}

/** Creates the {@link UpstreamClient} of the proxy: one keep-alive agent per scheme. */
export function createUpstreamClient(options: UpstreamClientOptions): UpstreamClient {
  const agentOptions = { keepAlive: true, maxSockets: options.maxSockets ?? 256, scheduling: "lifo" as const };
  const httpAgent = new http.Agent(agentOptions);
  const httpsAgent = new https.Agent({ ...agentOptions, ...options.tls });
  return {
    send(request) {
      return new Promise((resolve, reject) => {
        const secure = request.url.protocol === "https:";
        const req = (secure ? https : http).request(request.url, {
          method: request.method,
          headers: request.headers,
          agent: secure ? httpsAgent : httpAgent,
          signal: request.signal,
        });
        let answered = false;
        req.setTimeout(options.timeoutMs, () => {
          const e = new UpstreamCallError("timeout", `Xero did not answer within ${options.timeoutMs} ms`);
          if (answered) req.destroy(e);
          else {
            reject(e);
            req.destroy();
          }
        });
        req.once("response", (res) => {
          answered = true;
          resolve(res);
        });
        req.once("error", (e: NodeJS.ErrnoException) => {
          if (answered) return; // the response stream reports it
          if (request.signal.aborted) reject(new UpstreamCallError("aborted", "the caller went away", { cause: e }));
          else reject(new UpstreamCallError("unreachable", `cannot reach Xero's API (${e.code ?? "error"})`, { cause: e }));
        });
        const body = request.body;
        if (body === undefined) req.end();
        else if (Buffer.isBuffer(body)) req.end(body);
        else {
          pipeline(body, req, (e) => {
            if (e && !answered) req.destroy(e);
          });
        }
      });
    },
    close() {
      httpAgent.destroy();
      httpsAgent.destroy();
    },
  };
}
