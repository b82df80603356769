/**
 * Polls /colab/remote/* for the status item: one request at a time, backoff on errors, paused
 * while the tab is hidden, stopped for good once the server says there is no remote here.
 * No JupyterLab imports: the request function and the page's visibility are handed in.
 *
 * One poll asks, in sequence: gpu, tunnel, and every `slowEvery`-th poll (and when the panel
 * opens) status and relay. A poll whose remote request fails stops there (no more requests to a
 * remote that does not answer) and asks the relay (local) why.
 */

import { IAnswer } from './answers';
import { IGpuSample, IRelayStatus, IStatus, ITunnelSnapshot } from './types';

export type Endpoint = 'gpu' | 'tunnel' | 'status' | 'relay';

/** Does one GET of colab/remote/<endpoint> and interprets it; never throws. */
export type Getter = (endpoint: Endpoint) => Promise<IAnswer>;

/** The page's visibility (document.hidden and its visibilitychange event, in the browser). */
export interface IVisibility {
  hidden(): boolean;
  /** Calls `listener` on every change; returns the function that removes it. */
  onChange(listener: () => void): () => void;
}

export interface ITimers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

export interface IPollerOptions {
  get: Getter;
  visibility: IVisibility;
  /** Called after each poll (and when the item must hide) with the new state. */
  onUpdate: (state: IRemoteState) => void;
  timers?: ITimers;
  /** Milliseconds since some epoch; Date.now by default. */
  now?: () => number;
  intervalMs?: number;
  maxIntervalMs?: number;
  slowEvery?: number;
}

export interface IRemoteState {
  /** True once an answer said there is no remote here: the item hides, polling has stopped. */
  hidden: boolean;
  gpu: IGpuSample | null;
  tunnel: ITunnelSnapshot | null;
  status: IStatus | null;
  /** When (now()) `status` was read: the item counts uptime and time left on from there. */
  statusAt: number | null;
  /** The relay's last answer, ok or not (a 404 not_a_relay when the gateway is another server). */
  relay: IAnswer<IRelayStatus> | null;
  /** The failed answer of the last poll, null when it went through. */
  problem: IAnswer | null;
  /** Polls done, and the delay before the next one (ms). */
  polls: number;
  delayMs: number;
}

export const DEFAULT_INTERVAL_MS = 5000;
export const DEFAULT_MAX_INTERVAL_MS = 60000;
export const DEFAULT_SLOW_EVERY = 6;

/** Doubling delays from `base` up to `max`; reset after a good answer. */
export class Backoff {
  private failures = 0;
  constructor(
    private readonly base: number,
    private readonly max: number
  ) {}

  /** The delay after one more failure in a row. */
  next(): number {
    const delay = Math.min(this.base * 2 ** this.failures, this.max);
    this.failures = Math.min(this.failures + 1, 30);
    return delay;
  }

  reset(): number {
    this.failures = 0;
    return this.base;
  }
}

const defaultTimers: ITimers = {
  set: (fn, ms) => setTimeout(fn, ms),
  clear: handle => clearTimeout(handle as ReturnType<typeof setTimeout>)
};

export class RemotePoller {
  readonly state: IRemoteState = {
    hidden: false,
    gpu: null,
    tunnel: null,
    status: null,
    statusAt: null,
    relay: null,
    problem: null,
    polls: 0,
    delayMs: 0
  };
  private readonly timers: ITimers;
  private readonly now: () => number;
  private readonly slowEvery: number;
  private readonly backoff: Backoff;
  private timer: unknown = null;
  private inFlight = false;
  private stopped = false;
  private paused = false;
  private wantSlow = false;
  private removeListener: (() => void) | null = null;

  constructor(private readonly options: IPollerOptions) {
    this.timers = options.timers ?? defaultTimers;
    this.now = options.now ?? Date.now;
    this.slowEvery = options.slowEvery ?? DEFAULT_SLOW_EVERY;
    this.backoff = new Backoff(
      options.intervalMs ?? DEFAULT_INTERVAL_MS,
      options.maxIntervalMs ?? DEFAULT_MAX_INTERVAL_MS
    );
  }

  /** Polls now, then on its own. */
  start(): void {
    this.removeListener = this.options.visibility.onChange(() => this.visibilityChanged());
    void this.run();
  }

  /** Stops for good (the plugin is disposed, or there is no remote here). */
  stop(): void {
    this.stopped = true;
    this.clearTimer();
    this.removeListener?.();
    this.removeListener = null;
  }

  get running(): boolean {
    return !this.stopped;
  }

  get busy(): boolean {
    return this.inFlight;
  }

  /** A full poll (with status and relay) now, or right after the one in flight (panel opened). */
  refresh(): void {
    this.wantSlow = true;
    if (!this.inFlight && !this.stopped) {
      this.clearTimer();
      void this.run();
    }
  }

  private clearTimer(): void {
    if (this.timer !== null) {
      this.timers.clear(this.timer);
      this.timer = null;
    }
  }

  private visibilityChanged(): void {
    if (!this.options.visibility.hidden() && this.paused && !this.stopped && !this.inFlight) {
      this.paused = false;
      void this.run();
    }
  }

  private schedule(ms: number): void {
    this.clearTimer();
    if (this.stopped) {
      return;
    }
    this.timer = this.timers.set(() => {
      this.timer = null;
      void this.run();
    }, ms);
  }

  private async run(): Promise<void> {
    if (this.inFlight || this.stopped) {
      return;
    }
    if (this.options.visibility.hidden()) {
      this.paused = true; // visibilityChanged() polls again when the tab shows
      return;
    }
    this.inFlight = true;
    let delay: number;
    try {
      delay = await this.poll();
    } finally {
      this.inFlight = false;
    }
    if (this.stopped) {
      return;
    }
    if (this.wantSlow) {
      // The panel opened during that poll: the full one now.
      void this.run();
      return;
    }
    this.schedule(delay);
  }

  /** One poll; returns the delay before the next. */
  private async poll(): Promise<number> {
    const slow = this.wantSlow || this.state.polls % this.slowEvery === 0;
    this.wantSlow = false;
    const state = this.state;
    let problem: IAnswer | null = null;
    const endpoints: Endpoint[] = slow ? ['gpu', 'tunnel', 'status'] : ['gpu', 'tunnel'];
    for (const endpoint of endpoints) {
      const answer = await this.options.get(endpoint);
      if (this.stopped) {
        return 0;
      }
      if (answer.kind === 'hidden') {
        this.hide();
        return 0;
      }
      if (answer.kind !== 'ok') {
        problem = answer;
        break;
      }
      if (endpoint === 'gpu') {
        state.gpu = answer.body as IGpuSample;
      } else if (endpoint === 'tunnel') {
        state.tunnel = answer.body as ITunnelSnapshot;
      } else {
        state.status = answer.body as IStatus;
        state.statusAt = this.now();
      }
    }
    if (slow || problem !== null) {
      // The relay is local: it says why the remote does not answer (or that it is fine).
      state.relay = (await this.options.get('relay')) as IAnswer<IRelayStatus>;
      if (this.stopped) {
        return 0;
      }
    }
    state.problem = problem;
    state.polls += 1;
    state.delayMs = problem === null ? this.backoff.reset() : this.backoff.next();
    this.options.onUpdate(state);
    return state.delayMs;
  }

  private hide(): void {
    this.state.hidden = true;
    this.stop();
    this.options.onUpdate(this.state);
  }
}
