/** Answers shaped as docs/openapi.yaml and docs/relay-openapi.yaml say. */

import { IGpuDevice, IGpuSample, IRelayStatus, IStatus, ITunnelSnapshot } from '../types';

const GiB = 2 ** 30;

export function device(overrides: Partial<IGpuDevice> = {}): IGpuDevice {
  return {
    index: 0,
    name: 'Tesla T4',
    uuid: 'GPU-0',
    lost: false,
    memory: { total: 15 * GiB, used: 1.5 * GiB },
    utilization: { gpu: 37, memory: 10 },
    processes: [],
    ...overrides
  };
}

export function sample(devices: IGpuDevice[]): IGpuSample {
  return { available: devices.length > 0, count: devices.length, error: null, devices };
}

export function tunnel(overrides: Partial<ITunnelSnapshot> = {}): ITunnelSnapshot {
  return {
    state: 'ready',
    mode: 'quick',
    url: 'https://one-two.trycloudflare.com',
    restarts: 0,
    error: null,
    next_retry_at: null,
    ...overrides
  };
}

export function status(life: Partial<IStatus['life']> = {}): IStatus {
  return {
    version: '0.1.0',
    life: {
      machine_started_at: '2026-01-01T00:00:00Z',
      uptime_seconds: 3600,
      estimated_end_at: null,
      estimated_end_reason: null,
      ...life
    }
  };
}

export function relay(overrides: Partial<IRelayStatus> = {}): IRelayStatus {
  return {
    upstream: 'https://one-two.trycloudflare.com',
    remote_state: 'ready',
    remote_unreachable: null,
    remote_gone: null,
    switches: 0,
    last_error: null,
    ...overrides
  };
}

export const GIB = GiB;
