import type { IncomingMessage, ServerResponse } from "node:http";
import { admitAppCall } from "./api-gate.js";
import type { FakeXeroContext } from "./context.js";
import { sendJson } from "./http-util.js";
import { listConnections } from "./resource-endpoints.js";

/** `GET /connections[?authEventId=...]`: the tenants of the access token's grant; counts against the app's minute limit only. */
export async function handleListConnections(ctx: FakeXeroContext, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const call = await admitAppCall(ctx, req, res);
  if (call) sendJson(res, 200, listConnections(call.grant, url), call.headers);
}
