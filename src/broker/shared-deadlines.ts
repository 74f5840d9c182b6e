/** Something that has to stop waiting when its time is up. */
export interface Expiring {
  /** Called once when the deadline passed (not if it was removed first). */
  expire(): void;
}

/**
 * The deadlines of many waits on one timer. Each deadline is rounded up to
 * the end of its slot (`slotMs`, default 50 ms): waits that end within the
 * same slot share one entry, and only the earliest slot is armed. Ten
 * thousand long polls hold ten thousand set entries and one timer, not ten
 * thousand timers.
 */
export class SharedDeadlines<T extends Expiring> {
  private readonly slots = new Map<number, Set<T>>();
  private timer: NodeJS.Timeout | undefined;
  /** The slot the timer is armed for (Infinity: not armed). */
  private armedFor = Infinity;

  constructor(private readonly slotMs = 50) {}

  /** Calls `item.expire()` in `ms` (up to one slot later); returns the slot, for {@link delete}. */
  add(item: T, ms: number): number {
    const slot = Math.ceil((performance.now() + ms) / this.slotMs) * this.slotMs;
    let set = this.slots.get(slot);
    if (!set) {
      set = new Set();
      this.slots.set(slot, set);
    }
    set.add(item);
    if (slot < this.armedFor) this.arm(slot);
    return slot;
  }

  /** Forgets `item`'s deadline (its wait ended otherwise). The timer stays armed; it finds the slot empty or gone. */
  delete(item: T, slot: number): void {
    const set = this.slots.get(slot);
    if (!set) return;
    set.delete(item);
    if (set.size === 0) this.slots.delete(slot);
  }

  /** Number of deadlines held. */
  get size(): number {
    let n = 0;
    for (const set of this.slots.values()) n += set.size;
    return n;
  }

  private arm(slot: number): void {
    clearTimeout(this.timer);
    this.armedFor = slot;
    this.timer = setTimeout(() => this.fire(), Math.max(0, slot - performance.now()));
    this.timer.unref();
  }

  private fire(): void {
    this.timer = undefined;
    this.armedFor = Infinity;
    const now = performance.now();
    for (const [slot, set] of this.slots) {
      if (slot > now) continue;
      this.slots.delete(slot);
      for (const item of set) {
        try {
          item.expire();
        } catch {
          // one item's failure does not keep the others waiting
        }
      }
    }
    // At most 60 s / slotMs slots: scanning them for the earliest costs nothing beside the waits it ends.
    let next = Infinity;
    for (const slot of this.slots.keys()) next = Math.min(next, slot);
    if (next !== Infinity) this.arm(next);
  }
}
