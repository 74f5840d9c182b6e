import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";

/** One request a {@link RecordingApi} received. */
export interface RecordedRequest {
  method: string;
  /** The request target as received. */
  url: string;
  headers: IncomingHttpHeaders;
  body: Buffer;
  /** True once the request's connection closed before the API answered it (the caller's abort reached it). */
  aborted: boolean;
}

/** A stand-in for Xero's API on loopback that records every request and answers as the test says. */
export interface RecordingApi {
  /** e.g. `http://127.0.0.1:PORT` */
  readonly url: string;
  readonly requests: RecordedRequest[];
  /** Answers a request; default: 200 JSON echoing the method, target and body size. */
  handler: (req: IncomingMessage, res: ServerResponse, recorded: RecordedRequest) => void;
  /** Requests in progress now. */
  readonly inFlight: number;
  close(): Promise<void>;
}

/** Starts a {@link RecordingApi}: it reads each request's body whole, records it, then calls `handler`. */
export async function startRecordingApi(): Promise<RecordingApi> {
  let inFlight = 0;
  const api: RecordingApi = {
    url: "",
    requests: [],
    handler: (_req, res, r) => {
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify({ method: r.method, url: r.url, bytes: r.body.length }));
    },
    get inFlight() {
      return inFlight;
    },
    close: async () => {},
  };
  const server = createServer(async (req, res) => {
    inFlight++;
    res.once("close", () => inFlight--);
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const recorded: RecordedRequest = {
      method: req.method ?? "",
      url: req.url ?? "",
      headers: req.headers,
      body: Buffer.concat(chunks),
      aborted: false,
    };
    res.once("close", () => {
      if (!res.writableFinished) recorded.aborted = true;
    });
    api.requests.push(recorded);
    api.handler(req, res, recorded);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  Object.assign(api, {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  });
  return api;
}
