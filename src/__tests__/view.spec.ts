import { interpret } from '../answers';
import { IRemoteState } from '../poller';
import { IRelayStatus } from '../types';
import { IContext, itemView, lifeText, panelView } from '../view';
import { device, GIB, relay, sample, status, tunnel } from './fixtures';

function state(overrides: Partial<IRemoteState> = {}): IRemoteState {
  return {
    hidden: false,
    gpu: sample([device()]),
    tunnel: tunnel(),
    status: status(),
    statusAt: 0,
    relay: interpret(200, relay()),
    problem: null,
    polls: 1,
    delayMs: 5000,
    ...overrides
  };
}

const ctx = (overrides: Partial<IContext> = {}): IContext => ({
  kernelId: null,
  paths: new Map(),
  now: 0,
  ...overrides
});

const proc = (kernel_id: string, used: number) => ({
  pid: 7,
  name: 'python3',
  used_memory: used,
  kernel_id,
  notebook_path: null
});

describe('lifeText', () => {
  it('counts uptime on from the read', () => {
    expect(lifeText(status().life, 0, 0)).toBe('up 1h 00m');
    expect(lifeText(status().life, 0, 5 * 60 * 1000)).toBe('up 1h 05m');
  });

  it("counts the time left by the remote's clock, not the local one", () => {
    // started 00:00, up 1 h: the remote's now is 01:00; the end 04:10 is 3h 10m away
    const life = status({ estimated_end_at: '2026-01-01T04:10:00Z' }).life;
    expect(lifeText(life, 0, 0)).toBe('3h 10m left');
    expect(lifeText(life, 0, 10 * 60 * 1000)).toBe('3h 00m left');
    expect(lifeText(life, 0, 4 * 3600 * 1000)).toBe('ending');
  });

  it('is empty without a read', () => {
    expect(lifeText(null, null, 0)).toBe('');
    expect(lifeText(status({ uptime_seconds: null }).life, 0, 0)).toBe('');
  });
});

describe('itemView', () => {
  it('shows the short GPU name, utilization, memory, tunnel and life', () => {
    const v = itemView(state(), ctx());
    expect(v.hidden).toBe(false);
    expect(v.text).toBe('T4 37% 1.5/15 GiB · tunnel ready · up 1h 00m');
    expect(v.tone).toBe('good');
    expect(v.title).toContain('the busiest');
    expect(v.title).toContain('tunnel ready');
  });

  it("shows the current notebook's GPU", () => {
    const gpus = sample([
      device({ index: 0, name: 'NVIDIA A100-SXM4-40GB', utilization: { gpu: 90, memory: 1 } }),
      device({ index: 1, name: 'NVIDIA L4', processes: [proc('k', 2 * GIB)] })
    ]);
    const v = itemView(state({ gpu: gpus }), ctx({ kernelId: 'k' }));
    expect(v.text.startsWith('L4 37%')).toBe(true);
    expect(v.title).toContain("this notebook's kernel");
    expect(itemView(state({ gpu: gpus }), ctx()).text.startsWith('A100 40GB 90%')).toBe(true);
  });

  it('says No GPU on a CPU runtime', () => {
    const cpu = {
      available: false,
      count: 0,
      error: { kind: 'driver_not_loaded', message: 'No NVIDIA driver.', hint: 'Pick a GPU runtime.' },
      devices: []
    };
    const v = itemView(state({ gpu: cpu }), ctx());
    expect(v.text.startsWith('No GPU · tunnel ready')).toBe(true);
    expect(v.title).toContain('No NVIDIA driver.');
  });

  it('says the tunnel state in words, with a tone', () => {
    const v = itemView(state({ tunnel: tunnel({ state: 'stopped', url: null }) }), ctx());
    expect(v.text).toContain('tunnel stopped');
    expect(v.tone).toBe('bad');
  });

  it('says the remote is gone in words', () => {
    const problem = interpret(503, {
      message: 'Gone. Hint: new runtime.',
      reason: 'remote_gone',
      error: { kind: 'remote_gone', message: 'Gone.', hint: 'new runtime.' }
    });
    const v = itemView(state({ problem }), ctx());
    expect(v.text).toBe('Remote: Remote gone');
    expect(v.tone).toBe('bad');
    expect(v.title).toContain('new runtime.');
  });

  it("takes the relay's word that the remote is gone over a plain 502", () => {
    const problem = interpret(502, { message: 'x', reason: 'bad_gateway' });
    const gone = interpret<IRelayStatus>(
      200,
      relay({ remote_state: 'gone', remote_gone: { since: 's', reason: 'r', hint: 'h' } })
    );
    expect(itemView(state({ problem }), ctx()).text).toBe('Remote: Remote unreachable');
    expect(itemView(state({ problem, relay: gone }), ctx()).text).toBe('Remote: Remote gone');
  });

  it('says the tunnel stopped, or the relay is down, where the relay says so', () => {
    const problem = interpret(503, { message: 'x', reason: 'no_upstream' });
    expect(itemView(state({ problem, relay: null }), ctx()).text).toBe('Remote: No tunnel');
    const stopped = interpret<IRelayStatus>(200, relay({ remote_state: 'stopped', upstream: null }));
    expect(itemView(state({ problem, relay: stopped }), ctx()).text).toBe(
      'Remote: Remote tunnel stopped'
    );
    const refused = interpret(502, { message: 'x', reason: 'connection_refused' });
    const down = interpret<IRelayStatus>(502, { message: 'x', reason: 'connection_refused' });
    expect(itemView(state({ problem: refused, relay: down }), ctx()).text).toBe(
      'Remote: Relay unreachable'
    );
    const auth = interpret(403, { message: 'Forbidden', reason: null });
    expect(itemView(state({ problem: auth, relay: down }), ctx()).text).toBe(
      'Remote: Not authorized'
    );
  });

  it('is hidden when the state is', () => {
    expect(itemView(state({ hidden: true }), ctx()).hidden).toBe(true);
  });

  it('waits for the first answer', () => {
    const v = itemView(state({ gpu: null, tunnel: null, status: null }), ctx());
    expect(v.text).toBe('Remote: …');
  });
});

describe('panelView', () => {
  it('lists every GPU, the kernels on it, the tunnel, the runtime and the relay', () => {
    const gpus = sample([
      device({ index: 0, processes: [proc('k1', 3 * GIB)] }),
      device({ index: 1, name: 'Tesla T4', processes: [] })
    ]);
    const t = tunnel({
      url: 'https://new-url.trycloudflare.com',
      restarts: 2,
      error: { kind: 'network', message: 'edge unreachable', hint: 'check the network' }
    });
    const sections = panelView(
      state({ gpu: gpus, tunnel: t }),
      ctx({ kernelId: 'k1', paths: new Map([['k1', 'train.ipynb']]) })
    );
    expect(sections.map(s => s.title)).toEqual(['GPUs', 'Tunnel', 'Runtime', 'Relay']);
    const rows = (title: string) =>
      sections.find(s => s.title === title)!.rows.map(r => `${r.label}=${r.value}`);
    expect(rows('GPUs')).toEqual([
      'GPU 0 (this notebook)=Tesla T4: 37% busy, 1.5/15 GiB',
      '  train.ipynb (this notebook)=3.0 GiB',
      'GPU 1=Tesla T4: 37% busy, 1.5/15 GiB',
      '  processes=none'
    ]);
    expect(rows('Tunnel')).toEqual([
      'State=ready',
      'URL=https://new-url.trycloudflare.com',
      'Restarts=2',
      'Last error=edge unreachable',
      'Hint=check the network'
    ]);
    expect(rows('Runtime')).toEqual(['Uptime=1h 00m', 'Version=0.1.0']);
    expect(rows('Relay')).toContain('Remote state=ready');
    expect(rows('Relay')).toContain('Upstream=https://one-two.trycloudflare.com');
  });

  it('puts the problem first and the relay says why', () => {
    const problem = interpret(502, {
      message: 'No answer. Hint: check the runtime.',
      reason: 'remote_unreachable'
    });
    const r = interpret<IRelayStatus>(
      200,
      relay({
        remote_state: 'unreachable',
        remote_unreachable: { since: 's', last_error: 'connection refused', hint: 'restart it' }
      })
    );
    const sections = panelView(state({ problem, relay: r }), ctx());
    expect(sections[0].title).toBe('Remote');
    expect(sections[0].rows.map(x => x.value)).toEqual([
      'Remote unreachable',
      'No answer.',
      'check the runtime.'
    ]);
    const relayRows = sections.find(s => s.title === 'Relay')!.rows;
    expect(relayRows).toContainEqual({ label: 'Unreachable', value: 'connection refused', tone: 'bad' });
    expect(relayRows).toContainEqual({ label: 'Hint', value: 'restart it' });
  });

  it('says when the gateway is not a relay', () => {
    const r = interpret<IRelayStatus>(404, { message: 'm', reason: 'not_a_relay' });
    const rows = panelView(state({ relay: r }), ctx()).find(s => s.title === 'Relay')!.rows;
    expect(rows[0].value).toMatch(/not a jupyter colab-tunnel relay/);
  });

  it('shows the estimated end with its reason', () => {
    const s = status({ estimated_end_at: '2026-01-01T02:00:00Z', estimated_end_reason: 'idle' });
    const rows = panelView(state({ status: s }), ctx()).find(x => x.title === 'Runtime')!.rows;
    expect(rows).toContainEqual({
      label: 'Estimated end',
      value: '1h 00m left (idle, 2026-01-01T02:00:00Z)'
    });
  });

  it('a lost GPU is marked lost', () => {
    const rows = panelView(state({ gpu: sample([device({ lost: true })]) }), ctx())[0].rows;
    expect(rows[0]).toEqual({ label: 'GPU 0', value: 'Tesla T4: lost', tone: 'bad' });
  });
});
