import type { StreamRequest, UnaryRequest } from "@connectrpc/connect";
import { createAsyncIterable } from "@connectrpc/connect/protocol";

/** The `selector` oneof every TokenService request carries. */
export type RequestSelector =
  | { case: "tenantId"; value: string }
  | { case: "connectionId"; value: string }
  | { case: undefined; value?: undefined };

/**
 * The request's (first) message and a request to pass on. A server-streaming
 * request carries its one message as a stream, which can be read only once:
 * it is read here (at most two messages, the second only to keep protocol
 * errors as they are) and replayed to the handler.
 */
export async function firstMessage(
  req: UnaryRequest | StreamRequest,
): Promise<{ message: unknown; request: UnaryRequest | StreamRequest }> {
  if (!req.stream) return { message: req.message, request: req };
  const messages: unknown[] = [];
  for await (const m of req.message) {
    messages.push(m);
    if (messages.length === 2) break;
  }
  const request = { ...req, message: createAsyncIterable(messages) } as StreamRequest;
  return { message: messages.length === 1 ? messages[0] : undefined, request };
}

/** The selector of a TokenService request message, if it has one. */
export function selectorOf(message: unknown): RequestSelector {
  const selector = (message as { selector?: RequestSelector } | undefined)?.selector;
  return selector && (selector.case === "tenantId" || selector.case === "connectionId") && typeof selector.value === "string"
    ? selector
    : { case: undefined };
}
