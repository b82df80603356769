/**
 * The parts of the answers of /colab/remote/* that the status item reads. Each mirrors a schema
 * of docs/openapi.yaml (the remote's /colab/*) or docs/relay-openapi.yaml (the relay's
 * /relay/status); fields the item does not read are left out.
 */

export type TunnelState =
  | 'off'
  | 'starting'
  | 'connecting'
  | 'ready'
  | 'backoff'
  | 'stopping'
  | 'stopped'
  | 'failed';

/** A `{kind, message, hint}` error, as the remote and the local handlers write them. */
export interface IProblem {
  kind: string;
  message: string;
  hint: string;
}

/** GpuDevice.processes[] */
export interface IGpuProcess {
  pid: number;
  name: string | null;
  used_memory: number | null;
  kernel_id: string | null;
  notebook_path: string | null;
}

/** GpuDevice */
export interface IGpuDevice {
  index: number;
  name: string | null;
  uuid: string | null;
  lost: boolean;
  memory: { total: number | null; used: number | null } | null;
  utilization: { gpu: number | null; memory: number | null } | null;
  processes: IGpuProcess[] | null;
}

/** GpuSample: GET /colab/gpu */
export interface IGpuSample {
  available: boolean;
  count: number;
  error: IProblem | null;
  devices: IGpuDevice[];
}

/** TunnelSnapshot: GET /colab/tunnel */
export interface ITunnelSnapshot {
  state: TunnelState;
  mode: string;
  url: string | null;
  restarts: number;
  error: IProblem | null;
  next_retry_at: string | null;
}

/** Life, in Status */
export interface ILife {
  machine_started_at: string | null;
  uptime_seconds: number | null;
  estimated_end_at: string | null;
  estimated_end_reason: string | null;
}

/** Status: GET /colab/status */
export interface IStatus {
  version: string;
  life: ILife;
}

/** RelayStatus: the relay's GET /relay/status */
export interface IRelayStatus {
  upstream: string | null;
  remote_state: string;
  remote_unreachable: { since: string; last_error: string | null; hint: string } | null;
  remote_gone: { since: string; reason: string; hint: string } | null;
  switches: number;
  last_error: string | null;
}
