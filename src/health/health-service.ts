import { create } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext, type ServiceImpl } from "@connectrpc/connect";
import {
  HealthCheckResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
  HealthListResponseSchema,
  type Health,
  type HealthCheckRequest,
  type HealthCheckResponse,
  type HealthListResponse,
} from "../../gen/ts/grpc/health/v1/health_pb.js";
import { TokenService } from "../../gen/ts/tokenbroker/v1/token_service_pb.js";
import type { HealthMonitor, Readiness } from "./health-monitor.js";

/** The service names health answers for: "" (the whole server) and the token service. */
export const HEALTH_SERVICE_NAMES: readonly string[] = ["", TokenService.typeName];

/**
 * `grpc.health.v1.Health` on a {@link HealthMonitor}: SERVING while the
 * broker is ready, NOT_SERVING otherwise (database down, client credentials
 * rejected, shutting down). Every known name shares the server's state.
 */
export function createHealthService(monitor: HealthMonitor): ServiceImpl<typeof Health> {
  return {
    async check(req: HealthCheckRequest): Promise<HealthCheckResponse> {
      if (!HEALTH_SERVICE_NAMES.includes(req.service)) {
        throw new ConnectError(`unknown service: ${req.service.slice(0, 200)}`, Code.NotFound);
      }
      return response(toStatus(await monitor.check()));
    },

    async list(): Promise<HealthListResponse> {
      const status = response(toStatus(await monitor.check()));
      return create(HealthListResponseSchema, {
        statuses: Object.fromEntries(HEALTH_SERVICE_NAMES.map((name) => [name, status])),
      });
    },

    async *watch(req: HealthCheckRequest, ctx: HandlerContext): AsyncGenerator<HealthCheckResponse> {
      if (HEALTH_SERVICE_NAMES.includes(req.service)) {
        for await (const readiness of monitor.watch(ctx.signal)) yield response(toStatus(readiness));
      } else {
        // As the protocol asks: say SERVICE_UNKNOWN and keep the call open (until shutdown).
        yield response(ServingStatus.SERVICE_UNKNOWN);
        await monitor.untilShutdown(ctx.signal);
      }
      if (!ctx.signal.aborted) {
        // Shutdown ended the stream; clients retry against another server.
        throw new ConnectError("tokenbroker is shutting down; reconnect", Code.Unavailable);
      }
    },
  };
}

function toStatus(readiness: Readiness): ServingStatus {
  return readiness.ready ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
}

function response(status: ServingStatus): HealthCheckResponse {
  return create(HealthCheckResponseSchema, { status });
}
