import { collectDefaultMetrics, Registry } from "prom-client";

let shared: Registry | undefined;

/**
 * The default process metrics (CPU, memory, event-loop lag, GC, handles),
 * collected once per process: they describe the process, not one server, and
 * each collection starts monitors that are never stopped.
 */
export function processMetricsRegistry(): Registry {
  if (!shared) {
    shared = new Registry();
    collectDefaultMetrics({ register: shared });
  }
  return shared;
}
