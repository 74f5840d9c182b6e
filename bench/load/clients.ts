import { createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";
import { TokenService } from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import { createGrpcJsGetToken } from "./grpc-js-client.js";

/** The client stacks the bench measures GetToken with. */
export type ProtocolName = "grpc-js" | "connect-binary-h2" | "connect-json-h1";

/** Label of each protocol in the table. */
export const PROTOCOL_LABELS: Record<ProtocolName, string> = {
  "grpc-js": "gRPC (@grpc/grpc-js)",
  "connect-binary-h2": "Connect binary, HTTP/2",
  "connect-json-h1": "Connect JSON, HTTP/1.1",
};

/** Names a token set, as the load generator asks for it. */
export type BenchSelector = { case: "tenantId"; value: string } | { case: "connectionId"; value: string };

/** Asks for a token once; resolves with its version, rejects on any error. */
export type GetTokenCall = (selector: BenchSelector) => Promise<bigint>;

/**
 * A GetToken caller over `protocol`. One client per call of this function:
 * gRPC and Connect binary share one HTTP/2 connection among all callers of
 * the client; Connect JSON uses Node's keep-alive agent (one HTTP/1.1
 * connection per concurrent caller).
 */
export function createGetTokenCall(
  protocol: ProtocolName,
  baseUrl: string,
  headers: Record<string, string> = {},
): { call: GetTokenCall; close(): void } {
  if (protocol === "grpc-js") {
    const client = createGrpcJsGetToken(baseUrl, headers);
    return {
      call: async (selector) => version(await client.getToken({ selector })),
      close: () => client.close(),
    };
  }
  const transport =
    protocol === "connect-binary-h2"
      ? createConnectTransport({ baseUrl, httpVersion: "2", useBinaryFormat: true })
      : createConnectTransport({ baseUrl, httpVersion: "1.1", useBinaryFormat: false });
  const client = createClient(TokenService, transport);
  return { call: async (selector) => version(await client.getToken({ selector }, { headers })), close: () => {} };
}

/** A TokenService client over gRPC (connect-node), on an HTTP/2 connection of its own. */
export function createGrpcClient(baseUrl: string) {
  return createClient(TokenService, createGrpcTransport({ baseUrl }));
}

function version(res: { token?: { version: bigint; accessToken: string } | undefined }): bigint {
  if (!res.token || res.token.accessToken === "") throw new Error("GetToken answered without a token");
  return res.token.version;
}
