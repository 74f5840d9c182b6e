import { setTimeout as delay } from "node:timers/promises";
import type { RefresherOptions } from "../broker/refresher.js";
import { positiveNumber } from "../config.js";
import type { Logger } from "../logger.js";

/**
 * TEST-ONLY fault injection for `tokenbroker serve`, read from the environment
 * so that `test/crash-safety.test.ts` can SIGKILL the process at an exact
 * point of a refresh. These variables are deliberately not documented for
 * users (not in `--help`, not in the README); never set them in production.
 *
 * - `TOKENBROKER_TEST_PAUSE_AFTER_LEASE_MS`: pause after the lease row is
 *   committed, before the request to the identity server leaves.
 * - `TOKENBROKER_TEST_PAUSE_BEFORE_COMMIT_MS`: pause after the identity server
 *   answered (the old refresh token is spent), before the new token set is committed.
 *
 * Each pause first logs `{"event":"test_pause","point":"after_lease"|"before_commit"}`.
 * Returns no hooks when neither variable is set.
 */
export function testHooksFromEnv(env: NodeJS.ProcessEnv, logger: Logger): Pick<RefresherOptions, "testHooks"> {
  const afterLeaseMs = optional("TOKENBROKER_TEST_PAUSE_AFTER_LEASE_MS", env);
  const beforeCommitMs = optional("TOKENBROKER_TEST_PAUSE_BEFORE_COMMIT_MS", env);
  if (afterLeaseMs === undefined && beforeCommitMs === undefined) return {};
  logger.warn({ event: "test_hooks", afterLeaseMs, beforeCommitMs }, "TEST-ONLY refresh pauses are on; never in production");
  const pause = (point: string, ms: number) => async (connectionId: string) => {
    logger.warn({ event: "test_pause", point, connectionId }, `test pause ${point}`);
    await delay(ms);
  };
  return {
    testHooks: {
      ...(afterLeaseMs === undefined ? {} : { afterLease: pause("after_lease", afterLeaseMs) }),
      ...(beforeCommitMs === undefined ? {} : { beforeCommit: pause("before_commit", beforeCommitMs) }),
    },
  };
}

function optional(name: string, env: NodeJS.ProcessEnv): number | undefined {
  const value = env[name];
  return value === undefined || value === "" ? undefined : positiveNumber(name, value, 0);
}
