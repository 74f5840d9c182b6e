import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  GetTokenResponseSchema,
  ReportExpiredResponseSchema,
  type GetTokenRequest,
  type GetTokenResponse,
  type ReportExpiredRequest,
  type ReportExpiredResponse,
  type TokenService,
  type WatchTokenRequest,
  type WatchTokenResponse,
} from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import type { TokenBroker } from "../broker/token-broker.js";
import { principalKey } from "../server/guard-interceptor.js";
import { holdKey } from "../server/held-connections.js";
import type { TokenRecord } from "../token-set.js";
import { parseAccessToken, parseGetToken, parseSelector } from "./parse-request.js";
import { toConnectError } from "./to-connect-error.js";
import { toProtoToken, toWatchResponse } from "./to-proto.js";

/**
 * `tokenbroker.v1.TokenService` on top of a {@link TokenBroker}: validates
 * requests, converts to and from the wire types, and maps broker errors to
 * gRPC status codes. Holds no state of its own but the GetToken response of
 * each stored token, made once for every caller of that token.
 */
export class TokenServiceImpl implements ServiceImpl<typeof TokenService> {
  /** The store hands out one frozen record per token version; its response message is made once. */
  private readonly responses = new WeakMap<TokenRecord, GetTokenResponse>();

  constructor(
    private readonly broker: TokenBroker,
    private readonly onInternalError: (e: unknown) => void = () => {},
  ) {}

  async getToken(req: GetTokenRequest, ctx: HandlerContext): Promise<GetTokenResponse> {
    try {
      const { selector, minValidForMs, newerThan, waitMs } = parseGetToken(req);
      // A long poll may send nothing for up to a minute: its connection is not idle meanwhile.
      if (waitMs > 0) ctx.values.get(holdKey)?.();
      const owner = ctx.values.get(principalKey)?.keyHash;
      const token = await this.broker.getToken(selector, { minValidForMs, newerThan, waitMs, signal: ctx.signal, owner });
      let response = this.responses.get(token);
      if (!response) {
        response = create(GetTokenResponseSchema, { token: toProtoToken(token) });
        this.responses.set(token, response);
      }
      return response;
    } catch (e) {
      throw toConnectError(e, this.onInternalError);
    }
  }

  async reportExpired(req: ReportExpiredRequest, ctx: HandlerContext): Promise<ReportExpiredResponse> {
    try {
      const selector = parseSelector(req.selector);
      const accessToken = parseAccessToken(req.accessToken);
      const { token, refreshed } = await this.broker.reportExpired(selector, accessToken, { signal: ctx.signal });
      return create(ReportExpiredResponseSchema, { token: toProtoToken(token), refreshed });
    } catch (e) {
      throw toConnectError(e, this.onInternalError);
    }
  }

  async *watchToken(req: WatchTokenRequest, ctx: HandlerContext): AsyncGenerator<WatchTokenResponse> {
    try {
      const selector = parseSelector(req.selector);
      // The key's hash: the stream ends when the key is revoked (see TokenBrokerOptions.watchGate).
      const owner = ctx.values.get(principalKey)?.keyHash;
      for await (const record of this.broker.watch(selector, ctx.signal, owner)) yield toWatchResponse(record);
    } catch (e) {
      throw toConnectError(e, this.onInternalError);
    }
    if (!ctx.signal.aborted) {
      // The broker ended the stream: it is shutting down. Clients reconnect.
      throw new ConnectError("tokenbroker is shutting down; reconnect", Code.Unavailable);
    }
  }
}
