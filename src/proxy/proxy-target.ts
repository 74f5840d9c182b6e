/**
 * Where a proxied call may go: `/xero/{path}?{query}` becomes the API URL +
 * `/{path}?{query}`, and nothing else. The target is checked as sent (never
 * decoded or normalised first), then resolved, then checked again: a target
 * that a URL parser would read differently from how it was written is
 * refused, so the proxy cannot be steered off the API's origin or path.
 */

/** The path prefix of the proxy on the broker's port. */
export const PROXY_PREFIX = "/xero/";

/** Options for {@link createTargetResolver}. */
export interface ProxyTargetOptions {
  /** Xero's API, e.g. `https://api.xero.com` (a path, if any, is a prefix every call stays under). */
  apiUrl: URL | string;
  /**
   * URLs never called, with everything under them (compared without regard
   * to case): the identity server's endpoints, for an identity server that
   * shares the API's origin (the fake Xero does).
   */
  refused?: readonly (URL | string)[];
}

/** A target the proxy may call: the URL, and the path under the API URL (for logs and routing). */
export interface AcceptedTarget {
  readonly ok: true;
  readonly url: URL;
  /** The path after `/xero/`, without the query, e.g. `api.xro/2.0/Invoices`. */
  readonly path: string;
}

/** A target the proxy refuses (answered 400), and why, in words safe to show the caller. */
export interface RefusedTarget {
  readonly ok: false;
  readonly reason: string;
}

/** Turns a request target (`req.url`, starting with `/xero/`) into the URL it may reach, or a refusal. */
export type TargetResolver = (requestTarget: string) => AcceptedTarget | RefusedTarget;

/** Characters of a path as sent (RFC 3986 pchar and `/`), without `@`; percent escapes are checked apart. */
const PATH_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:/%]*$/;
/** Characters of a query as sent: pchar, `/` and `?`; no `#`, `\`, space or control character. */
const QUERY_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,;=:/?%@[\]|^`{}"<>]*$/;
/** A well-formed percent escape. */
const ESCAPE = /%[0-9A-Fa-f]{2}/g;
/**
 * Escapes a path may not carry: `/` (2F), `\` (5C), `.` (2E), `%` (25: double
 * encoding), `?` (3F), `#` (23), `@` (40) and control characters (00-1F, 7F).
 */
const REFUSED_ESCAPE = /%(2[EeFf35]|5[Cc]|3[Ff]|40|[01][0-9A-Fa-f]|7[Ff])/;

/** Why a path as sent is refused, or undefined when it is acceptable. */
function pathProblem(path: string): string | undefined {
  if (path === "") return "name an API path after /xero/";
  if (!PATH_CHARS.test(path)) return "the path holds a character the proxy does not forward (`@`, `\\`, space, `#`, control or non-ASCII)";
  if (path.replace(ESCAPE, "").includes("%")) return "the path holds a malformed percent escape";
  if (REFUSED_ESCAPE.test(path)) return "the path holds an encoded `/`, `\\`, `.`, `%`, `?`, `#`, `@` or control character";
  const segments = path.split("/");
  for (let i = 0; i < segments.length; i++) {
    const s = segments[i]!;
    if (s === "." || s === "..") return "the path holds a `.` or `..` segment";
    if (s === "" && i < segments.length - 1) return "the path holds an empty segment (`//`)";
  }
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(path)) return "the path is an absolute URL";
  return undefined;
}

/** Creates the {@link TargetResolver} of one API URL. */
export function createTargetResolver(options: ProxyTargetOptions): TargetResolver {
  const api = new URL(options.apiUrl);
  if (api.protocol !== "https:" && api.protocol !== "http:") throw new Error("the API URL must be an http:// or https:// URL");
  if (api.username !== "" || api.password !== "" || api.search !== "" || api.hash !== "") {
    throw new Error("the API URL must have no user, query or fragment");
  }
  // Calls go under the API URL's path: `https://h/base` and `https://h/base/` both give `/base/`.
  const basePath = api.pathname.endsWith("/") ? api.pathname : `${api.pathname}/`;
  const refused = (options.refused ?? []).map((u) => {
    const url = new URL(u);
    return { origin: url.origin, path: url.pathname.replace(/\/+$/, "").toLowerCase() };
  });

  return (target) => {
    if (!target.startsWith(PROXY_PREFIX)) return { ok: false, reason: "not a proxy path" };
    const q = target.indexOf("?");
    const path = target.slice(PROXY_PREFIX.length, q < 0 ? undefined : q);
    const query = q < 0 ? "" : target.slice(q + 1);
    const problem = pathProblem(path);
    if (problem) return { ok: false, reason: problem };
    if (!QUERY_CHARS.test(query))
      return { ok: false, reason: "the query holds a character the proxy does not forward (`#`, `\\`, space, control or non-ASCII)" };
    const expectedPath = basePath + path;
    let url: URL;
    try {
      url = new URL(`${api.origin}${expectedPath}${q < 0 ? "" : `?${query}`}`);
    } catch {
      return { ok: false, reason: "the target is not a URL path" };
    }
    // What the parser read must be what was written: same origin, same path, no user, no fragment.
    if (url.origin !== api.origin || url.username !== "" || url.password !== "" || url.hash !== "") {
      return { ok: false, reason: "the target leaves the API's origin" };
    }
    if (url.pathname !== expectedPath || !url.pathname.startsWith(basePath)) {
      return { ok: false, reason: "the target leaves the API's path" };
    }
    const lower = url.pathname.toLowerCase();
    for (const r of refused) {
      if (url.origin === r.origin && (lower === r.path || lower.startsWith(`${r.path}/`) || r.path === "")) {
        return { ok: false, reason: "the target is the identity server, which the proxy never calls" };
      }
    }
    return { ok: true, url, path };
  };
}

/** True for Xero's app-level endpoints under `/connections`, called without a `xero-tenant-id`. */
export function isConnectionsPath(path: string): boolean {
  const lower = path.toLowerCase();
  return lower === "connections" || lower.startsWith("connections/") || lower.startsWith("connections?");
}
