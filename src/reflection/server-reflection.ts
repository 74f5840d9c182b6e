import { fromBinary, toBinary } from "@bufbuild/protobuf";
import type { ConnectRouter } from "@connectrpc/connect";
import * as v1 from "../../gen/ts/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/ts/grpc/reflection/v1alpha/reflection_pb.js";
import { answerReflection } from "./answer-reflection.js";
import { createDescriptorIndex, type DescriptorIndex } from "./descriptor-index.js";

/**
 * Registers gRPC server reflection on a router, as `grpc.reflection.v1` and
 * the older `grpc.reflection.v1alpha` (which grpcurl and buf curl fall back
 * to), so that clients can list, describe and call the services with no
 * `.proto` at hand. It describes every service registered on the router,
 * itself included, from the descriptors protobuf-es embeds in generated code.
 * Call it after the other services are registered; the index is built at the
 * first request. Bidi streaming: served over HTTP/2 only.
 */
export function addServerReflection(router: ConnectRouter): void {
  let index: DescriptorIndex | undefined;
  const lookup = () => (index ??= createDescriptorIndex(router.handlers.map((h) => h.service)));

  router.service(v1.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) yield answerReflection(lookup(), request);
    },
  });
  // v1alpha is v1 under another package name: the messages are identical on the wire.
  router.service(v1alpha.ServerReflection, {
    async *serverReflectionInfo(requests) {
      for await (const request of requests) {
        const asV1 = fromBinary(v1.ServerReflectionRequestSchema, toBinary(v1alpha.ServerReflectionRequestSchema, request));
        const answer = answerReflection(lookup(), asV1);
        yield fromBinary(v1alpha.ServerReflectionResponseSchema, toBinary(v1.ServerReflectionResponseSchema, answer));
      }
    },
  });
}
