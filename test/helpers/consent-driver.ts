/**
 * Drives the consent flow over plain HTTP, as a browser would but without
 * one: the broker's /connect, the fake Xero's sign-in and consent form, and
 * the redirect back to the callback. Cookies are carried by hand.
 */

/** A response that is not followed. */
export interface Hop {
  status: number;
  location: string | undefined;
  setCookie: string[];
  body: string;
}

/** GETs (or POSTs a form) without following redirects. */
export async function hop(url: string | URL, init: { cookie?: string; form?: URLSearchParams } = {}): Promise<Hop> {
  const res = await fetch(url, {
    method: init.form ? "POST" : "GET",
    redirect: "manual",
    headers: {
      ...(init.cookie ? { cookie: init.cookie } : {}),
      ...(init.form ? { "content-type": "application/x-www-form-urlencoded" } : {}),
    },
    ...(init.form ? { body: init.form } : {}),
  });
  return {
    status: res.status,
    location: res.headers.get("location") ?? undefined,
    setCookie: res.headers.getSetCookie(),
    body: await res.text(),
  };
}

/** `GET /connect` on the broker: the issuer's authorization URL and the cookie that binds the consent to this "browser". */
export async function startConsent(brokerUrl: string): Promise<{ authorizeUrl: URL; cookie: string }> {
  const r = await hop(`${brokerUrl}/connect`);
  if (r.status !== 303 || !r.location) throw new Error(`/connect answered ${r.status}: ${r.body.slice(0, 300)}`);
  const cookie = r.setCookie.map((c) => c.split(";")[0]!).join("; ");
  return { authorizeUrl: new URL(r.location), cookie };
}

/** The hidden fields of the fake Xero's consent form. */
export function hiddenFields(page: string): URLSearchParams {
  const form = new URLSearchParams();
  for (const m of page.matchAll(/<input type="hidden" name="([^"]*)" value="([^"]*)">/g)) {
    form.append(unescapeHtml(m[1]!), unescapeHtml(m[2]!));
  }
  return form;
}

/**
 * Opens the fake Xero's consent page, signs in as `user`, ticks `tenantIds`
 * and clicks "Allow access" (or "Cancel"); returns where Xero sends the
 * browser back (the callback URL with `code` and `state`, or `error`).
 */
export async function consentAtXero(
  authorizeUrl: URL,
  choice: { user: string; tenantIds: string[]; action?: "allow" | "cancel" },
): Promise<URL> {
  const page = await hop(authorizeUrl);
  if (page.status !== 200) throw new Error(`the consent page answered ${page.status}: ${page.body.slice(0, 300)}`);
  const form = hiddenFields(page.body);
  form.set("user", choice.user);
  for (const id of choice.tenantIds) form.append("tenant", id);
  form.set("action", choice.action ?? "allow");
  const posted = await hop(new URL(authorizeUrl.pathname, authorizeUrl), { form });
  if (posted.status !== 303 || !posted.location)
    throw new Error(`the consent form answered ${posted.status}: ${posted.body.slice(0, 300)}`);
  return new URL(posted.location);
}

/** The whole consent: /connect, the fake's form, the callback. Returns the callback's answer. */
export async function connectOverHttp(
  brokerUrl: string,
  choice: { user: string; tenantIds: string[]; action?: "allow" | "cancel" },
): Promise<Hop & { callbackUrl: URL; cookie: string }> {
  const { authorizeUrl, cookie } = await startConsent(brokerUrl);
  const callbackUrl = await consentAtXero(authorizeUrl, choice);
  return { ...(await hop(callbackUrl, { cookie })), callbackUrl, cookie };
}

/** The connection id a successful callback redirected to (`/?connected=…`). */
export function connectedId(r: Hop): string {
  const id = r.location === undefined ? null : new URL(r.location, "http://x").searchParams.get("connected");
  if (r.status !== 303 || !id) throw new Error(`the callback answered ${r.status} ${r.location ?? ""}: ${r.body.slice(0, 400)}`);
  return id;
}

function unescapeHtml(text: string): string {
  return text.replace(/&#(\d+);/g, (_, n: string) => String.fromCharCode(Number(n)));
}

/**
 * Opens a URL in a "browser" that keeps its cookies: follows redirects (carrying the cookies set on the way)
 * until a page answers; returns that page's URL (Xero's consent page, for the URL `tokenbroker connect` prints)
 * and the cookies gathered. A browser's cookie jar, simplified: every cookie goes back to every URL.
 */
export async function openInBrowser(
  url: string | URL,
  jar: Map<string, string> = new Map(),
): Promise<{ url: URL; page: Hop; cookie: string }> {
  let at = new URL(url);
  for (let hops = 0; hops < 10; hops++) {
    const r = await hop(at, { cookie: cookieHeader(jar) });
    for (const c of r.setCookie) {
      const [pair] = c.split(";");
      const eq = pair!.indexOf("=");
      jar.set(pair!.slice(0, eq), pair!.slice(eq + 1));
    }
    if (r.status >= 300 && r.status < 400 && r.location) {
      at = new URL(r.location, at);
      continue;
    }
    return { url: at, page: r, cookie: cookieHeader(jar) };
  }
  throw new Error(`too many redirects from ${String(url)}`);
}

function cookieHeader(jar: Map<string, string>): string {
  return [...jar].map(([k, v]) => `${k}=${v}`).join("; ");
}
