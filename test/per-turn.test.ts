/**
 * `PerTurn` (src/server/per-turn.ts), which paces the fast path's answers: at
 * most N jobs per turn of the event loop, in the order they were added, the
 * rest in the turns after.
 */
import { describe, expect, it } from "vitest";
import { PerTurn } from "../src/server/per-turn.js";

/** Resolves after the event loop has turned once (one `setImmediate`). */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("PerTurn", () => {
  it("runs 100 of 250 jobs at once, 100 in the next turn and 50 in the one after, in order", async () => {
    const ran: number[] = [];
    const paced = new PerTurn<number>(100, (n) => ran.push(n));
    for (let i = 0; i < 250; i++) paced.add(i);
    expect(ran).toEqual(Array.from({ length: 100 }, (_, i) => i));
    await nextTurn();
    expect(ran).toHaveLength(200);
    await nextTurn();
    expect(ran).toEqual(Array.from({ length: 250 }, (_, i) => i));
  });

  it("a job added while others wait goes behind them; after a quiet turn, jobs run at once again", async () => {
    const ran: string[] = [];
    const paced = new PerTurn<string>(2, (s) => ran.push(s));
    for (const s of ["a", "b", "c", "d"]) paced.add(s);
    expect(ran).toEqual(["a", "b"]);
    await nextTurn(); // c and d
    paced.add("e"); // this turn's share is spent: e waits for the next
    expect(ran).toEqual(["a", "b", "c", "d"]);
    await nextTurn();
    expect(ran).toEqual(["a", "b", "c", "d", "e"]);
    await nextTurn(); // a turn with nothing to do: the count starts again
    await nextTurn();
    paced.add("f");
    paced.add("g");
    expect(ran).toEqual(["a", "b", "c", "d", "e", "f", "g"]);
  });

  it("schedules nothing once its work is done (the process can exit)", async () => {
    const paced = new PerTurn<number>(1, () => {});
    paced.add(1);
    paced.add(2);
    await nextTurn();
    await nextTurn();
    await nextTurn();
    // Node counts pending immediates as active resources; none of them is PerTurn's.
    const immediates = process.getActiveResourcesInfo().filter((r) => r === "Immediate");
    expect(immediates).toEqual([]);
  });
});
