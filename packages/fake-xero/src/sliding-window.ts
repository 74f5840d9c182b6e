/**
 * The times of the calls a rolling window allowed, oldest first: how many
 * fall inside the window now, and when the oldest of them leaves it.
 */
export class SlidingWindow {
  #times: number[] = [];
  #head = 0;

  /** Calls inside the window ending at `now` (drops the older ones). */
  count(now: number, windowMs: number): number {
    const times = this.#times;
    while (this.#head < times.length && (times[this.#head] as number) <= now - windowMs) this.#head++;
    if (this.#head > 1024 && this.#head * 2 > times.length) {
      this.#times = times.slice(this.#head);
      this.#head = 0;
    }
    return this.#times.length - this.#head;
  }

  /** Records a call at `now`. */
  add(now: number): void {
    this.#times.push(now);
  }

  /** Ms from `now` until fewer than `limit` calls are left in the window (0 when already so). */
  msUntilBelow(limit: number, now: number, windowMs: number): number {
    const excess = this.count(now, windowMs) - limit;
    if (excess < 0) return 0;
    const leaving = this.#times[this.#head + excess] as number;
    return Math.max(0, leaving + windowMs - now);
  }
}
