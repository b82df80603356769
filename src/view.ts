/**
 * What the status item and its panel say, from the poller's state: plain data that the widgets
 * put into the DOM as text. No JupyterLab imports: unit-tested on its own.
 */

import { chooseGpu, kernelUses } from './choose';
import {
  formatBytes,
  formatDuration,
  formatMemory,
  formatPercent,
  shortGpuName,
  tunnelStateText,
  tunnelTone
} from './format';
import { IRemoteState } from './poller';
import { ILife } from './types';

export type Tone = 'good' | 'busy' | 'bad' | 'none';

export interface IItemView {
  hidden: boolean;
  /** The status bar's text. */
  text: string;
  /** The tooltip and the accessible label: the same facts in whole words. */
  title: string;
  tone: Tone;
}

export interface IRow {
  label: string;
  value: string;
  tone?: Tone;
}

export interface ISection {
  title: string;
  rows: IRow[];
}

/** The current notebook's kernel and the local sessions' notebook paths by kernel id. */
export interface IContext {
  kernelId: string | null;
  paths: Map<string, string>;
  /** Milliseconds, the poller's clock. */
  now: number;
}

/**
 * The life line: "3h 10m left" where the remote estimates an end, else "up 1h 02m". Counted on
 * from the remote's own clock at the time of the read (machine_started_at + uptime), so a skewed
 * local clock does not shift it.
 */
export function lifeText(life: ILife | null | undefined, readAt: number | null, now: number): string {
  if (!life || readAt === null) {
    return '';
  }
  const since = Math.max(0, (now - readAt) / 1000);
  const started = life.machine_started_at ? Date.parse(life.machine_started_at) : NaN;
  const end = life.estimated_end_at ? Date.parse(life.estimated_end_at) : NaN;
  if (!isNaN(end)) {
    const remoteNow =
      !isNaN(started) && life.uptime_seconds !== null
        ? started + life.uptime_seconds * 1000
        : readAt; // no remote clock to go by: the local one
    const left = (end - remoteNow) / 1000 - since;
    return left > 0 ? `${formatDuration(left)} left` : 'ending';
  }
  if (life.uptime_seconds !== null) {
    return `up ${formatDuration(life.uptime_seconds + since)}`;
  }
  return '';
}

/**
 * The words for a failed poll. The relay (asked in the same poll) knows best: a remote it found
 * gone or stopped; no answer from the relay either means the relay itself is down.
 */
export function problemLabel(state: IRemoteState): string {
  const problem = state.problem;
  if (!problem) {
    return '';
  }
  if (problem.kind !== 'remote') {
    return problem.label;
  }
  const relay = state.relay;
  if (relay && relay.kind === 'ok' && relay.body) {
    if (relay.body.remote_gone) {
      return 'Remote gone';
    }
    if (relay.body.remote_state === 'stopped') {
      return 'Remote tunnel stopped';
    }
    if (relay.body.remote_unreachable) {
      return 'Remote unreachable';
    }
  } else if (relay && relay.kind === 'remote') {
    return 'Relay unreachable';
  }
  return problem.label;
}

export function itemView(state: IRemoteState, context: IContext): IItemView {
  if (state.hidden) {
    return { hidden: true, text: '', title: '', tone: 'none' };
  }
  const problem = state.problem;
  if (problem) {
    const label = problemLabel(state);
    const detail = [problem.message, problem.hint].filter(Boolean).join(' ');
    return {
      hidden: false,
      text: `Remote: ${label}`,
      title: `Colab remote: ${label}. ${detail}`.trim(),
      tone: 'bad'
    };
  }
  if (state.gpu === null && state.tunnel === null) {
    return {
      hidden: false,
      text: 'Remote: …',
      title: 'Colab remote: waiting for the first answer',
      tone: 'none'
    };
  }
  const parts: string[] = [];
  const words: string[] = [];
  const chosen = chooseGpu(state.gpu, context.kernelId);
  if (chosen) {
    const d = chosen.device;
    const name = shortGpuName(d.name);
    const memory = formatMemory(d.memory?.used ?? null, d.memory?.total ?? null);
    const util = formatPercent(d.utilization?.gpu);
    parts.push(`${name} ${util} ${memory}`);
    words.push(
      `GPU ${d.index} ${d.name ?? ''} (${
        chosen.why === 'kernel' ? "this notebook's kernel" : 'the busiest'
      }): ${util} busy, memory ${memory} used`
    );
  } else if (state.gpu) {
    parts.push('No GPU');
    words.push(`No GPU${state.gpu.error ? `: ${state.gpu.error.message}` : ''}`);
  }
  const tone: Tone = state.tunnel ? tunnelTone(state.tunnel.state) : 'none';
  if (state.tunnel) {
    const t = tunnelStateText(state.tunnel.state);
    parts.push(`tunnel ${t}`);
    words.push(`tunnel ${t}`);
  }
  const life = lifeText(state.status?.life, state.statusAt, context.now);
  if (life) {
    parts.push(life);
    words.push(`runtime ${life}`);
  }
  return {
    hidden: false,
    text: parts.join(' · '),
    title: `Colab remote: ${words.join('; ')}. Click for details.`,
    tone
  };
}

export function panelView(state: IRemoteState, context: IContext): ISection[] {
  const sections: ISection[] = [];
  if (state.problem) {
    const p = state.problem;
    sections.push({
      title: 'Remote',
      rows: [
        { label: 'State', value: problemLabel(state), tone: 'bad' },
        { label: 'Why', value: p.message },
        ...(p.hint ? [{ label: 'Hint', value: p.hint }] : [])
      ]
    });
  }
  const gpuRows: IRow[] = [];
  const chosen = chooseGpu(state.gpu, context.kernelId);
  for (const d of state.gpu?.devices ?? []) {
    const mark = chosen?.device === d ? (chosen.why === 'kernel' ? ' (this notebook)' : ' (shown)') : '';
    if (d.lost) {
      gpuRows.push({ label: `GPU ${d.index}${mark}`, value: `${d.name ?? '?'}: lost`, tone: 'bad' });
      continue;
    }
    gpuRows.push({
      label: `GPU ${d.index}${mark}`,
      value: `${d.name ?? '?'}: ${formatPercent(d.utilization?.gpu)} busy, ${formatMemory(
        d.memory?.used ?? null,
        d.memory?.total ?? null
      )}`
    });
    const uses = kernelUses(d, context.paths);
    for (const use of uses) {
      const me = use.kernelId !== null && use.kernelId === context.kernelId ? ' (this notebook)' : '';
      gpuRows.push({ label: `  ${use.label}${me}`, value: formatBytes(use.bytes) });
    }
    if (d.processes !== null && uses.length === 0) {
      gpuRows.push({ label: '  processes', value: 'none' });
    }
  }
  if (state.gpu && gpuRows.length === 0) {
    gpuRows.push({
      label: 'GPU',
      value: state.gpu.error ? `none: ${state.gpu.error.message}` : 'none'
    });
    if (state.gpu.error?.hint) {
      gpuRows.push({ label: 'Hint', value: state.gpu.error.hint });
    }
  }
  if (gpuRows.length) {
    sections.push({ title: 'GPUs', rows: gpuRows });
  }
  if (state.tunnel) {
    const t = state.tunnel;
    const rows: IRow[] = [
      { label: 'State', value: tunnelStateText(t.state), tone: tunnelTone(t.state) },
      { label: 'URL', value: t.url ?? 'none' }
    ];
    if (t.restarts) {
      rows.push({ label: 'Restarts', value: String(t.restarts) });
    }
    if (t.error) {
      rows.push({ label: 'Last error', value: t.error.message, tone: 'bad' });
      rows.push({ label: 'Hint', value: t.error.hint });
    }
    sections.push({ title: 'Tunnel', rows });
  }
  if (state.status) {
    const life = state.status.life;
    const rows: IRow[] = [];
    const text = lifeText(life, state.statusAt, context.now);
    if (life.uptime_seconds !== null) {
      const since = state.statusAt === null ? 0 : (context.now - state.statusAt) / 1000;
      rows.push({ label: 'Uptime', value: formatDuration(life.uptime_seconds + since) });
    }
    if (life.estimated_end_at) {
      rows.push({
        label: 'Estimated end',
        value: `${text} (${life.estimated_end_reason ?? 'estimate'}, ${life.estimated_end_at})`
      });
    }
    rows.push({ label: 'Version', value: state.status.version });
    sections.push({ title: 'Runtime', rows });
  }
  const relay = state.relay;
  if (relay) {
    const rows: IRow[] = [];
    if (relay.kind === 'ok' && relay.body) {
      const r = relay.body;
      const tone: Tone = r.remote_gone || r.remote_unreachable ? 'bad' : 'good';
      rows.push({ label: 'Remote state', value: r.remote_state, tone });
      rows.push({ label: 'Upstream', value: r.upstream ?? 'none' });
      if (r.remote_gone) {
        rows.push({ label: 'Gone', value: r.remote_gone.reason, tone: 'bad' });
        rows.push({ label: 'Hint', value: r.remote_gone.hint });
      } else if (r.remote_unreachable) {
        rows.push({
          label: 'Unreachable',
          value: r.remote_unreachable.last_error ?? 'no answer',
          tone: 'bad'
        });
        rows.push({ label: 'Hint', value: r.remote_unreachable.hint });
      }
      rows.push({ label: 'Switches', value: String(r.switches) });
      if (r.last_error) {
        rows.push({ label: 'Last error', value: r.last_error });
      }
    } else if (relay.reason === 'not_a_relay') {
      rows.push({ label: 'Relay', value: 'the gateway is not a jupyter colab-tunnel relay' });
    } else {
      rows.push({ label: 'Relay', value: relay.label || 'no answer', tone: 'bad' });
      if (relay.message) {
        rows.push({ label: 'Why', value: relay.message });
      }
      if (relay.hint) {
        rows.push({ label: 'Hint', value: relay.hint });
      }
    }
    sections.push({ title: 'Relay', rows });
  }
  return sections;
}
