/** Whether `location` (`--db`) names a PostgreSQL database (`postgres://` or `postgresql://` URL) rather than a SQLite file. */
export function isPostgresUrl(location: string): boolean {
  return /^postgres(?:ql)?:\/\//i.test(location);
}

/**
 * `location` as it may be shown in a message or a log: a PostgreSQL URL
 * without its password (`postgres://user:***@host/db`) and without query
 * parameters (which may hold one too); a file path as it is.
 */
export function describeLocation(location: string): string {
  if (!isPostgresUrl(location)) return location;
  try {
    const url = new URL(location);
    if (url.password !== "") url.password = "***";
    url.search = "";
    url.hash = "";
    return url.toString();
  } catch {
    return "the PostgreSQL URL given (it does not parse as a URL)";
  }
}

/** `text` with every occurrence of the password of `location` (a PostgreSQL URL) replaced by `***`. */
export function withoutPassword(text: string, location: string): string {
  const secrets = passwordsOf(location);
  let out = text;
  for (const s of secrets) if (s.length > 0) out = out.split(s).join("***");
  return out;
}

function passwordsOf(location: string): string[] {
  try {
    const url = new URL(location);
    const query = url.searchParams.get("password") ?? "";
    return [url.password, decodeURIComponent(url.password), query].filter((s) => s.length > 0);
  } catch {
    // Unparsable: hide what sits between the scheme's "user:" and "@", as far as it can be found.
    const m = /^[a-z]+:\/\/[^:/@]*:([^@]*)@/i.exec(location);
    return m?.[1] ? [m[1]] : [];
  }
}

/** Why `tokenbroker backup` does not copy a PostgreSQL database, and what to use instead. */
export function postgresBackupAdvice(location: string): string {
  return (
    `${describeLocation(location)} is a PostgreSQL database: back it up with PostgreSQL's own tools, ` +
    "e.g. `pg_dump --format=custom --file=tokenbroker.dump <url>` (a consistent copy while brokers run); " +
    "restore with `pg_restore --dbname=<url> tokenbroker.dump`"
  );
}
