/** Words and numbers for the status item. No JupyterLab imports: unit-tested on its own. */

import { TunnelState } from './types';

// Words in NVIDIA's device names that say nothing a user picks a runtime by: vendor, product
// line, form factor, memory kind.
const NAME_NOISE = /^(nvidia|tesla|geforce|quadro|sxm\d*|pcie|hbm\d*e?|nvl|gpu)$/i;

/**
 * The short name of a GPU: "Tesla T4" -> "T4", "NVIDIA A100-SXM4-40GB" -> "A100 40GB",
 * "NVIDIA H100 80GB HBM3" -> "H100 80GB", "NVIDIA GeForce RTX 3090" -> "RTX 3090". A MIG
 * instance keeps its profile ("A100 40GB MIG 1g.5gb").
 */
export function shortGpuName(name: string | null | undefined): string {
  if (!name) {
    return 'GPU';
  }
  const mig = name.search(/\sMIG\s/);
  const base = mig < 0 ? name : name.slice(0, mig);
  const rest = mig < 0 ? '' : name.slice(mig).trim();
  const words = base
    .split(/[\s-]+/)
    .filter(word => word && !NAME_NOISE.test(word))
    .map(word => word.replace(/^(\d+)gb$/i, '$1GB'));
  const short = words.join(' ') || name.trim();
  return rest ? `${short} ${rest}` : short;
}

/** Bytes in GiB (one decimal below 10 GiB), MiB below 1 GiB: "15.0 GiB", "512 MiB". */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !isFinite(bytes) || bytes < 0) {
    return '?';
  }
  const gib = bytes / 2 ** 30;
  if (gib >= 10) {
    return `${Math.round(gib)} GiB`;
  }
  if (gib >= 1) {
    return `${gib.toFixed(1)} GiB`;
  }
  return `${Math.round(bytes / 2 ** 20)} MiB`;
}

/** Memory as "used/total GiB" in one unit where both are GiB: "1.2/15.0 GiB". */
export function formatMemory(used: number | null, total: number | null): string {
  const u = formatBytes(used);
  const t = formatBytes(total);
  const unit = ' GiB';
  if (u.endsWith(unit) && t.endsWith(unit)) {
    return `${u.slice(0, -unit.length)}/${t}`;
  }
  return `${u}/${t}`;
}

export function formatPercent(percent: number | null | undefined): string {
  return percent === null || percent === undefined ? '?%' : `${Math.round(percent)}%`;
}

/** Seconds as "2h 05m", "12m", "45s", "3d 4h". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) {
    return `${d}d ${h}h`;
  }
  if (h > 0) {
    return `${h}h ${String(m).padStart(2, '0')}m`;
  }
  if (m > 0) {
    return `${m}m`;
  }
  return `${s}s`;
}

/** The tunnel's state in words a user reads without the colour. */
export function tunnelStateText(state: TunnelState | string): string {
  switch (state) {
    case 'ready':
      return 'ready';
    case 'starting':
      return 'starting';
    case 'connecting':
      return 'connecting';
    case 'backoff':
      return 'restarting';
    case 'stopping':
      return 'stopping';
    case 'stopped':
      return 'stopped';
    case 'failed':
      return 'failed';
    case 'off':
      return 'off';
    default:
      return String(state);
  }
}

/** good (ready), busy (on its way), bad (down): the colour class's suffix. */
export function tunnelTone(state: TunnelState | string): 'good' | 'busy' | 'bad' {
  switch (state) {
    case 'ready':
      return 'good';
    case 'starting':
    case 'connecting':
    case 'backoff':
      return 'busy';
    default:
      return 'bad';
  }
}
