/**
 * The test bridge's wire protocol: the same `BelljarApi` as the preload, over
 * one WebSocket (the bridge serves the built renderer and this socket on
 * loopback, so Chromium driven by Playwright runs the real UI against the
 * real session service without the Electron binary).
 *
 * Text messages are JSON:
 *   client → bridge  { id, method, params }          a call; `id` is the client's
 *                    { method: 'frameAck', params: [sandboxId] }   one frame drawn
 *   bridge → client  { id, result } | { id, error }   the answer to call `id`
 *                    { event: 'sandboxes', list }     the whole list, on every change
 * Binary messages (bridge → client) are frames: u8 idLength, the sandbox id in
 * ASCII, then one frame in the frame-wire format. At most
 * BRIDGE_FRAMES_IN_FLIGHT unacknowledged frames per display.
 */
import type { SandboxSummary } from './ipc.js';

export const BRIDGE_WS_PATH = '/belljar';
export const BRIDGE_FRAMES_IN_FLIGHT = 2;
/** Largest text message either side accepts. */
export const BRIDGE_MAX_TEXT_BYTES = 64 * 1024;

export type BridgeMethod =
  'listSandboxes' | 'open' | 'pickAndOpenFile' | 'close' | 'input' | 'resize' | 'attachDisplay' | 'detachDisplay';

export const BRIDGE_METHODS: readonly BridgeMethod[] = [
  'listSandboxes',
  'open',
  'pickAndOpenFile',
  'close',
  'input',
  'resize',
  'attachDisplay',
  'detachDisplay',
];

export interface BridgeCall {
  readonly id: number;
  readonly method: BridgeMethod;
  readonly params: readonly unknown[];
}

export interface BridgeFrameAck {
  readonly method: 'frameAck';
  readonly params: readonly [string];
}

export type BridgeServerMessage =
  | { readonly id: number; readonly result: unknown }
  | { readonly id: number; readonly error: string }
  | { readonly event: 'sandboxes'; readonly list: readonly SandboxSummary[] };

/** Prefixes a frame with its sandbox id. */
export function packBridgeFrame(sandboxId: string, frame: ArrayBuffer): Uint8Array {
  const id = new TextEncoder().encode(sandboxId);
  if (id.length > 255) throw new Error('bridge: sandbox id too long');
  const out = new Uint8Array(1 + id.length + frame.byteLength);
  out[0] = id.length;
  out.set(id, 1);
  out.set(new Uint8Array(frame), 1 + id.length);
  return out;
}

/** Splits a binary bridge message into its sandbox id and frame bytes (a copy, aligned). */
export function unpackBridgeFrame(message: ArrayBuffer): { sandboxId: string; frame: ArrayBuffer } {
  const bytes = new Uint8Array(message);
  if (bytes.length < 1 || bytes.length < 1 + bytes[0]!) throw new Error('bridge: truncated frame message');
  const idLength = bytes[0]!;
  const sandboxId = new TextDecoder().decode(bytes.subarray(1, 1 + idLength));
  return { sandboxId, frame: message.slice(1 + idLength) };
}
