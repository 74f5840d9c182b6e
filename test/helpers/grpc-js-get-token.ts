import { fromBinary, toBinary, create, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  GetTokenRequestSchema,
  GetTokenResponseSchema,
  type GetTokenRequest,
  type GetTokenResponse,
} from "../../gen/ts/tokenbroker/v1/token_service_pb.js";

const definition = {
  GetToken: {
    path: "/tokenbroker.v1.TokenService/GetToken",
    requestStream: false,
    responseStream: false,
    requestSerialize: (m: GetTokenRequest) => Buffer.from(toBinary(GetTokenRequestSchema, m)),
    requestDeserialize: (b: Buffer) => fromBinary(GetTokenRequestSchema, b),
    responseSerialize: (m: GetTokenResponse) => Buffer.from(toBinary(GetTokenResponseSchema, m)),
    responseDeserialize: (b: Buffer) => fromBinary(GetTokenResponseSchema, b),
  },
} satisfies grpc.ServiceDefinition;
const Client = grpc.makeGenericClientConstructor(definition, "TokenService");

/** A `@grpc/grpc-js` client of GetToken only (an implementation independent of connect-es). */
export interface GrpcJsGetToken {
  /** Resolves with the status code (0 = OK) and, on success, the response. */
  getToken(
    init: MessageInitShape<typeof GetTokenRequestSchema>,
    metadata?: Record<string, string>,
  ): Promise<{ code: number; response?: GetTokenResponse; details?: string }>;
  close(): void;
}

/** Connects to `target` (`host:port`) with the given channel credentials. */
export function grpcJsGetToken(target: string, credentials: grpc.ChannelCredentials, options: grpc.ChannelOptions = {}): GrpcJsGetToken {
  const client = new Client(target, credentials, options) as unknown as grpc.Client & {
    GetToken(
      req: GetTokenRequest,
      md: grpc.Metadata,
      opts: grpc.CallOptions,
      cb: (e: grpc.ServiceError | null, res?: GetTokenResponse) => void,
    ): void;
  };
  return {
    getToken(init, metadata = {}) {
      const md = new grpc.Metadata();
      for (const [k, v] of Object.entries(metadata)) md.set(k, v);
      return new Promise((resolve) =>
        client.GetToken(create(GetTokenRequestSchema, init), md, { deadline: Date.now() + 10_000 }, (e, res) =>
          resolve(e ? { code: e.code, details: e.details } : { code: 0, ...(res ? { response: res } : {}) }),
        ),
      );
    },
    close: () => client.close(),
  };
}
