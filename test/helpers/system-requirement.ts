import { spawnSync } from "node:child_process";

/**
 * Whether a test file can run on this machine: some tests drive programs that
 * come from Debian's packages (Chromium, Python's grpcio, Lua), which a
 * machine with only Node and npm lacks.
 *
 * Returns `undefined` when the program answers. Otherwise, on a developer's
 * machine it prints one line naming what to install and returns that reason
 * (for `describe.skipIf`); where `CI` is set (`.ci/run` installs them all) a
 * missing package is an error, so that CI never passes by skipping.
 *
 * @param what - what is missing, as a person would say it ("Chromium").
 * @param install - the command that installs it.
 * @param command - a command and its arguments that exits 0 when it is there.
 */
export function missingSystemPackage(what: string, install: string, command: readonly [string, ...string[]]): string | undefined {
  const [file, ...args] = command;
  const run = spawnSync(file, args, { stdio: "ignore", timeout: 20_000 });
  if (run.status === 0) return undefined;
  const reason = `${what} is missing (${install})`;
  if (process.env["CI"]) throw new Error(`${reason}: CI requires it`);
  console.warn(`SKIPPED: ${reason}; these tests run once it is installed, and always in CI`);
  return reason;
}
