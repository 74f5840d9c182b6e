/** The parts of a request's target that the routes use; see {@link parseRequestTarget}. */
export interface RequestTarget {
  /** The path as sent (not decoded, not normalised), e.g. `/oauth/callback`. */
  readonly path: string;
  /** The query's parameters (empty without a query). */
  readonly query: URLSearchParams;
}

/** Origin-form (RFC 9112 §3.2.1): a `/`, then printable ASCII without spaces. */
const ORIGIN_FORM = /^\/[\x21-\x7e]*$/;

/**
 * Reads a request target (`req.url`: path and query) without a URL parser,
 * which would read `//host/...` as an authority and throw on `//`, `//:1` or
 * `/\`. Only origin-form is served: anything else (absolute-form such as
 * `http://a:b@/`, `*`, control characters, spaces), a path starting with `//`
 * or holding a `\` gives undefined, which the port answers with 400. The path
 * is taken as sent, so that the routes and the RPC router (which matches the
 * raw path) agree on what was asked for.
 */
export function parseRequestTarget(target: string | undefined): RequestTarget | undefined {
  if (target === undefined || !ORIGIN_FORM.test(target)) return undefined;
  const q = target.indexOf("?");
  const path = q < 0 ? target : target.slice(0, q);
  if (path.startsWith("//") || path.includes("\\")) return undefined;
  return { path, query: new URLSearchParams(q < 0 ? "" : target.slice(q + 1)) };
}

/** A request whose target {@link parseRequestTarget} refuses: the port answers it 400. */
export class BadRequestTargetError extends Error {
  override readonly name = "BadRequestTargetError";
  constructor() {
    super("the request target is not a path");
  }
}

/**
 * The target of a request the port let through (its target parses): what
 * every route reads its path and query from. Throws
 * {@link BadRequestTargetError} (answered 400) for one that does not.
 */
export function requestTarget(req: { url?: string | undefined }): RequestTarget {
  const target = parseRequestTarget(req.url);
  if (!target) throw new BadRequestTargetError();
  return target;
}
