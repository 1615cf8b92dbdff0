import type { VcpuSample } from './sample.js';

/** Why a vCPU stopped running, as reported by its worker. */
export type VcpuStop =
  | { readonly reason: 'stopped' }
  | { readonly reason: 'shutdown' }
  | { readonly reason: 'reset' }
  | { readonly reason: 'triple-fault' }
  | { readonly reason: 'crash' }
  | { readonly reason: 'halted' }
  | { readonly reason: 'error'; readonly detail: string };

/** Messages from a vCPU worker to the main thread. */
export type VcpuMessage =
  | { readonly type: 'ready'; readonly thread: bigint }
  | { readonly type: 'stop'; readonly stop: VcpuStop }
  /** The answer to sample request `seq` (see mailbox SLOT.sampleRequest); null if the reads failed. */
  | { readonly type: 'sample'; readonly seq: number; readonly sample: VcpuSample | null };

export interface VcpuWorkerData {
  readonly id: number;
  readonly fd: number;
  readonly runAddress: bigint;
  readonly runSize: number;
  readonly mailbox: SharedArrayBuffer;
}
