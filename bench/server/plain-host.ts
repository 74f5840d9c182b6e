import * as http from "node:http";
import * as http2 from "node:http2";
import type { AddressInfo } from "node:net";
import { create, fromJson, toBinary, type JsonValue } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import * as grpc from "@grpc/grpc-js";
import { GetTokenResponseSchema, TokenSchema, TokenService } from "../../gen/ts/tokenbroker/v1/token_service_pb.js";

/** The plain servers' base URLs, one per wire protocol and HTTP version. */
export interface PlainServerUrls {
  /** `@grpc/grpc-js` over h2c. */
  grpc: string;
  /** connect-node on `http2.createServer` (h2c): Connect JSON and binary, and gRPC. */
  connectH2: string;
  /** connect-node on `http.createServer`: Connect JSON and binary over HTTP/1.1. */
  connectH1: string;
}

/** The plain servers; see {@link startPlainServers}. */
export interface PlainServers {
  readonly urls: PlainServerUrls;
  close(): Promise<void>;
}

/**
 * The fastest servers a user could write without the broker, each answering
 * GetToken with the same constant token (`token` is its proto JSON: the bytes
 * the broker sends): a plain `@grpc/grpc-js` server for gRPC, and plain
 * connect-node (`connectNodeAdapter` with a one-line GetToken, no options) on
 * Node's HTTP/2 and HTTP/1.1 servers for Connect. What the broker is measured
 * against per protocol (`npm run bench`, scenario "cached").
 */
export async function startPlainServers(token: JsonValue): Promise<PlainServers> {
  const response = create(GetTokenResponseSchema, { token: fromJson(TokenSchema, token) });
  const responseBytes = Buffer.from(toBinary(GetTokenResponseSchema, response));

  // grpc-js, with pass-through serialization: it sends the constant bytes, as a hand-written server would.
  const grpcServer = new grpc.Server();
  const method = TokenService.method.getToken;
  grpcServer.addService(
    {
      getToken: {
        path: `/${TokenService.typeName}/${method.name}`,
        requestStream: false,
        responseStream: false,
        requestSerialize: (b: Buffer) => b,
        requestDeserialize: (b: Buffer) => b,
        responseSerialize: (b: Buffer) => b,
        responseDeserialize: (b: Buffer) => b,
      },
    },
    {
      getToken: (_call: grpc.ServerUnaryCall<Buffer, Buffer>, callback: grpc.sendUnaryData<Buffer>) => callback(null, responseBytes),
    },
  );
  const grpcPort = await new Promise<number>((resolve, reject) =>
    grpcServer.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, port) => (e ? reject(e) : resolve(port))),
  );

  const routes = (router: ConnectRouter) => {
    router.service(TokenService, { getToken: async () => response });
  };
  const h2 = http2.createServer(connectNodeAdapter({ routes }));
  const h1 = http.createServer(connectNodeAdapter({ routes }));
  const sessions = new Set<http2.ServerHttp2Session>();
  h2.on("session", (s) => {
    sessions.add(s);
    s.once("close", () => sessions.delete(s));
  });
  await Promise.all([h2, h1].map((s) => new Promise<void>((resolve) => s.listen(0, "127.0.0.1", resolve))));
  const url = (s: http.Server | http2.Http2Server) => `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
  return {
    urls: { grpc: `http://127.0.0.1:${grpcPort}`, connectH2: url(h2), connectH1: url(h1) },
    async close() {
      grpcServer.forceShutdown();
      h1.closeAllConnections();
      for (const s of sessions) s.destroy();
      await Promise.all([new Promise((r) => h2.close(r)), new Promise((r) => h1.close(r))]);
    },
  };
}
