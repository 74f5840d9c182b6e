import type * as http from "node:http";
import { sendJson, type HttpHandler, type HttpRequest, type HttpResponse, type HttpRoute } from "../server/http-routes.js";
import type { Principal } from "./api-key.js";
import { createAdminSessions, type AdminSessions } from "./admin-sessions.js";
import type { Authenticator } from "./authenticator.js";
import { loginPage } from "./login-page.js";
import { clientOf, createSignInThrottle, type SignInThrottle } from "./sign-in-throttle.js";

/** Options for {@link createAdminGate}. */
export interface AdminGateOptions {
  authenticator: Authenticator;
  /** Served over TLS: the session cookie gets `Secure` (and the `__Host-` prefix). */
  secureCookies: boolean;
  /** Session table (default: in memory, 8 hours). */
  sessions?: AdminSessions;
  /** Told of each login and logout (the audit log). */
  onSession?: (event: { action: "login" | "logout"; principal: Principal }) => void;
  /** Failed sign-ins per client address (default: 5 in a minute lock the address for 1 minute, doubling). */
  throttle?: SignInThrottle;
  /**
   * Told of each failed sign-in (a key that is unknown, revoked or, posted to `/login`, not an admin's; or an
   * unknown or revoked bearer key sent to an admin page), with the client's address and the lock it started
   * (ms, or 0); never the key tried. `principal` is the valid non-admin key's.
   */
  onSignInFailed?: (event: { client: string; principal: Principal | undefined; lockedForMs: number }) => void;
}

/** Guards the admin pages: `requireAdmin` wraps a handler; `routes` are `/login` and `/logout`. */
export interface AdminGate {
  /** The handler, reachable only with an admin key (`authorization: Bearer`) or an admin session cookie. */
  requireAdmin(handler: HttpHandler): HttpHandler;
  /** `POST /login` (form field `key`) and `POST /logout`. */
  readonly routes: HttpRoute[];
}

const principals = new WeakMap<object, Principal>();

/** The admin behind a request that passed `requireAdmin` (for audit entries of admin actions). */
export function adminOf(req: HttpRequest): Principal | undefined {
  return principals.get(req);
}

const MAX_FORM_BYTES = 4096;

/**
 * Admin access to the plain-HTTP pages. Scripts send an admin key as
 * `authorization: Bearer <key>`. A browser gets a small login form once; the
 * key it posts opens a server-side session whose random id is kept in an
 * `HttpOnly`, `SameSite=Strict` (and, over TLS, `Secure`) cookie. Every
 * request re-checks the key behind the session, so revoking the key ends its
 * sessions too.
 */
export function createAdminGate(options: AdminGateOptions): AdminGate {
  const sessions = options.sessions ?? createAdminSessions();
  const throttle = options.throttle ?? createSignInThrottle();

  /** Counts a failed sign-in of the request's client and tells `onSignInFailed`. */
  function failed(req: HttpRequest, principal: Principal | undefined): void {
    const client = clientOf(req.socket?.remoteAddress);
    options.onSignInFailed?.({ client, principal, lockedForMs: throttle.failed(client) });
  }

  /** Answers 429 when the request's client is locked out; true when it did. */
  function held(req: HttpRequest, res: HttpResponse, html: (seconds: number) => string | undefined): boolean {
    const waitMs = throttle.retryAfterMs(clientOf(req.socket?.remoteAddress));
    if (waitMs <= 0) return false;
    const seconds = Math.ceil(waitMs / 1000);
    const message = `Too many failed sign-ins from this address; try again in ${seconds} s.`;
    const page = html(seconds);
    if (page !== undefined) sendHtml(res, 429, page, { "retry-after": String(seconds) });
    else {
      (res as http.ServerResponse).setHeader("retry-after", String(seconds));
      sendJson(res, 429, { code: "resource_exhausted", message: message.replace(/^T/, "t").replace(/\.$/, "") });
    }
    return true;
  }
  const cookieName = options.secureCookies ? "__Host-tb_session" : "tb_session";
  const attributes = `Path=/; HttpOnly; SameSite=Strict${options.secureCookies ? "; Secure" : ""}`;

  async function admin(req: HttpRequest): Promise<{ principal?: Principal; bearer: boolean }> {
    const authorization = req.headers["authorization"];
    if (authorization !== undefined) {
      return { bearer: true, ...optional(await options.authenticator.authenticate(String(authorization))) };
    }
    const sessionId = cookie(req, cookieName);
    const keyHash = sessionId === undefined ? undefined : sessions.get(sessionId);
    return { bearer: false, ...optional(keyHash === undefined ? undefined : await options.authenticator.byHash(keyHash)) };
  }

  function requireAdmin(handler: HttpHandler): HttpHandler {
    return (req, res) => {
      // A bearer key is a sign-in: a locked-out client's is not looked at.
      if (req.headers["authorization"] !== undefined && held(req, res, () => undefined)) return;
      return admin(req).then(
        ({ principal, bearer }) => {
          if (principal?.admin) {
            if (bearer) throttle.succeeded(clientOf(req.socket?.remoteAddress));
            principals.set(req, principal);
            return handler(req, res);
          }
          if (bearer && !principal) failed(req, undefined); // a valid client key is refused (403), not guessed
          if (principal) return sendJson(res, 403, { code: "permission_denied", message: "this API key is not an admin key" });
          const wantsHtml =
            !bearer && (req.method === "GET" || req.method === "HEAD") && /text\/html/.test(String(req.headers["accept"] ?? ""));
          if (wantsHtml) return sendHtml(res, 401, loginPage(req.url ?? "/"));
          (res as http.ServerResponse).setHeader("www-authenticate", 'Bearer realm="tokenbroker"');
          sendJson(res, 401, {
            code: "unauthenticated",
            message: "an admin API key is required: sign in at /, or send authorization: Bearer <key>",
          });
        },
        () => sendJson(res, 500, { code: "internal", message: "cannot check the API key" }),
      );
    };
  }

  const login: HttpRoute = {
    method: "POST",
    path: "/login",
    handle: (req, res) => {
      return readForm(req).then(
        async (form) => {
          if (!form)
            return sendJson(res, 400, {
              code: "invalid_argument",
              message: "post the form as application/x-www-form-urlencoded, at most 4 KiB",
            });
          const next = safeNext(form.get("next"));
          if (held(req, res, (seconds) => loginPage(next, `Too many failed sign-ins from this address; try again in ${seconds} s.`)))
            return;
          const principal = await options.authenticator.authenticate(`Bearer ${form.get("key") ?? ""}`);
          if (!principal?.admin) {
            failed(req, principal);
            return sendHtml(res, 401, loginPage(next, "That is not a valid admin API key."));
          }
          throttle.succeeded(clientOf(req.socket?.remoteAddress));
          const id = sessions.open(principal.keyHash);
          options.onSession?.({ action: "login", principal });
          (res as http.ServerResponse).writeHead(303, {
            location: next,
            "set-cookie": `${cookieName}=${id}; ${attributes}; Max-Age=${sessions.maxAgeSeconds}`,
            "cache-control": "no-store",
          });
          res.end();
        },
        () => sendJson(res, 500, { code: "internal", message: "cannot sign in" }),
      );
    },
  };

  const logout: HttpRoute = {
    method: "POST",
    path: "/logout",
    handle: (req, res) => {
      const id = cookie(req, cookieName);
      if (id !== undefined) {
        const keyHash = sessions.get(id);
        sessions.close(id);
        if (keyHash !== undefined) {
          void options.authenticator.byHash(keyHash).then((p) => p && options.onSession?.({ action: "logout", principal: p }));
        }
      }
      (res as http.ServerResponse).writeHead(303, {
        location: "/",
        "set-cookie": `${cookieName}=; ${attributes}; Max-Age=0`,
        "cache-control": "no-store",
      });
      res.end();
    },
  };

  return { requireAdmin, routes: [login, logout] };
}

function optional(principal: Principal | undefined): { principal?: Principal } {
  return principal ? { principal } : {};
}

/** A cookie's value from the request, or undefined. */
function cookie(req: HttpRequest, name: string): string | undefined {
  const header = req.headers["cookie"];
  if (typeof header !== "string") return undefined;
  for (const part of header.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

/** A local path to go back to after login; anything else (another site, `//host`) becomes `/`. */
function safeNext(next: string | null): string {
  return next && /^\/(?![/\\])[\x21-\x7e]*$/.test(next) ? next : "/";
}

/** Reads a small urlencoded form; undefined if too big or of another type. */
async function readForm(req: HttpRequest): Promise<URLSearchParams | undefined> {
  if (!/^application\/x-www-form-urlencoded\b/i.test(String(req.headers["content-type"] ?? ""))) return undefined;
  let size = 0;
  const chunks: Buffer[] = [];
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) return undefined;
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString("utf8"));
}

function sendHtml(res: HttpResponse, status: number, html: string, headers: Record<string, string> = {}): void {
  (res as http.ServerResponse).writeHead(status, {
    ...headers,
    "content-type": "text/html; charset=utf-8",
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'",
    "x-frame-options": "DENY",
    "content-length": Buffer.byteLength(html),
  });
  res.end(html);
}
