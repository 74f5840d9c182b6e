import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import { Health } from "../../gen/ts/grpc/health/v1/health_pb.js";
import { TokenService } from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import { addServerReflection } from "../reflection/server-reflection.js";

/**
 * The RPC routes served on the broker's port: the token service, gRPC health
 * and, registered last so that they describe everything above, the gRPC
 * server reflection services (v1 and v1alpha).
 */
export function createRoutes(
  tokenService: ServiceImpl<typeof TokenService>,
  health: ServiceImpl<typeof Health>,
): (router: ConnectRouter) => void {
  return (router) => {
    router.service(TokenService, tokenService);
    router.service(Health, health);
    addServerReflection(router);
  };
}
