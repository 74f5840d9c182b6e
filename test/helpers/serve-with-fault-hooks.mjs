#!/usr/bin/env node
/**
 * TEST-ONLY entry: `tokenbroker serve` with refresh pauses, so that test/crash-safety.test.ts can SIGKILL the
 * process at an exact point of a refresh. The shipped CLI (dist/src/cli/main.js) has no such pauses and reads
 * no TOKENBROKER_TEST_* variable; this file lives under test/ and is not in the package ("files": dist, proto,
 * gen). Plain JavaScript, so it needs no compile step; it runs the compiled serve command (`npm run build`).
 *
 * Usage: node test/helpers/serve-with-fault-hooks.mjs [serve options]
 * - TOKENBROKER_TEST_PAUSE_AFTER_LEASE_MS: pause after the lease row is committed, before the request to the
 *   identity server leaves.
 * - TOKENBROKER_TEST_PAUSE_BEFORE_COMMIT_MS: pause after the identity server answered (the old refresh token
 *   is spent), before the new token set is committed.
 * Each pause first writes `{"event":"test_pause","point":"after_lease"|"before_commit","connectionId":…}` to
 * standard error, as a log line of the broker.
 */
import { setTimeout as delay } from "node:timers/promises";
import { serveCommand } from "../../dist/src/cli/serve.js";

/** @param {string} name */
function pauseMs(name) {
  const value = process.env[name];
  if (value === undefined || value === "") return undefined;
  const ms = Number(value);
  if (!Number.isFinite(ms) || ms < 0) throw new Error(`${name} must be a number of milliseconds, not ${JSON.stringify(value)}`);
  return ms;
}

/** @param {string} point @param {number} ms */
const pause = (point, ms) => async (/** @type {string} */ connectionId) => {
  process.stderr.write(
    `${JSON.stringify({ level: 40, time: Date.now(), event: "test_pause", point, connectionId, msg: `test pause ${point}` })}\n`,
  );
  await delay(ms);
};

const afterLeaseMs = pauseMs("TOKENBROKER_TEST_PAUSE_AFTER_LEASE_MS");
const beforeCommitMs = pauseMs("TOKENBROKER_TEST_PAUSE_BEFORE_COMMIT_MS");
const testHooks = {
  ...(afterLeaseMs === undefined ? {} : { afterLease: pause("after_lease", afterLeaseMs) }),
  ...(beforeCommitMs === undefined ? {} : { beforeCommit: pause("before_commit", beforeCommitMs) }),
};

serveCommand.run(process.argv.slice(2), { out: process.stdout, err: process.stderr, in: process.stdin, env: process.env, testHooks }).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`serve-with-fault-hooks: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = e?.name === "ConfigError" ? 2 : 1;
  },
);
