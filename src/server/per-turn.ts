/**
 * Runs at most `perTurn` jobs in one turn of the event loop; the others wait,
 * in order, for the turns after, with Node's I/O in between (one
 * `setImmediate` per turn while there is work). Jobs must not throw.
 */
export class PerTurn<T> {
  private ran = 0;
  private queue: T[] = [];
  private next = 0;

  constructor(
    private readonly perTurn: number,
    private readonly job: (item: T) => void,
  ) {}

  /** Runs `job(item)` now, or in a later turn if this turn's share has run (or others wait). */
  add(item: T): void {
    if (this.ran < this.perTurn && this.queue.length === 0) {
      if (this.ran++ === 0) setImmediate(this.turn);
      this.job(item);
    } else {
      this.queue.push(item);
    }
  }

  private readonly turn = (): void => {
    this.ran = 0;
    const due = this.queue;
    const end = Math.min(due.length, this.next + this.perTurn);
    for (; this.next < end; this.next++, this.ran++) this.job(due[this.next]!);
    if (this.next === due.length) {
      this.queue = [];
      this.next = 0;
    }
    if (this.ran > 0) setImmediate(this.turn); // a new turn: resets the count, and runs what waits
  };
}
