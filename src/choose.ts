/**
 * Which GPU the item shows, and which kernel holds what on each GPU. No JupyterLab imports.
 */

import { IGpuDevice, IGpuSample } from './types';

export interface IChosenGpu {
  device: IGpuDevice;
  /** kernel: the current notebook's kernel has a process on it; busiest: no such process. */
  why: 'kernel' | 'busiest';
}

function usedFraction(device: IGpuDevice): number {
  const used = device.memory?.used ?? 0;
  const total = device.memory?.total ?? 0;
  return total > 0 ? used / total : 0;
}

/**
 * The GPU of the kernel `kernelId` (the current notebook's; in gateway mode the local ids are
 * the remote's), else the busiest one: highest utilization, then the fullest memory, then the
 * lowest index. Null when the sample has no readable GPU.
 */
export function chooseGpu(
  sample: IGpuSample | null,
  kernelId: string | null
): IChosenGpu | null {
  const devices = (sample?.devices ?? []).filter(d => !d.lost);
  if (devices.length === 0) {
    return null;
  }
  if (kernelId) {
    const mine = devices
      .filter(d => (d.processes ?? []).some(p => p.kernel_id === kernelId))
      .sort((a, b) => kernelMemory(b, kernelId) - kernelMemory(a, kernelId));
    if (mine.length > 0) {
      return { device: mine[0], why: 'kernel' };
    }
  }
  const busiest = [...devices].sort(
    (a, b) =>
      (b.utilization?.gpu ?? -1) - (a.utilization?.gpu ?? -1) ||
      usedFraction(b) - usedFraction(a) ||
      a.index - b.index
  );
  return { device: busiest[0], why: 'busiest' };
}

/** Bytes the processes of one kernel hold on a device. */
export function kernelMemory(device: IGpuDevice, kernelId: string): number {
  return (device.processes ?? [])
    .filter(p => p.kernel_id === kernelId)
    .reduce((sum, p) => sum + (p.used_memory ?? 0), 0);
}

export interface IKernelUse {
  /** The notebook's path (the local session's, else the remote's), else the kernel's id. */
  label: string;
  kernelId: string | null;
  bytes: number | null;
}

/**
 * What holds memory on a device, one row per kernel (its processes added up), then one per
 * process that is no kernel of the remote's; largest first. `paths` maps kernel ids to notebook
 * paths from the local sessions.
 */
export function kernelUses(device: IGpuDevice, paths: Map<string, string>): IKernelUse[] {
  const byKernel = new Map<string, IKernelUse>();
  const others: IKernelUse[] = [];
  for (const p of device.processes ?? []) {
    if (p.kernel_id === null) {
      others.push({ label: p.name ?? `pid ${p.pid}`, kernelId: null, bytes: p.used_memory });
      continue;
    }
    const row = byKernel.get(p.kernel_id);
    if (row) {
      row.bytes =
        row.bytes === null && p.used_memory === null
          ? null
          : (row.bytes ?? 0) + (p.used_memory ?? 0);
      continue;
    }
    const label =
      paths.get(p.kernel_id) ?? p.notebook_path ?? `kernel ${p.kernel_id.slice(0, 8)}`;
    byKernel.set(p.kernel_id, { label, kernelId: p.kernel_id, bytes: p.used_memory });
  }
  const rows = [...byKernel.values(), ...others];
  return rows.sort((a, b) => (b.bytes ?? -1) - (a.bytes ?? -1));
}
