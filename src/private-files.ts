import { chmodSync, closeSync, constants, fchmodSync, openSync, rmSync, statSync, writeSync } from "node:fs";

/** The mode of every file tokenbroker creates that holds secrets: read and write by its owner only. */
export const PRIVATE_MODE = 0o600;

/** `0644`: a file mode as `ls -l` users and `chmod` read it. */
export function octalMode(mode: number): string {
  return `0${(mode & 0o777).toString(8).padStart(3, "0")}`;
}

/**
 * Creates `path` empty with mode 0600 whatever the umask; false (and nothing
 * changed) if it exists. SQLite opens an empty file as an empty database and
 * gives its WAL and shared-memory files the database file's mode.
 */
export function createPrivateFile(path: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, PRIVATE_MODE);
  } catch (e) {
    if ((e as { code?: string }).code === "EEXIST") return false;
    throw e;
  }
  try {
    fchmodSync(fd, PRIVATE_MODE); // the umask may have taken bits away; a private file is exactly 0600
  } finally {
    closeSync(fd);
  }
  return true;
}

/**
 * Writes `text` to a new file at `path` with mode 0600 whatever the umask.
 * Never replaces a file: an existing `path` fails with `EEXIST`. A failed
 * write removes the partial file.
 */
export function writePrivateFile(path: string, text: string): void {
  const fd = openSync(path, constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY, PRIVATE_MODE);
  try {
    fchmodSync(fd, PRIVATE_MODE);
    writeSync(fd, text);
    closeSync(fd);
  } catch (e) {
    closeSync(fd);
    rmSync(path, { force: true });
    throw e;
  }
}

/** The mode of `path` if group or others have any access to it; undefined if not, or if it does not exist. */
export function openToOthers(path: string): number | undefined {
  let mode: number;
  try {
    mode = statSync(path).mode & 0o777;
  } catch {
    return undefined;
  }
  return (mode & 0o077) === 0 ? undefined : mode;
}

/** What {@link tightenFileModes} found for one file. */
export interface TightenedFile {
  file: string;
  /** Its mode before. */
  from: number;
  /** Whether it is now 0600 (false: chmod failed, e.g. another user owns it). */
  tightened: boolean;
  /** The error code of a failed chmod. */
  error?: string;
}

/** Makes each existing file of `paths` that group or others can access 0600; returns those it found. */
export function tightenFileModes(paths: readonly string[]): TightenedFile[] {
  const found: TightenedFile[] = [];
  for (const file of paths) {
    const from = openToOthers(file);
    if (from === undefined) continue;
    try {
      chmodSync(file, PRIVATE_MODE);
      found.push({ file, from, tightened: true });
    } catch (e) {
      found.push({ file, from, tightened: false, error: (e as { code?: string }).code ?? "error" });
    }
  }
  return found;
}
