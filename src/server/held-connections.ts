import * as http2 from "node:http2";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createContextKey, type StreamRequest, type UnaryRequest } from "@connectrpc/connect";

/**
 * Connections kept open past their idle timeout: those carrying an
 * authenticated WatchToken stream, which sends nothing for hours between two
 * tokens, or a GetToken long poll while it waits (up to 60 s). The owner is
 * the HTTP/2 session, or the socket of an HTTP/1.1 connection.
 */
const holds = new WeakMap<object, number>();

const OWNER = Symbol("tokenbroker.heldOwner");
type Until = { once(event: "close", listener: () => void): unknown; [OWNER]?: object };

/** Keeps `owner`'s connection past its idle timeout until `until` closes. */
export function holdUntilClosed(owner: object, until: { once(event: "close", listener: () => void): unknown }): void {
  const u = until as Until;
  if (u[OWNER]) return; // held already
  holds.set(owner, (holds.get(owner) ?? 0) + 1);
  u[OWNER] = owner;
  u.once("close", release); // a shared function: a stream open for hours holds no closure for this
}

function release(this: Until): void {
  const owner = this[OWNER];
  if (!owner) return;
  const left = (holds.get(owner) ?? 1) - 1;
  if (left > 0) holds.set(owner, left);
  else holds.delete(owner);
}

/** True while `owner` carries a held stream (see {@link holdUntilClosed}). */
export function isHeld(owner: object): boolean {
  return holds.has(owner);
}

const HOLD = Symbol("tokenbroker.holdConnection");
type Holdable = { [HOLD]?: () => void };

/** Holds the connection of a request (see {@link holdUntilClosed}) until its response closes. */
export function holdRequest(req: IncomingMessage | http2.Http2ServerRequest, res: ServerResponse | http2.Http2ServerResponse): void {
  if (req instanceof http2.Http2ServerRequest) holdUntilClosed(req.stream.session ?? req.stream, req.stream);
  else holdUntilClosed(req.socket, res as ServerResponse);
}

/** Lets a Connect call hold its connection: `holdKey`'s context value, set by {@link holdableContext}. */
export const holdKey = createContextKey<(() => void) | undefined>(undefined, { description: "tokenbroker hold connection" });

/** Marks a request so that {@link holdableContext} can find its response. */
export function markHoldable(req: IncomingMessage | http2.Http2ServerRequest, res: ServerResponse | http2.Http2ServerResponse): void {
  (req as Holdable)[HOLD] = () => holdRequest(req, res);
}

/** The hold function of a request marked by {@link markHoldable}. */
export function holdOf(req: IncomingMessage | http2.Http2ServerRequest): (() => void) | undefined {
  return (req as Holdable)[HOLD];
}

/**
 * Holds the connection of a WatchToken call that passed the guard (see
 * `guardInterceptor`'s `onAuthorized`): it may send nothing for hours.
 */
export function holdWatchStream(req: UnaryRequest | StreamRequest): void {
  if (req.stream && req.method.name === "WatchToken" && req.service.typeName === "tokenbroker.v1.TokenService") {
    req.contextValues.get(holdKey)?.();
  }
}
