import { createServer, type IncomingMessage } from "node:http";
import type { AddressInfo } from "node:net";

/** One request the fake API received. */
export interface ApiRequest {
  method: string;
  path: string;
  /** The bearer token sent, if any. */
  token: string | undefined;
  tenantId: string | undefined;
  contentType: string | undefined;
  body: string;
}

/** A stand-in for Xero's accounting API on loopback. */
export interface FakeXeroApi {
  /** e.g. `http://127.0.0.1:PORT` */
  readonly url: string;
  /** Every request so far, in order of arrival. */
  readonly requests: readonly ApiRequest[];
  close(): Promise<void>;
}

/**
 * Starts an API that answers 401 (`TokenExpired`, as Xero) to a bearer token
 * `rejects` returns true for, and 200 `{"ok":true}` to any other.
 */
export async function startFakeXeroApi(rejects: (token: string | undefined) => boolean): Promise<FakeXeroApi> {
  const requests: ApiRequest[] = [];
  const server = createServer(async (req, res) => {
    const request: ApiRequest = {
      method: req.method ?? "",
      path: req.url ?? "",
      token: bearer(req),
      tenantId: header(req, "xero-tenant-id"),
      contentType: header(req, "content-type"),
      body: await readText(req),
    };
    requests.push(request);
    const unauthorized = rejects(request.token);
    res.writeHead(unauthorized ? 401 : 200, {
      "content-type": "application/json",
      ...(unauthorized ? { "www-authenticate": 'Bearer error="invalid_token"' } : {}),
    });
    res.end(JSON.stringify(unauthorized ? { Title: "Unauthorized", Detail: "TokenExpired: token expired" } : { ok: true }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

function header(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  return Array.isArray(value) ? value.join(",") : value;
}

function bearer(req: IncomingMessage): string | undefined {
  return /^Bearer (.+)$/.exec(header(req, "authorization") ?? "")?.[1];
}

async function readText(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}
