import { Code, ConnectError } from "@connectrpc/connect";
import type { Principal } from "../auth/api-key.js";
import { selectorOf, type RequestSelector } from "../auth/first-message.js";
import type { WireProtocol } from "../metrics/served-metrics.js";

/**
 * One concern every TokenService call goes through (API key, tenant scope,
 * audit, debug line, metrics…), whatever path serves it: the Connect
 * handler (through {@link guardInterceptor}) or the gRPC fast path. Each hook
 * is optional; a hook that throws a `ConnectError` refuses the call.
 */
export interface GuardStep {
  /** Names the step in errors and tests. */
  readonly name: string;
  /** From the request headers alone, before any of the body is read (the API key). */
  authenticate?(call: GuardedCall): Promise<void> | void;
  /** Once the request message is read (`call.selector` is set): the checks that need it (the tenant scope). */
  authorize?(call: GuardedCall): Promise<void> | void;
  /** A response message left; `token` is the token it carries, if any. */
  sent?(call: GuardedCall, token: { readonly connectionId: string } | undefined): void;
  /** The call ended (once), with its error if it failed: refused by a step, or answered with an error. */
  ended?(call: GuardedCall, error: ConnectError | undefined): void;
}

/** What identifies a call to the guard, from its headers. */
export interface CallHead {
  /** The method's name (`GetToken`). */
  readonly method: string;
  readonly protocol: WireProtocol;
  /** The `authorization` header, if any. */
  readonly authorization: string | undefined;
}

/**
 * The steps every TokenService call runs, in order (outermost first): made
 * once per port and handed, the same object, to every path that serves
 * calls, so that a step added here cannot miss one of them.
 */
export interface CallGuard {
  readonly steps: readonly GuardStep[];
  /** Starts guarding one call; see {@link GuardedCall}. */
  start(head: CallHead): GuardedCall;
}

/** Creates the {@link CallGuard} running `steps`, in that order. */
export function createCallGuard(steps: readonly GuardStep[]): CallGuard {
  const phases: Phases = {
    steps,
    authenticate: steps.filter((s) => s.authenticate),
    authorize: steps.filter((s) => s.authorize),
    sent: steps.filter((s) => s.sent),
    ended: steps.filter((s) => s.ended),
  };
  return { steps, start: (head) => new GuardedCall(phases, head) };
}

interface Phases {
  readonly steps: readonly GuardStep[];
  readonly authenticate: readonly GuardStep[];
  readonly authorize: readonly GuardStep[];
  readonly sent: readonly GuardStep[];
  readonly ended: readonly GuardStep[];
}

/**
 * One call going through the guard's steps: `authenticate()` from its
 * headers, `authorize(message)` once its request is read, `sent(token)` for
 * each response message, `ended(error)` once. A step that refuses the call
 * ends it (every step's `ended` hears the refusal) and its error is thrown.
 */
export class GuardedCall implements CallHead {
  readonly method: string;
  readonly protocol: WireProtocol;
  readonly authorization: string | undefined;
  /** `performance.now()` when the call started. */
  readonly started = performance.now();
  /** The tenant or connection the request names (none until `authorize`). */
  selector: RequestSelector = NO_SELECTOR;
  /** The caller, once a step authenticated it (the API key's principal). */
  principal: Principal | undefined = undefined;
  private done = false;

  constructor(
    private readonly phases: Phases,
    head: CallHead,
  ) {
    this.method = head.method;
    this.protocol = head.protocol;
    this.authorization = head.authorization;
  }

  /** Runs the steps' header checks; undefined (nothing to wait for) when no step has one. */
  authenticate(): Promise<void> | undefined {
    return this.phases.authenticate.length === 0 ? undefined : this.run("authenticate");
  }

  /** Runs the steps' checks of the request `message`; undefined when no step has one. */
  authorize(message: unknown): Promise<void> | undefined {
    this.selector = selectorOf(message);
    return this.phases.authorize.length === 0 ? undefined : this.run("authorize");
  }

  /** A response message left the server, carrying `token` (if any). */
  sent(token: { readonly connectionId: string } | undefined): void {
    for (const step of this.phases.sent) step.sent!(this, token);
  }

  /** The call ended: OK without `error`. Later calls do nothing. */
  ended(error?: unknown): void {
    if (this.done) return;
    this.done = true;
    const e = error === undefined ? undefined : ConnectError.from(error);
    for (const step of this.phases.ended) step.ended!(this, e);
  }

  /**
   * Runs the phase's steps in order: synchronously while they answer at once
   * (a cached key, a key for every tenant), then one after the other on the
   * first that returns a promise. Undefined when all answered at once.
   */
  private run(phase: "authenticate" | "authorize", from = 0): Promise<void> | undefined {
    const steps = this.phases[phase];
    for (let i = from; i < steps.length; i++) {
      let pending: Promise<void> | void;
      try {
        pending = steps[i]![phase]!(this);
      } catch (e) {
        this.ended(e);
        return Promise.reject(e);
      }
      if (pending) {
        return pending.then(
          () => this.run(phase, i + 1),
          (e: unknown) => {
            this.ended(e);
            throw e;
          },
        );
      }
    }
    return undefined;
  }
}

const NO_SELECTOR: RequestSelector = { case: undefined };

/** A call's status as its debug line names it (`ok`, `PermissionDenied`…). */
export function statusName(error: ConnectError | undefined): string {
  return error === undefined ? "ok" : (Code[error.code] ?? "unknown");
}
