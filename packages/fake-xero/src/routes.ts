import type { IncomingMessage, ServerResponse } from "node:http";
import type { FakeXeroContext } from "./context.js";
import { handleAuthorizeGet, handleAuthorizePost } from "./authorize-endpoint.js";
import { openidConfiguration, PATHS } from "./discovery.js";
import { sendJson, sendText } from "./http-util.js";
import { accountingRoute } from "./accounting-endpoints.js";
import { handleListConnections } from "./connections-endpoint.js";
import { handleDeleteConnection, handleUserinfo } from "./resource-endpoints.js";
import { handleRevocation, handleToken } from "./token-endpoint.js";

type Handler = (req: IncomingMessage, res: ServerResponse, url: URL) => void | Promise<void>;

/**
 * Creates the fake's request handler for node:http: routes by path and
 * method, answers 404 for unknown paths and 405 for wrong methods. A handler
 * that throws gets a 500; nothing is ever logged.
 */
export function createFakeXeroHandler(ctx: FakeXeroContext): (req: IncomingMessage, res: ServerResponse) => void {
  const routes = new Map<string, Partial<Record<string, Handler>>>([
    [PATHS.discovery, { GET: (_q, res) => sendJson(res, 200, openidConfiguration(ctx.issuer, ctx.scopes)) }],
    [PATHS.jwks, { GET: (_q, res) => sendJson(res, 200, ctx.signer.jwks()) }],
    [
      PATHS.authorize,
      { GET: (req, res, url) => handleAuthorizeGet(ctx, req, res, url), POST: (req, res) => handleAuthorizePost(ctx, req, res) },
    ],
    [PATHS.token, { POST: (req, res) => handleToken(ctx, req, res) }],
    [PATHS.revocation, { POST: (req, res) => handleRevocation(ctx, req, res) }],
    [PATHS.userinfo, { GET: (req, res) => handleUserinfo(ctx, req, res) }],
    [PATHS.connections, { GET: (req, res, url) => handleListConnections(ctx, req, res, url) }],
  ]);

  const route = (path: string): Partial<Record<string, Handler>> | undefined => {
    const exact = routes.get(path);
    if (exact) return exact;
    const accounting = accountingRoute(ctx, path);
    if (accounting) return accounting;
    const id = path.startsWith(`${PATHS.connections}/`) ? path.slice(PATHS.connections.length + 1) : "";
    if (!id || id.includes("/")) return undefined;
    return { DELETE: (req, res) => handleDeleteConnection(ctx, req, res, decodeURIComponent(id)) };
  };

  return (req, res) => {
    const url = new URL(req.url ?? "/", ctx.issuer);
    const methods = route(url.pathname);
    const handler = methods?.[req.method ?? "GET"];
    let done: void | Promise<void>;
    try {
      if (!methods) done = sendJson(res, 404, { error: "not_found" });
      else if (!handler) done = sendText(res, 405, "", { Allow: Object.keys(methods).join(", ") });
      else done = handler(req, res, url);
    } catch {
      done = sendJson(res, 500, { error: "server_error" });
    }
    void Promise.resolve(done).catch(() => sendJson(res, 500, { error: "server_error" }));
  };
}
