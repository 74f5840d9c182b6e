import type { ConnectRouter, ServiceImpl } from "@connectrpc/connect";
import { TokenService } from "../../gen/ts/tokenbroker/v1/token_service_pb.js";

/** The RPC routes served on the broker's port. */
export function createRoutes(tokenService: ServiceImpl<typeof TokenService>): (router: ConnectRouter) => void {
  return (router) => {
    router.service(TokenService, tokenService);
  };
}
