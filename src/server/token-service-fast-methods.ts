import { create, toBinary, type DescMessage, type MessageShape } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  GetTokenRequestSchema,
  GetTokenResponseSchema,
  type GetTokenResponse,
  ReportExpiredRequestSchema,
  ReportExpiredResponseSchema,
  TokenService,
  WatchTokenRequestSchema,
  WatchTokenResponseSchema,
} from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import type { TokenBroker, TokenSubscription } from "../broker/token-broker.js";
import { parseAccessToken, parseGetToken, parseSelector } from "../service/parse-request.js";
import { toConnectError } from "../service/to-connect-error.js";
import { toProtoToken, toWatchResponse } from "../service/to-proto.js";
import type { TokenRecord } from "../token-set.js";
import type { FastAnswer, FastMethod, FastServerStreamingMethod, FastUnaryMethod } from "./grpc-fast-path.js";

/** Options for {@link tokenServiceFastMethods}. */
export interface TokenServiceFastMethodsOptions {
  broker: TokenBroker;
  /** Gets anything unexpected the broker threw (the caller sees INTERNAL). */
  onInternalError(e: unknown): void;
}

/** A response message with its binary serialization (see {@link FastAnswer}). */
function answerOf<O extends DescMessage>(
  schema: O,
  message: MessageShape<O>,
  token: { readonly connectionId: string } | undefined,
): FastAnswer {
  return { message, bytes: toBinary(schema, message), token };
}

/**
 * `tokenbroker.v1.TokenService` for the fast paths (`grpc-fast-path.ts`, and
 * its unary methods for `connect-unary-fast-path.ts`),
 * keyed by request path: the same validation, broker calls and error codes
 * as `TokenServiceImpl` (the guard's steps run around them in the fast path,
 * as around the Connect service), with each stored token serialized once (a
 * cached GetToken sends the bytes it sent the previous caller).
 */
export function tokenServiceFastMethods(options: TokenServiceFastMethodsOptions): Map<string, FastMethod> {
  const getTokenAnswers = new WeakMap<TokenRecord, FastAnswer>();
  const watchAnswers = new WeakMap<TokenRecord, FastAnswer>();
  const cached = (cache: WeakMap<TokenRecord, FastAnswer>, record: TokenRecord, message: () => GetTokenResponse) => {
    let answer = cache.get(record);
    if (!answer) {
      answer = answerOf(GetTokenResponseSchema, message(), record);
      cache.set(record, answer);
    }
    return answer;
  };
  const fail = (e: unknown) => toConnectError(e, options.onInternalError);

  const getToken: FastUnaryMethod<typeof GetTokenRequestSchema> = {
    kind: "unary",
    input: GetTokenRequestSchema,
    // Promise callbacks, not an async function: a long poll waiting up to a minute holds no suspended frame.
    handle(request, call) {
      let got: Promise<TokenRecord>;
      try {
        const { selector, minValidForMs, newerThan, waitMs } = parseGetToken(request);
        // A long poll may send nothing for up to a minute: its connection is not idle meanwhile.
        if (waitMs > 0) call.holdConnection();
        const owner = call.guarded.principal?.keyHash;
        got = options.broker.getToken(selector, { minValidForMs, newerThan, waitMs, signal: call.signal, owner });
      } catch (e) {
        return Promise.reject(fail(e));
      }
      return got.then(
        (record) => cached(getTokenAnswers, record, () => create(GetTokenResponseSchema, { token: toProtoToken(record) })),
        (e: unknown) => {
          throw fail(e);
        },
      );
    },
  };

  const reportExpired: FastUnaryMethod<typeof ReportExpiredRequestSchema> = {
    kind: "unary",
    input: ReportExpiredRequestSchema,
    async handle(request, call) {
      try {
        const selector = parseSelector(request.selector);
        const accessToken = parseAccessToken(request.accessToken);
        const { token, refreshed } = await options.broker.reportExpired(selector, accessToken, { signal: call.signal });
        return answerOf(ReportExpiredResponseSchema, create(ReportExpiredResponseSchema, { token: toProtoToken(token), refreshed }), token);
      } catch (e) {
        throw fail(e);
      }
    },
  };

  /** The one answer of `record` for every WatchToken stream (a message without a token when it is not active). */
  const watchAnswer = (record: TokenRecord): FastAnswer => {
    let answer = watchAnswers.get(record);
    if (!answer) {
      answer = answerOf(WatchTokenResponseSchema, toWatchResponse(record), record.state === "active" ? record : undefined);
      watchAnswers.set(record, answer);
    }
    return answer;
  };

  // Written as plain promise callbacks: a stream open for hours holds a listener and a few callbacks, not
  // suspended async functions (npm run bench: memory per subscriber).
  const watchToken: FastServerStreamingMethod<typeof WatchTokenRequestSchema> = {
    kind: "server_streaming",
    input: WatchTokenRequestSchema,
    handle(request, call) {
      let subscription: TokenSubscription;
      call.holdConnection(); // an authenticated stream: it may send nothing for hours
      try {
        // Pushed, not pulled: a publish writes the one cached frame to each subscriber's stream at once.
        subscription = options.broker.subscribe(
          parseSelector(request.selector),
          (record) => void call.send(watchAnswer(record)),
          call.guarded.principal?.keyHash,
        );
      } catch (e) {
        return Promise.reject(fail(e));
      }
      // The client going away (or its deadline) ends the subscription.
      if (call.signal.aborted) subscription.close();
      else call.signal.addEventListener("abort", () => subscription.close());
      return subscription.ended.then(
        () => {
          // The broker ended the stream: it is shutting down. Clients reconnect. (Its key revoked: rejected.)
          if (!call.signal.aborted) throw new ConnectError("tokenbroker is shutting down; reconnect", Code.Unavailable);
        },
        (e: unknown) => {
          throw fail(e);
        },
      );
    },
  };

  const path = (name: string) => `/${TokenService.typeName}/${name}`;
  return new Map<string, FastMethod>([
    [path("GetToken"), getToken],
    [path("ReportExpired"), reportExpired],
    [path("WatchToken"), watchToken],
  ]);
}
