import { create, toBinary } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  GetTokenRequestSchema,
  GetTokenResponseSchema,
  ReportExpiredRequestSchema,
  ReportExpiredResponseSchema,
  TokenService,
  WatchTokenRequestSchema,
  WatchTokenResponseSchema,
} from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import type { TokenBroker, TokenSubscription } from "../broker/token-broker.js";
import type { WireProtocol } from "../metrics/served-metrics.js";
import { parseAccessToken, parseMinValidFor, parseSelector } from "../service/parse-request.js";
import { toConnectError } from "../service/to-connect-error.js";
import { toProtoToken, toWatchResponse } from "../service/to-proto.js";
import type { TokenRecord } from "../token-set.js";
import type { FastCall, FastMethod, FastServerStreamingMethod, FastUnaryMethod } from "./grpc-fast-path.js";
import type { GuardedCall } from "./server-security.js";

/** Options for {@link tokenServiceFastMethods}. */
export interface TokenServiceFastMethodsOptions {
  broker: TokenBroker;
  /** Counts one token delivered (`tokenbroker_tokens_served_total`). */
  countServed(rpc: string, protocol: WireProtocol): void;
  /** Gets anything unexpected the broker threw (the caller sees INTERNAL). */
  onInternalError(e: unknown): void;
  /**
   * Checks and records a call as the Connect interceptors do (API key and
   * scope, audit log, debug line): `ServerSecurity.guardCall`.
   */
  guardCall(method: string, authorization: string | undefined, message: unknown): GuardedCall;
  /**
   * Checks the API key from the headers, before the body is read (`ServerSecurity.authenticate`):
   * absent when the port needs no key.
   */
  authenticate?: ((method: string, authorization: string | undefined) => Promise<void>) | undefined;
}

/**
 * `tokenbroker.v1.TokenService` for the gRPC fast path (`grpc-fast-path.ts`),
 * keyed by request path: the same validation, broker calls, error codes,
 * key and scope checks, audit entries, debug lines and metrics as the
 * Connect service and its interceptors, with each stored token serialized
 * once (a cached GetToken sends the bytes it sent the previous caller).
 */
export function tokenServiceFastMethods(options: TokenServiceFastMethodsOptions): Map<string, FastMethod> {
  const getTokenBytes = new WeakMap<TokenRecord, Uint8Array>();
  const watchBytes = new WeakMap<TokenRecord, Uint8Array>();
  const cached = (cache: WeakMap<TokenRecord, Uint8Array>, record: TokenRecord, encode: () => Uint8Array) => {
    let bytes = cache.get(record);
    if (!bytes) cache.set(record, (bytes = encode()));
    return bytes;
  };
  const fail = (e: unknown) => toConnectError(e, options.onInternalError);

  /** Runs one unary call between the guard's checks, as the interceptors wrap a Connect handler. */
  async function guarded<T>(name: string, call: FastCall, request: unknown, body: (guard: GuardedCall) => Promise<T>): Promise<T> {
    const guard = options.guardCall(name, call.authorization, request);
    await guard.authorize(); // a refusal is audited and logged by the guard itself
    let error: unknown;
    try {
      return await body(guard);
    } catch (e) {
      throw (error = fail(e));
    } finally {
      guard.ended(error);
    }
  }

  const authenticate = options.authenticate;
  const keyOf = (name: string) => authenticate && ((authorization: string | undefined) => authenticate(name, authorization));

  const getToken: FastUnaryMethod<typeof GetTokenRequestSchema> = {
    kind: "unary",
    input: GetTokenRequestSchema,
    authenticate: keyOf("GetToken"),
    handle: (request, call) =>
      guarded("GetToken", call, request, async (guard) => {
        const selector = parseSelector(request.selector);
        const minValidForMs = parseMinValidFor(request.minValidFor);
        const record = await options.broker.getToken(selector, { minValidForMs, signal: call.signal });
        options.countServed("GetToken", "grpc");
        guard.sent(record);
        return cached(getTokenBytes, record, () =>
          toBinary(GetTokenResponseSchema, create(GetTokenResponseSchema, { token: toProtoToken(record) })),
        );
      }),
  };

  const reportExpired: FastUnaryMethod<typeof ReportExpiredRequestSchema> = {
    kind: "unary",
    input: ReportExpiredRequestSchema,
    authenticate: keyOf("ReportExpired"),
    handle: (request, call) =>
      guarded("ReportExpired", call, request, async (guard) => {
        const selector = parseSelector(request.selector);
        const accessToken = parseAccessToken(request.accessToken);
        const { token, refreshed } = await options.broker.reportExpired(selector, accessToken, { signal: call.signal });
        options.countServed("ReportExpired", "grpc");
        guard.sent(token);
        return toBinary(ReportExpiredResponseSchema, create(ReportExpiredResponseSchema, { token: toProtoToken(token), refreshed }));
      }),
  };

  /** The one frame of `record` for every WatchToken stream. */
  const watchFrame = (record: TokenRecord) =>
    cached(watchBytes, record, () => toBinary(WatchTokenResponseSchema, toWatchResponse(record)));
  /** A call's error as its caller sees it, with the call's debug line written. */
  const ended = (guard: GuardedCall, e: unknown) => {
    const error = fail(e);
    guard.ended(error);
    return error;
  };

  // What guarded() does, written as plain promise callbacks: a stream open for hours holds a listener and
  // a few callbacks, not suspended async functions (npm run bench: memory per subscriber).
  const watchToken: FastServerStreamingMethod<typeof WatchTokenRequestSchema> = {
    kind: "server_streaming",
    input: WatchTokenRequestSchema,
    authenticate: keyOf("WatchToken"),
    handle(request, call) {
      // As Connect's interceptors, which see no request message when a stream carried none or two.
      const guard = options.guardCall("WatchToken", call.authorization, call.protocolError ? undefined : request);
      return guard.authorize().then((owner) => {
        let subscription: TokenSubscription;
        call.holdConnection(); // an authenticated stream: it may send nothing for hours
        try {
          if (call.protocolError) throw call.protocolError;
          // Pushed, not pulled: a publish writes the one cached frame to each subscriber's stream at once.
          subscription = options.broker.subscribe(parseSelector(request.selector), (record) => {
            if (record.state === "active") {
              options.countServed("WatchToken", "grpc");
              guard.sent(record);
            }
            void call.send(watchFrame(record));
          }, owner);
        } catch (e) {
          throw ended(guard, e);
        }
        // The client going away ends the subscription.
        if (call.signal.aborted) subscription.close();
        else call.signal.addEventListener("abort", () => subscription.close());
        return subscription.ended.then(
          () => {
            // The broker ended the stream: it is shutting down. Clients reconnect. (Its key revoked: rejected.)
            if (!call.closed) throw ended(guard, new ConnectError("tokenbroker is shutting down; reconnect", Code.Unavailable));
            guard.ended(undefined);
          },
          (e: unknown) => {
            throw ended(guard, e);
          },
        );
      });
    },
  };

  const path = (name: string) => `/${TokenService.typeName}/${name}`;
  return new Map<string, FastMethod>([
    [path("GetToken"), getToken],
    [path("ReportExpired"), reportExpired],
    [path("WatchToken"), watchToken],
  ]);
}
