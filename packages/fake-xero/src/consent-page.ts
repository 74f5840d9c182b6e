import type { ServerResponse } from "node:http";
import type { OrganisationRecord } from "./context.js";

/** What the consent page shows and carries through its form. */
export interface ConsentPageModel {
  /** The authorization request's parameters, sent back as hidden fields. */
  hidden: Record<string, string>;
  clientId: string;
  scopes: string[];
  /** The sign-in field's value. */
  user: string;
  organisations: readonly OrganisationRecord[];
  /** Tenant ids ticked (when the page is shown again after a mistake). */
  checked: ReadonlySet<string>;
  /** A mistake to point out, e.g. no organisation chosen. */
  problem?: string;
}

/** The fake's sign-in and consent page: a user field, organisations to tick, "Allow access" and "Cancel". */
export function renderConsentPage(m: ConsentPageModel): string {
  const hidden = Object.entries(m.hidden)
    .map(([name, value]) => `<input type="hidden" name="${esc(name)}" value="${esc(value)}">`)
    .join("\n      ");
  const orgs = m.organisations
    .map(
      (o) => `<li><label><input type="checkbox" name="tenant" value="${esc(o.tenantId)}"${m.checked.has(o.tenantId) ? " checked" : ""}>
        ${esc(o.tenantName)}</label></li>`,
    )
    .join("\n        ");
  return `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>Fake Xero: allow access</title>
<style>body{font:16px system-ui,sans-serif;max-width:36em;margin:2em auto;padding:0 1em}
ul{list-style:none;padding:0}li{margin:.4em 0}.problem{color:#b00020}button{font-size:1em;margin-right:1em}</style></head>
<body>
  <h1>Fake Xero</h1>
  <p>The app <strong>${esc(m.clientId)}</strong> asks to access your organisations with the scopes
     <code>${esc(m.scopes.join(" "))}</code>.</p>
  ${m.problem ? `<p class="problem" role="alert">${esc(m.problem)}</p>` : ""}
  <form method="post">
      ${hidden}
    <p><label>User <input name="user" value="${esc(m.user)}" autocomplete="username" required></label></p>
    <fieldset>
      <legend>Organisations</legend>
      <ul>
        ${orgs}
      </ul>
    </fieldset>
    <p><button type="submit" name="action" value="allow">Allow access</button>
       <button type="submit" name="action" value="cancel" formnovalidate>Cancel</button></p>
  </form>
</body>
</html>
`;
}

/** A plain error page for requests that cannot be redirected back (unknown client, bad redirect URI). */
export function renderAuthorizeError(message: string): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Fake Xero: error</title></head>
<body><h1>Fake Xero: this authorization request cannot be served</h1><p>${esc(message)}</p></body></html>
`;
}

/** Sends an HTML page. */
export function sendHtml(res: ServerResponse, status: number, page: string): void {
  if (res.destroyed || res.headersSent) return;
  res.writeHead(status, {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Length": Buffer.byteLength(page),
    "Cache-Control": "no-store",
  });
  res.end(page);
}

function esc(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}
