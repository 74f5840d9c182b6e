import { timingSafeEqual } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";

/** Largest request body the fake reads; bigger ones get 413. */
export const MAX_BODY_BYTES = 64 * 1024;

/** Reads the request body as UTF-8; undefined when it exceeds {@link MAX_BODY_BYTES}. */
export async function readBody(req: IncomingMessage): Promise<string | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString("utf8");
}

/** Sends `body` as JSON with `status`; a no-op if the client already went away. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.destroyed || res.headersSent) return;
  const text = JSON.stringify(body);
  res.writeHead(status, {
    ...headers,
    "Content-Type": "application/json; charset=utf-8",
    "Content-Length": Buffer.byteLength(text),
  });
  res.end(text);
}

/** Sends a response without a JSON body (e.g. 204, or a bare 503 text). */
export function sendText(res: ServerResponse, status: number, text = "", headers: Record<string, string> = {}): void {
  if (res.destroyed || res.headersSent) return;
  res.writeHead(status, {
    ...headers,
    ...(text ? { "Content-Type": "text/plain; charset=utf-8" } : {}),
    "Content-Length": Buffer.byteLength(text),
  });
  res.end(text);
}

/** A client id and secret. */
export interface ClientCredentials {
  clientId: string;
  clientSecret: string;
}

/**
 * True when a token or revocation request authenticates as `expected`: by
 * HTTP Basic (`client_secret_basic`; id and secret may be form-encoded as
 * RFC 6749 asks, or raw as some SDKs send them) or, when there is no
 * Authorization header, by `client_id`/`client_secret` in the form
 * (`client_secret_post`).
 */
export function authenticateClient(req: IncomingMessage, form: URLSearchParams, expected: ClientCredentials): boolean {
  const auth = req.headers.authorization;
  if (auth !== undefined) {
    const match = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(auth);
    if (!match?.[1]) return false;
    const decoded = Buffer.from(match[1], "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    if (colon < 0) return false;
    const id = decoded.slice(0, colon);
    const secret = decoded.slice(colon + 1);
    return (
      (same(id, expected.clientId) && same(secret, expected.clientSecret)) ||
      (same(formDecode(id), expected.clientId) && same(formDecode(secret), expected.clientSecret))
    );
  }
  const id = form.get("client_id");
  const secret = form.get("client_secret");
  return id !== null && secret !== null && same(id, expected.clientId) && same(secret, expected.clientSecret);
}

/** The bearer token of the Authorization header, if any. */
export function bearerToken(req: IncomingMessage): string | undefined {
  const match = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? "");
  return match?.[1];
}

/** Constant-time string comparison. */
function same(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Undoes application/x-www-form-urlencoded encoding; leaves malformed input as it is. */
function formDecode(value: string): string {
  try {
    return decodeURIComponent(value.replace(/\+/g, " "));
  } catch {
    return value;
  }
}
