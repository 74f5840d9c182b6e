import type { ConnectionSummary, TenantSummary } from "../store/connection-store.js";
import { REFRESH_TOKEN_LIFETIME_MS } from "../token-set.js";
import { ageText, COUNTDOWN_SCRIPT, countdownText } from "./durations.js";
import { html, type SafeHtml } from "./html.js";
import type { PageParts } from "./page.js";
import { quotaCell, type QuotaView } from "./quota-cell.js";

/** What the status page shows. */
export interface StatusPageModel {
  connections: ConnectionSummary[];
  /** The broker's clock, ms since the epoch. */
  now: number;
  /** Where "Connect an organisation" and "Re-authorise" lead. */
  connectPath: string;
  /** The connection a consent just stored: announced and highlighted. */
  connected?: string | undefined;
  /** Xero's call limits and each organisation's calls, when the broker keeps them (a column of the tenant tables). */
  quota?: QuotaView | undefined;
}

/**
 * The status page: every connection with its user, state, tenants,
 * access-token expiry (counting down), refresh-token age, last refresh and
 * last error. Shows no secret: the summaries it is given hold none.
 */
export function renderStatusPage(m: StatusPageModel): PageParts {
  const needing = m.connections.filter((c) => c.state === "needs_reauthorization").length;
  const just = m.connections.find((c) => c.connectionId === m.connected);
  const body = html`<header>
  <h1>tokenbroker</h1>
  <a class="button" id="connect" href="${m.connectPath}">Connect an organisation</a>
</header>
${just && connectedNotice(just)}
<p class="muted" id="summary">${m.connections.length} connection${m.connections.length === 1 ? "" : "s"}${
    needing > 0 ? html`, <span class="error">${needing} need${needing === 1 ? "s" : ""} re-authorisation</span>` : ""
  }</p>
${m.connections.length === 0 ? html`<p>No organisation is connected yet.</p>` : m.connections.map((c) => connection(c, m))}`;
  return { title: "tokenbroker: connections", body, script: COUNTDOWN_SCRIPT };
}

function connectedNotice(c: ConnectionSummary): SafeHtml {
  const active = c.tenants.filter((t) => t.state === "active");
  return html`<p class="notice" role="status">Connected ${who(c)}: ${active.length} organisation${active.length === 1 ? "" : "s"}${
    active.length > 0 ? html` (${active.map((t) => t.tenantName ?? t.tenantId).join(", ")})` : ""
  }.</p>`;
}

function connection(c: ConnectionSummary, m: StatusPageModel): SafeHtml {
  const remaining = c.expiresAt - m.now;
  const rtAge = m.now - c.refreshTokenIssuedAt;
  const rtLeft = REFRESH_TOKEN_LIFETIME_MS - rtAge;
  const highlight = c.connectionId === m.connected ? " highlight" : "";
  return html`<section class="connection ${c.state}${highlight}" id="connection-${c.connectionId}" data-connection-id="${c.connectionId}">
  <h2><span class="user">${who(c)}</span> ${stateBadge(c)}</h2>
  ${
    c.state === "needs_reauthorization" &&
    (c.custom
      ? html`<div class="reauth"><span>Xero rejected this custom connection's client id or secret (was the secret rotated?).
    Run <code>tokenbroker custom add --name ${JSON.stringify(c.custom.name)} --client-id ${c.custom.clientId}</code> again with the app's current secret.</span></div>`
      : html`<div class="reauth"><a class="button" href="${m.connectPath}">Re-authorise</a>
    <span>Xero rejected this connection's refresh token. Sign in to Xero as ${who(c)} to bring it back.</span></div>`)
  }
  <dl>
    <dt>Connection</dt><dd><code>${c.connectionId}</code></dd>
    <dt>Xero user id</dt><dd><code>${c.xeroUserId ?? "unknown"}</code></dd>
    <dt>Access token</dt><dd>${
      c.state === "active"
        ? html`<span class="countdown${remaining <= 0 ? " expired" : ""}" data-remaining-ms="${remaining}">${countdownText(remaining)}</span>`
        : html`<span class="muted">none can be issued until re-authorised</span>`
    } <span class="muted">(version ${c.version})</span></dd>
    ${
      c.custom
        ? html`<dt>Custom connection</dt><dd>client credentials, client id <code>${c.custom.clientId}</code></dd>`
        : html`<dt>Refresh token</dt><dd class="${rtLeft < 15 * 86_400_000 ? "warn" : ""}">${ageText(rtAge)} old${
            rtLeft > 0
              ? html` <span class="muted">(unused, it would expire in ${ageText(rtLeft)})</span>`
              : html` <span class="error">(past Xero's 60 days)</span>`
          }</dd>`
    }
    <dt>Authorised</dt><dd>${timeAgo(c.authorizedAt, m.now)}</dd>
    <dt>Last refresh</dt><dd>${c.lastRefreshAt === undefined ? html`<span class="muted">never</span>` : timeAgo(c.lastRefreshAt, m.now)}</dd>
    <dt>Last error</dt><dd class="last-error">${c.lastError === undefined ? html`<span class="muted">none</span>` : html`<span class="error">${c.lastError}</span>`}</dd>
  </dl>
  ${tenantTable(c.tenants, m)}
</section>`;
}

function tenantTable(tenants: TenantSummary[], m: StatusPageModel): SafeHtml {
  if (tenants.length === 0) return html`<p class="muted">No tenants: the grant reaches no organisation.</p>`;
  const quota = m.quota;
  return html`<table class="tenants">
    <thead><tr><th>Organisation</th><th>Tenant id</th><th>Type</th><th>State</th><th>Last checked at Xero</th>${quota && html`<th>Calls to Xero</th>`}</tr></thead>
    <tbody>${tenants.map(
      (t) => html`
      <tr class="${t.state}" data-tenant-id="${t.tenantId}"><td>${t.tenantName ?? ""}</td><td><code>${t.tenantId}</code></td><td>${t.tenantType ?? ""}</td><td>${
        t.state === "gone"
          ? html`<span class="error">removed at Xero</span> <span class="muted">(no longer in its grant's connections list)</span>`
          : "active"
      }</td><td class="checked">${
        t.state === "gone" && t.goneAt !== undefined
          ? timeAgo(t.goneAt, m.now)
          : t.checkedAt === undefined
            ? html`<span class="muted">not yet</span>`
            : timeAgo(t.checkedAt, m.now)
      }</td>${quota && quotaCell(quota.tenants.get(t.tenantId), quota, m.now)}</tr>`,
    )}
    </tbody>
  </table>`;
}

function stateBadge(c: ConnectionSummary): SafeHtml {
  const label = c.state === "active" ? "active" : "needs re-authorisation";
  return html`<span class="badge state ${c.state}">${label}</span>`;
}

function who(c: ConnectionSummary): string {
  if (c.custom) return `custom connection ${c.custom.name}`;
  return c.userName ?? c.xeroUserId ?? `connection ${c.connectionId}`;
}

function timeAgo(at: number, now: number): SafeHtml {
  const iso = new Date(at).toISOString();
  return html`<time datetime="${iso}">${iso.replace("T", " ").replace(/\.\d+Z$/, " UTC")}</time> <span class="muted">(${ageText(now - at)} ago)</span>`;
}
