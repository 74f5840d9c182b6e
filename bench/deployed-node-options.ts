import { readFileSync } from "node:fs";

const SYSTEMD_UNIT = new URL("../../deploy/tokenbroker.service", import.meta.url);

/**
 * The NODE_OPTIONS that `deploy/tokenbroker.service` runs `tokenbroker serve`
 * with (`npm start` uses the same): V8 flags sizing the heap for a small
 * service. The bench runs the broker, and the bare server it is compared
 * with, as deployed; the refresh storm and the scale scenario are run once
 * more with Node's defaults, for the trade-off.
 */
export function deployedNodeOptions(): string[] {
  const unit = readFileSync(SYSTEMD_UNIT, "utf8");
  const options = /^Environment="?NODE_OPTIONS=([^"\n]*)"?$/m.exec(unit)?.[1]?.trim();
  if (!options) throw new Error(`no Environment=NODE_OPTIONS= line in ${SYSTEMD_UNIT.pathname}`);
  return options.split(/\s+/);
}
