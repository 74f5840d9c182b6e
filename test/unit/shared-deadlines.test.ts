import { describe, expect, it } from "vitest";
import { SharedDeadlines } from "../../src/broker/shared-deadlines.js";

/** An item that records when it expired (ms after `start`). */
function item(start: number, log: Array<{ name: string; at: number }>, name: string) {
  return { expire: () => log.push({ name, at: performance.now() - start }) };
}

describe("SharedDeadlines", () => {
  it("expires each item once, in order of its deadline, within one slot of it; a deleted item never", async () => {
    const deadlines = new SharedDeadlines(20);
    const log: Array<{ name: string; at: number }> = [];
    const start = performance.now();
    const late = item(start, log, "late");
    const gone = item(start, log, "gone");
    deadlines.add(late, 300);
    const goneSlot = deadlines.add(gone, 100);
    deadlines.add(item(start, log, "early"), 50);
    deadlines.add(item(start, log, "middle"), 150);
    deadlines.delete(gone, goneSlot);
    expect(deadlines.size).toBe(3);
    await new Promise((r) => setTimeout(r, 450));
    expect(log.map((e) => e.name)).toEqual(["early", "middle", "late"]);
    const at = Object.fromEntries(log.map((e) => [e.name, e.at]));
    expect(at.early).toBeGreaterThanOrEqual(49);
    expect(at.middle).toBeGreaterThanOrEqual(149);
    expect(at.late).toBeGreaterThanOrEqual(299);
    expect(deadlines.size).toBe(0);
  });

  it("an item added for sooner than the armed slot is not kept waiting for it", async () => {
    const deadlines = new SharedDeadlines(20);
    const log: Array<{ name: string; at: number }> = [];
    const start = performance.now();
    deadlines.add(item(start, log, "minute"), 60_000);
    deadlines.add(item(start, log, "soon"), 30);
    await new Promise((r) => setTimeout(r, 150));
    expect(log.map((e) => e.name)).toEqual(["soon"]);
    expect(deadlines.size).toBe(1);
  });
});
