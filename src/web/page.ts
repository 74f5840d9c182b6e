import { randomBytes } from "node:crypto";
import type * as http from "node:http";
import type { HttpResponse } from "../server/http-routes.js";
import { html, trusted, type SafeHtml } from "./html.js";

/** A page's parts; the layout adds the head, the style sheet and the nonce. */
export interface PageParts {
  title: string;
  body: SafeHtml;
  /** Inline script (constant code, never data), allowed by the page's nonce. */
  script?: string;
}

/** A nonce for one response's inline style and script (Content-Security-Policy). */
export function newNonce(): string {
  return randomBytes(16).toString("base64");
}

/** The whole document around `parts.body`. */
export function renderPage(parts: PageParts, nonce: string): string {
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${parts.title}</title>
<style nonce="${nonce}">${trusted(STYLE)}</style>
</head>
<body>
${parts.body}
${parts.script === undefined ? "" : html`<script nonce="${nonce}">${trusted(parts.script)}</script>`}
</body>
</html>
`.value;
}

/**
 * Sends a page with headers that keep it private and inert: no caching, no
 * referrer (a callback URL carries a code), no framing, and only this
 * response's own style and script.
 */
export function sendPage(
  res: HttpResponse,
  status: number,
  page: string,
  nonce: string,
  headers: Record<string, string | string[]> = {},
): void {
  (res as http.ServerResponse).writeHead(status, {
    ...headers,
    "content-type": "text/html; charset=utf-8",
    "content-length": Buffer.byteLength(page),
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "content-security-policy": `default-src 'none'; style-src 'nonce-${nonce}'; script-src 'nonce-${nonce}'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'`,
  });
  res.end(page);
}

/** Sends a redirect (303: the next request is a GET). */
export function sendRedirect(res: HttpResponse, location: string, headers: Record<string, string | string[]> = {}): void {
  (res as http.ServerResponse).writeHead(303, {
    ...headers,
    location,
    "content-length": 0,
    "cache-control": "no-store",
    "referrer-policy": "no-referrer",
  });
  res.end();
}

const STYLE = `
:root{--fg:#1d2330;--muted:#5b6475;--line:#d9dee7;--ok:#0b7a3e;--bad:#b3261e;--warn:#8a5a00;--accent:#13b5ea}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);margin:0 auto;max-width:62em;padding:1.5em}
header{display:flex;align-items:center;justify-content:space-between;gap:1em;border-bottom:1px solid var(--line);padding-bottom:.8em}
h1{font-size:1.4em;margin:0}h2{font-size:1.1em;margin:0;display:flex;align-items:center;gap:.6em;flex-wrap:wrap}
.button{display:inline-block;padding:.45em .9em;border-radius:6px;border:1px solid var(--accent);color:#fff;background:#0a7fa6;text-decoration:none;font-weight:600}
.button.secondary{background:#fff;color:#0a6a8b}
.notice{border-left:4px solid var(--ok);background:#eef8f1;padding:.6em .9em;margin:1em 0}
.notice.bad{border-color:var(--bad);background:#fdf0ef}
.connection{border:1px solid var(--line);border-radius:8px;padding:1em;margin:1em 0}
.connection.needs_reauthorization{border-color:var(--bad)}
.connection.highlight{box-shadow:0 0 0 3px #bfe8f6}
.badge{font-size:.8em;font-weight:600;padding:.1em .6em;border-radius:1em;border:1px solid currentColor}
.badge.active{color:var(--ok)}.badge.needs_reauthorization{color:var(--bad)}.badge.gone{color:var(--muted)}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em;margin:.8em 0}
dt{color:var(--muted)}dd{margin:0}
.expired,.error{color:var(--bad)}.warn{color:var(--warn)}.muted{color:var(--muted)}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.3em .5em;border-top:1px solid var(--line)}
th{font-weight:600;color:var(--muted)}tr.gone td{color:var(--muted);text-decoration:line-through}
code{font:.9em ui-monospace,monospace}
.reauth{display:flex;align-items:center;gap:1em;flex-wrap:wrap;margin:.6em 0}
`;
