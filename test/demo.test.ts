/**
 * `npm run demo`, the README's first command, as a newcomer runs it (shorter): it must end with exit 0,
 * one refresh per token lifetime, the proxied channels held under the organisation's budget by the broker
 * (Xero answers none of them 429), and no token in its output.
 */
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { runNodeScript } from "../bench/support/child-output.js";

const DEMO = join(import.meta.dirname, "..", "dist", "demo", "main.js");

describe("npm run demo", () => {
  it("runs token and proxy channels against the fake Xero: one refresh per lifetime, 0 × 429 from Xero, no token printed", {
    timeout: 60_000,
  }, async () => {
    const r = await runNodeScript(
      DEMO,
      [
        "--duration",
        "9",
        "--lifetime",
        "6",
        "--channels",
        "20",
        "--proxy-channels",
        "8",
        "--xero-per-minute",
        "12",
        "--listen",
        "127.0.0.1:0",
      ],
      { PATH: process.env["PATH"] ?? "" },
      "",
      45_000,
    );
    expect(r.code, r.stderr).toBe(0);
    // Tokens live 6 s and are refreshed halfway: 9 s make 1 to 3 refreshes, whatever the 20 channels ask.
    const refreshes = Number(/Xero's token endpoint was called (\d+) time/.exec(r.stdout)?.[1]);
    expect(refreshes).toBeGreaterThanOrEqual(1);
    expect(refreshes).toBeLessThanOrEqual(3);
    expect(r.stdout).toContain("Refresh tokens rejected: 0. Channel errors: 0.");
    const proxied = /made (\d+) calls Xero answered and got (\d+) 429s from the broker itself;\nXero answered them 429 (\d+) times/.exec(
      r.stdout,
    );
    expect(proxied, r.stdout).not.toBeNull();
    const [answered, heldBack, xero429] = proxied!.slice(1).map(Number) as [number, number, number];
    expect(answered).toBe(12); // the organisation's budget for the minute, spent whole
    expect(heldBack).toBeGreaterThanOrEqual(8); // every channel was held back at least once
    expect(xero429).toBe(0);
    expect(r.stdout + r.stderr).not.toMatch(/eyJ[\w-]{20,}/); // no JWT (access or id token) printed
  });
});
