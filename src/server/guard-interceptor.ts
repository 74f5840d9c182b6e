import { createContextKey, type Interceptor, type StreamRequest, type UnaryRequest } from "@connectrpc/connect";
import type { Principal } from "../auth/api-key.js";
import { firstMessage } from "../auth/first-message.js";
import { protocolOf } from "../metrics/served-metrics.js";
import type { CallGuard, GuardedCall } from "./call-guard.js";

/** The authenticated caller of an RPC, for handlers (`ctx.values.get(principalKey)`). */
export const principalKey = createContextKey<Principal | undefined>(undefined, { description: "tokenbroker principal" });

/**
 * The guarded call a request's headers started before Connect read its body
 * (see `guardBeforeBody`): the interceptor carries it on instead of starting
 * another.
 */
export const guardedCallKey = createContextKey<GuardedCall | undefined>(undefined, { description: "tokenbroker guarded call" });

/** Services a guard covers by default. */
export const TOKEN_SERVICE = "tokenbroker.v1.TokenService";

/**
 * The Connect side of a {@link CallGuard}: one interceptor that runs every
 * step of the guard on each call of `services` (default the TokenService),
 * as the gRPC fast path runs them: the headers' checks (unless
 * `guardBeforeBody` ran them already), the request's checks, one `sent` per
 * response message, `ended` once with the call's error.
 */
export function guardInterceptor(
  guard: CallGuard,
  services: readonly string[] = [TOKEN_SERVICE],
  /** Told of each call that passed the guard's checks, before its handler runs (see `holdWatchStream`). */
  onAuthorized?: (req: UnaryRequest | StreamRequest) => void,
): Interceptor {
  const covered = new Set(services);
  return (next) => async (req) => {
    if (!covered.has(req.service.typeName)) return next(req);
    let call = req.contextValues.get(guardedCallKey);
    if (!call) {
      call = guard.start({
        method: req.method.name,
        protocol: protocolOf(req.header.get("content-type")),
        authorization: req.header.get("authorization") ?? undefined,
      });
      const authenticated = call.authenticate();
      if (authenticated) await authenticated;
    }
    // A unary request's message is at hand; a stream's first message is read (and replayed to the handler).
    const { message, request } = req.stream ? await firstMessage(req) : { message: req.message, request: req };
    const authorized = call.authorize(message);
    if (authorized) await authorized;
    if (call.principal) request.contextValues.set(principalKey, call.principal);
    onAuthorized?.(request);
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(request);
    } catch (e) {
      call.ended(e);
      throw e;
    }
    if (!res.stream) {
      call.sent(tokenOf(res.message));
      call.ended();
      return res;
    }
    return { ...res, message: guardedMessages(call, res.message) };
  };
}

/** A stream's messages, each reported to the guard as it leaves; the call ends with the stream. */
async function* guardedMessages<T>(call: GuardedCall, messages: AsyncIterable<T>): AsyncGenerator<T> {
  let error: unknown;
  try {
    for await (const m of messages) {
      call.sent(tokenOf(m));
      yield m;
    }
  } catch (e) {
    error = e;
    throw e;
  } finally {
    call.ended(error);
  }
}

/** The token a TokenService response message carries, if any. */
export function tokenOf(message: unknown): { connectionId: string } | undefined {
  return (message as { token?: { connectionId: string } } | undefined)?.token;
}
