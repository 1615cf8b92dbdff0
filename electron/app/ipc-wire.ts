/**
 * The few IPC details that only the main process and the preload share (the
 * renderer never sees them, so they are not part of `contract/`): how an
 * invoke answers, how a display port is announced, and the frame ack. Imports
 * only the contract, because the sandboxed preload bundles it.
 */
import { ContractError } from '../contract/ipc.js';

/**
 * Every `invoke` answers with this envelope instead of throwing: Electron
 * would wrap a thrown error as "Error invoking remote method …" with main's
 * stack, while the envelope carries only a plain-words message that the
 * preload rethrows as a clean `Error`.
 */
export type IpcResult<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: string };

/** What the renderer's end of a display port posts back after each frame. */
export const FRAME_ACK = 'ack';

/**
 * The data that accompanies a display port (IPC_CHANNELS.displayPort). `key`
 * is the preload's own number for one `attachDisplay` call, so a port is
 * matched to its call even when the same sandbox is attached twice.
 */
export interface DisplayPortAnnouncement {
  readonly id: string;
  readonly key: number;
}

export function parseAttachKey(value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new ContractError('attachDisplay: key must be a non-negative integer');
  }
  return value;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

/** Unwraps an envelope in the preload: the value, or a thrown `Error` with main's message. */
export function unwrapResult(answer: unknown): unknown {
  if (isRecord(answer) && answer['ok'] === true) return answer['value'];
  if (isRecord(answer) && answer['ok'] === false && typeof answer['error'] === 'string') {
    throw new Error(answer['error']);
  }
  throw new Error('Belljar: unexpected answer from the main process');
}

export function parseDisplayPortAnnouncement(value: unknown): DisplayPortAnnouncement | null {
  if (!isRecord(value) || typeof value['id'] !== 'string') return null;
  try {
    return { id: value['id'], key: parseAttachKey(value['key']) };
  } catch {
    return null;
  }
}
