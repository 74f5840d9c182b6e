import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import {
  ConnectionState,
  TokenSchema,
  WatchTokenResponseSchema,
  type Token,
  type WatchTokenResponse,
} from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import type { ConnectionState as DomainState, TokenRecord } from "../token-set.js";

/** The wire form of a stored token: the access token only, never the refresh or id token. */
export function toProtoToken(record: TokenRecord): Token {
  return create(TokenSchema, {
    accessToken: record.accessToken,
    tokenType: record.tokenType,
    expiresAt: timestampFromMs(record.expiresAt),
    connectionId: record.connectionId,
    tenantIds: record.tenantIds,
    scopes: record.scopes,
    version: BigInt(record.version),
  });
}

/** The wire form of a connection state. */
export function toProtoState(state: DomainState): ConnectionState {
  switch (state) {
    case "active":
      return ConnectionState.ACTIVE;
    case "needs_reauthorization":
      return ConnectionState.NEEDS_REAUTHORIZATION;
  }
}

/** A WatchToken message for a stored record: its state, and its token while the connection is active. */
export function toWatchResponse(record: TokenRecord): WatchTokenResponse {
  const state = toProtoState(record.state);
  return create(WatchTokenResponseSchema, { state, ...(state === ConnectionState.ACTIVE ? { token: toProtoToken(record) } : {}) });
}
