import { html } from "./html.js";
import type { PageParts } from "./page.js";

/** What `tokenbroker connect` shows the browser once the consent came back: go back to the terminal. */
export function renderDonePage(): PageParts {
  const body = html`<header><h1>tokenbroker</h1></header>
<p class="notice" role="status" id="done">The organisations are connected. You can close this window and return to the terminal.</p>`;
  return { title: "tokenbroker: connected", body };
}
