import { IAnswer, interpret } from '../answers';
import { Backoff, Endpoint, IRemoteState, ITimers, RemotePoller } from '../poller';
import { device, relay, sample, status, tunnel } from './fixtures';

/** Timers the test fires by hand. */
class ManualTimers implements ITimers {
  pending = new Map<number, { fn: () => void; ms: number }>();
  private next = 1;
  set(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.pending.set(id, { fn, ms });
    return id;
  }
  clear(handle: unknown): void {
    this.pending.delete(handle as number);
  }
  /** The one pending delay (the poller never has two). */
  delay(): number | null {
    expect(this.pending.size).toBeLessThanOrEqual(1);
    const [entry] = this.pending.values();
    return entry ? entry.ms : null;
  }
  fire(): void {
    const [[id, entry]] = this.pending.entries();
    this.pending.delete(id);
    entry.fn();
  }
}

/** The server: answers per endpoint; records the requests and how many were in flight. */
class FakeServer {
  answers: Record<Endpoint, () => IAnswer> = {
    gpu: () => interpret(200, sample([device()])),
    tunnel: () => interpret(200, tunnel()),
    status: () => interpret(200, status()),
    relay: () => interpret(200, relay())
  };
  requests: Endpoint[] = [];
  inFlight = 0;
  maxInFlight = 0;
  hold: Promise<void> | null = null;

  get = async (endpoint: Endpoint): Promise<IAnswer> => {
    this.requests.push(endpoint);
    this.inFlight += 1;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    try {
      await Promise.resolve();
      if (this.hold) {
        await this.hold;
      }
      return this.answers[endpoint]();
    } finally {
      this.inFlight -= 1;
    }
  };
}

class Page {
  isHidden = false;
  listeners: (() => void)[] = [];
  visibility = {
    hidden: () => this.isHidden,
    onChange: (listener: () => void) => {
      this.listeners.push(listener);
      return () => {
        this.listeners = this.listeners.filter(l => l !== listener);
      };
    }
  };
  set(hidden: boolean): void {
    this.isHidden = hidden;
    this.listeners.forEach(l => l());
  }
}

const flush = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) {
    await Promise.resolve();
  }
};

function setup(slowEvery = 3) {
  const server = new FakeServer();
  const timers = new ManualTimers();
  const page = new Page();
  const updates: IRemoteState[] = [];
  const poller = new RemotePoller({
    get: server.get,
    visibility: page.visibility,
    timers,
    now: () => 1000,
    intervalMs: 5000,
    maxIntervalMs: 60000,
    slowEvery,
    onUpdate: state => updates.push({ ...state })
  });
  return { server, timers, page, updates, poller };
}

const gone = () =>
  interpret(503, {
    message: 'The remote runtime has ended. Hint: start a new one.',
    reason: 'remote_gone',
    error: { kind: 'remote_gone', message: 'The remote runtime has ended.', hint: 'start a new one.' }
  });

describe('Backoff', () => {
  it('doubles up to the cap and resets', () => {
    const b = new Backoff(5000, 60000);
    expect([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()]).toEqual([
      5000, 10000, 20000, 40000, 60000, 60000
    ]);
    expect(b.reset()).toBe(5000);
    expect(b.next()).toBe(5000);
  });
});

describe('RemotePoller', () => {
  it('asks gpu, tunnel, and on the first and every slowEvery-th poll status and relay', async () => {
    const { server, timers, updates, poller } = setup(3);
    poller.start();
    await flush();
    expect(server.requests).toEqual(['gpu', 'tunnel', 'status', 'relay']);
    expect(updates).toHaveLength(1);
    expect(updates[0].gpu?.devices[0].name).toBe('Tesla T4');
    expect(updates[0].tunnel?.state).toBe('ready');
    expect(updates[0].status?.life.uptime_seconds).toBe(3600);
    expect(updates[0].statusAt).toBe(1000);
    expect(updates[0].relay?.kind).toBe('ok');
    expect(timers.delay()).toBe(5000);
    server.requests = [];
    for (let i = 0; i < 3; i++) {
      timers.fire();
      await flush();
    }
    expect(server.requests).toEqual([
      'gpu', 'tunnel',
      'gpu', 'tunnel',
      'gpu', 'tunnel', 'status', 'relay'
    ]); // prettier-ignore
    expect(server.maxInFlight).toBe(1);
    poller.stop();
  });

  it('costs 28 requests a minute with its defaults (docs/jupyterlab.md)', async () => {
    const server = new FakeServer();
    const timers = new ManualTimers();
    const poller = new RemotePoller({
      get: server.get,
      visibility: new Page().visibility,
      timers,
      onUpdate: () => undefined
    });
    poller.start();
    await flush();
    let elapsed = 0;
    while (elapsed + (timers.delay() as number) < 60000) {
      elapsed += timers.delay() as number;
      timers.fire();
      await flush();
    }
    expect(timers.delay()).toBe(5000);
    expect(server.requests).toHaveLength(28); // 12 polls: 12 x (gpu, tunnel) + 2 x (status, relay)
    expect(server.requests.filter(r => r === 'status')).toHaveLength(2);
    poller.stop();
  });

  it('never has two requests in flight, even when the panel asks for a poll', async () => {
    const { server, timers, poller } = setup();
    let release!: () => void;
    server.hold = new Promise(resolve => (release = resolve));
    poller.start();
    await flush();
    expect(server.requests).toEqual(['gpu']);
    poller.refresh(); // the panel opens during the poll
    poller.refresh();
    await flush();
    expect(server.requests).toEqual(['gpu']);
    expect(timers.pending.size).toBe(0);
    server.hold = null;
    release();
    await flush();
    // the poll in flight ends, then the full one the panel asked for: one after the other
    expect(server.requests).toEqual([
      'gpu', 'tunnel', 'status', 'relay', 'gpu', 'tunnel', 'status', 'relay'
    ]); // prettier-ignore
    expect(server.maxInFlight).toBe(1);
    expect(timers.pending.size).toBe(1);
    poller.stop();
  });

  it('backs off while the remote is gone, asks the relay why, and recovers', async () => {
    const { server, timers, updates, poller } = setup(100);
    poller.start();
    await flush();
    server.answers.gpu = gone;
    server.answers.relay = () =>
      interpret(200, relay({ remote_state: 'gone', remote_gone: { since: 'x', reason: 'ended', hint: 'h' } }));
    const delays: number[] = [];
    server.requests = [];
    for (let i = 0; i < 6; i++) {
      timers.fire();
      await flush();
      delays.push(timers.delay() as number);
    }
    expect(delays).toEqual([5000, 10000, 20000, 40000, 60000, 60000]);
    // a failed poll stops at the remote's first refusal and asks the (local) relay
    expect(server.requests.slice(0, 4)).toEqual(['gpu', 'relay', 'gpu', 'relay']);
    const last = updates[updates.length - 1];
    expect(last.problem?.label).toBe('Remote gone');
    expect(last.relay?.body).toMatchObject({ remote_state: 'gone' });
    expect(last.hidden).toBe(false);
    server.answers.gpu = () => interpret(200, sample([device()]));
    timers.fire();
    await flush();
    expect(updates[updates.length - 1].problem).toBeNull();
    expect(timers.delay()).toBe(5000);
    poller.stop();
  });

  it.each(['not_gateway_mode', 'no_extension'])(
    'hides and stops for good after one %s answer',
    async reason => {
      const { server, timers, updates, poller } = setup();
      server.answers.gpu = () => interpret(404, { message: 'm', reason });
      poller.start();
      await flush();
      expect(server.requests).toEqual(['gpu']);
      expect(updates).toHaveLength(1);
      expect(updates[0].hidden).toBe(true);
      expect(timers.pending.size).toBe(0);
      expect(poller.running).toBe(false);
      poller.refresh();
      await flush();
      expect(server.requests).toEqual(['gpu']);
    }
  );

  it('a 404 not_a_relay keeps the item: only the relay section says so', async () => {
    const { server, updates, poller } = setup();
    server.answers.relay = () => interpret(404, { message: 'm', reason: 'not_a_relay' });
    poller.start();
    await flush();
    expect(updates[0].hidden).toBe(false);
    expect(updates[0].relay?.reason).toBe('not_a_relay');
    expect(updates[0].problem).toBeNull();
    poller.stop();
  });

  it('pauses while the tab is hidden and polls at once when it shows', async () => {
    const { server, timers, page, poller } = setup();
    poller.start();
    await flush();
    page.set(true);
    server.requests = [];
    timers.fire(); // the next poll comes due while hidden: no request, no timer
    await flush();
    expect(server.requests).toEqual([]);
    expect(timers.pending.size).toBe(0);
    page.set(false);
    await flush();
    expect(server.requests).toEqual(['gpu', 'tunnel']);
    expect(timers.pending.size).toBe(1);
    page.set(false); // a second "visible" event starts no second loop
    await flush();
    expect(server.requests).toEqual(['gpu', 'tunnel']);
    poller.stop();
    expect(page.listeners).toHaveLength(0);
  });

  it('starts paused on a hidden tab', async () => {
    const { server, page, poller } = setup();
    page.isHidden = true;
    poller.start();
    await flush();
    expect(server.requests).toEqual([]);
    page.set(false);
    await flush();
    expect(server.requests[0]).toBe('gpu');
    poller.stop();
  });

  it('stop() ends the loop, also with a poll in flight', async () => {
    const { server, timers, poller } = setup();
    let release!: () => void;
    server.hold = new Promise(resolve => (release = resolve));
    poller.start();
    await flush();
    poller.stop();
    server.hold = null;
    release();
    await flush();
    expect(server.requests).toEqual(['gpu']);
    expect(timers.pending.size).toBe(0);
  });
});
