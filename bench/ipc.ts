import { fork, type ChildProcess } from "node:child_process";

/** An object of async methods that a child process serves over IPC. */
export type HostApi = { [method: string]: (...args: never[]) => unknown };

interface Request {
  id: number;
  method: string;
  args: unknown[];
}

interface Reply {
  id: number;
  ok: boolean;
  value?: unknown;
  error?: string;
}

/** The parent's handle on a forked host process: typed calls, and a stop. */
export interface Host<Api extends HostApi> {
  readonly pid: number;
  /** Calls `method` in the child and resolves with its result. */
  call<K extends keyof Api & string>(method: K, ...args: Parameters<Api[K]>): Promise<Awaited<ReturnType<Api[K]>>>;
  /** Disconnects and waits for the child to exit (killing it after `graceMs`). */
  stop(graceMs?: number): Promise<void>;
}

/** Options for {@link forkHost}. */
export interface ForkHostOptions {
  /** Extra Node flags, e.g. `--expose-gc`. */
  execArgv?: string[];
}

/**
 * Forks `module` (a compiled host script that calls {@link serveHost}) and
 * returns a typed handle. Messages use structured clone ("advanced"
 * serialisation), so bigints and typed arrays pass through.
 */
export async function forkHost<Api extends HostApi>(module: URL, options: ForkHostOptions = {}): Promise<Host<Api>> {
  const child: ChildProcess = fork(module, [], {
    execArgv: [...(options.execArgv ?? []), ...profilingFlags()],
    serialization: "advanced",
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.on("message", (m: Reply) => {
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.ok) p.resolve(m.value);
    else p.reject(new Error(m.error));
  });
  child.once("exit", (code, signal) => {
    for (const p of pending.values()) p.reject(new Error(`host ${module.pathname} exited (${signal ?? code})`));
    pending.clear();
  });
  await new Promise<void>((resolve, reject) => {
    child.once("spawn", resolve);
    child.once("error", reject);
  });
  return {
    pid: child.pid!,
    call(method, ...args) {
      return new Promise((resolve, reject) => {
        const id = nextId++;
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
        child.send({ id, method, args } satisfies Request);
      });
    },
    async stop(graceMs = 15_000) {
      if (child.exitCode !== null || child.signalCode !== null) return;
      if (child.connected) child.disconnect();
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * Serves `api` to the parent process. When the parent disconnects, `onStop`
 * runs and the process exits.
 */
export function serveHost(api: HostApi, onStop: () => Promise<void> = async () => {}): void {
  process.on("message", (m: Request) => {
    void (async () => {
      let reply: Reply;
      try {
        const fn = api[m.method] as ((...args: unknown[]) => unknown) | undefined;
        if (!fn) throw new Error(`no method ${m.method}`);
        reply = { id: m.id, ok: true, value: await fn(...m.args) };
      } catch (e) {
        reply = { id: m.id, ok: false, error: e instanceof Error ? (e.stack ?? e.message) : String(e) };
      }
      if (process.connected) process.send!(reply);
    })();
  });
  process.once("disconnect", () => {
    void onStop().finally(() => process.exit(0));
  });
}

/** `BENCH_CPU_PROF=DIR` writes a CPU profile of every host process into DIR (`node --cpu-prof`). */
function profilingFlags(): string[] {
  const dir = process.env["BENCH_CPU_PROF"];
  return dir ? ["--cpu-prof", `--cpu-prof-dir=${dir}`] : [];
}
