import type { QuotaLimits, TenantQuotaUsage } from "../store/quota-store.js";
import { html, type SafeHtml } from "./html.js";

/** What the status page shows of Xero's call limits: the limits kept and every organisation's counts. */
export interface QuotaView {
  limits: QuotaLimits;
  /** By tenant id; an organisation with no recent call has none. */
  tenants: ReadonlyMap<string, TenantQuotaUsage>;
}

const BAR = 2;
const HEIGHT = 20;

/**
 * One organisation's quota cell: its calls in the last hour as a sparkline
 * (a bar per minute, the current one last) and the calls left in the minute
 * and the day; a hold of Xero's in red, with how long it lasts.
 */
export function quotaCell(usage: TenantQuotaUsage | undefined, view: QuotaView, now: number): SafeHtml {
  const lastHour = usage?.lastHour ?? [];
  const calls = lastHour.reduce((a, b) => a + b, 0);
  const minuteLeft = Math.max(0, view.limits.perMinute - (usage?.minute ?? 0));
  const dayLeft = Math.max(0, view.limits.perDay - (usage?.day ?? 0));
  const held = usage?.heldUntil !== undefined && usage.heldUntil > now ? usage.heldUntil - now : undefined;
  return html`<td class="quota">${sparkline(lastHour, calls)}
    <span class="calls">${calls} call${calls === 1 ? "" : "s"} in the last hour</span><br>
    <span class="${minuteLeft === 0 ? "warn" : "muted"} left">${minuteLeft}/${view.limits.perMinute} left this minute, ${dayLeft}/${view.limits.perDay} today</span>${
      held !== undefined && html`<br><span class="error held">held by Xero's 429 for ${Math.ceil(held / 1000)} s</span>`
    }</td>`;
}

/** An inline SVG of `counts` as bars scaled to the largest (no script, no style attribute: the page's CSP holds). */
export function sparkline(counts: readonly number[], calls: number): SafeHtml {
  const most = Math.max(1, ...counts);
  const width = Math.max(1, counts.length) * BAR;
  const bars = counts.map((n, i) => {
    if (n === 0) return "";
    const h = Math.max(1, Math.round((n / most) * HEIGHT));
    return html`<rect x="${i * BAR}" y="${HEIGHT - h}" width="${BAR - 0.5}" height="${h}"><title>${n}</title></rect>`;
  });
  return html`<svg class="sparkline" width="${width}" height="${HEIGHT}" viewBox="0 0 ${width} ${HEIGHT}" fill="currentColor" role="img" aria-label="${calls} calls in the last hour, a bar a minute"><line x1="0" y1="${HEIGHT - 0.5}" x2="${width}" y2="${HEIGHT - 0.5}" stroke="currentColor" stroke-opacity="0.3"/>${bars}</svg>`;
}
