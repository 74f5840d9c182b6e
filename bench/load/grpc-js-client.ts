import { create, fromBinary, toBinary, type MessageInitShape } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  GetTokenRequestSchema,
  GetTokenResponseSchema,
  type GetTokenRequest,
  type GetTokenResponse,
} from "../../gen/ts/tokenbroker/v1/token_service_pb.js";

const getTokenMethod: grpc.MethodDefinition<GetTokenRequest, GetTokenResponse> = {
  path: "/tokenbroker.v1.TokenService/GetToken",
  requestStream: false,
  responseStream: false,
  requestSerialize: (m) => Buffer.from(toBinary(GetTokenRequestSchema, m)),
  requestDeserialize: (b) => fromBinary(GetTokenRequestSchema, b),
  responseSerialize: (m) => Buffer.from(toBinary(GetTokenResponseSchema, m)),
  responseDeserialize: (b) => fromBinary(GetTokenResponseSchema, b),
};

/** GetToken over `@grpc/grpc-js` (its own HTTP/2 channel), with protobuf-es codecs. */
export interface GrpcJsGetToken {
  getToken(init: MessageInitShape<typeof GetTokenRequestSchema>): Promise<GetTokenResponse>;
  close(): void;
}

/** A grpc-js client of `url` (e.g. `http://127.0.0.1:PORT`), one channel. */
export function createGrpcJsGetToken(url: string, headers: Record<string, string> = {}): GrpcJsGetToken {
  const metadata = new grpc.Metadata();
  for (const [name, value] of Object.entries(headers)) metadata.set(name, value);
  const client = new grpc.Client(new URL(url).host, grpc.credentials.createInsecure(), {
    // A channel of its own, not shared with other clients of the same target.
    "grpc.use_local_subchannel_pool": 1,
  });
  return {
    getToken(init) {
      const request = create(GetTokenRequestSchema, init);
      return new Promise((resolve, reject) => {
        client.makeUnaryRequest(
          getTokenMethod.path,
          getTokenMethod.requestSerialize,
          getTokenMethod.responseDeserialize,
          request,
          metadata,
          (err, res) => (err ? reject(err) : resolve(res!)),
        );
      });
    },
    close: () => client.close(),
  };
}
