import { html } from "./html.js";
import type { PageParts } from "./page.js";

/** What went wrong, in words a person can act on. */
export interface ErrorPageModel {
  title: string;
  message: string;
  /** Where "Start again" leads (the connect path), if starting again can help. */
  retryPath?: string | undefined;
  /** Where the status page is, if there is one. */
  statusPath?: string | undefined;
  /** Say that nothing was stored (default true: a refused consent). */
  nothingStored?: boolean;
}

/** The page shown when a consent could not be completed: what happened, that nothing was stored, and what to do. */
export function renderErrorPage(m: ErrorPageModel): PageParts {
  const body = html`<header><h1>tokenbroker</h1></header>
<h2 class="error" id="error-title">${m.title}</h2>
<p id="error-message">${m.message}</p>
${m.nothingStored !== false && html`<p><strong>Nothing was stored.</strong></p>`}
<p>${m.retryPath !== undefined && html`<a class="button" href="${m.retryPath}">Start again</a> `}${
    m.statusPath !== undefined && html`<a class="button secondary" href="${m.statusPath}">Status page</a>`
  }</p>`;
  return { title: `tokenbroker: ${m.title}`, body };
}
