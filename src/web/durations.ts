/** `1h 5m 3s`, `29m 59s`, `42s`: a countdown's precision. */
export function clockDuration(ms: number): string {
  const s = Math.floor(Math.abs(ms) / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return `${h > 0 ? `${h}h ` : ""}${h > 0 || m > 0 ? `${m}m ` : ""}${s % 60}s`;
}

/** `expires in 29m 59s` or `expired 3m 2s ago`. The status page's script computes the same in the browser. */
export function countdownText(remainingMs: number): string {
  return remainingMs > 0 ? `expires in ${clockDuration(remainingMs)}` : `expired ${clockDuration(remainingMs)} ago`;
}

/** `just now`, `5 minutes`, `3 hours`, `12 days`: an age's precision (rounded down). */
export function ageText(ms: number): string {
  const units: Array<[string, number]> = [
    ["day", 86_400_000],
    ["hour", 3_600_000],
    ["minute", 60_000],
  ];
  for (const [name, size] of units) {
    const n = Math.floor(ms / size);
    if (n >= 1) return `${n} ${name}${n === 1 ? "" : "s"}`;
  }
  return "less than a minute";
}

/** The browser side of {@link countdownText}: counts every `[data-remaining-ms]` down from when the page loaded. */
export const COUNTDOWN_SCRIPT = `
const loaded = performance.now();
const clock = (ms) => {
  const s = Math.floor(Math.abs(ms) / 1000), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60);
  return (h > 0 ? h + "h " : "") + (h > 0 || m > 0 ? m + "m " : "") + (s % 60) + "s";
};
const tick = () => {
  for (const el of document.querySelectorAll("[data-remaining-ms]")) {
    const left = Number(el.dataset.remainingMs) - (performance.now() - loaded);
    el.textContent = left > 0 ? "expires in " + clock(left) : "expired " + clock(left) + " ago";
    el.classList.toggle("expired", left <= 0);
  }
};
tick();
setInterval(tick, 1000);
`;
