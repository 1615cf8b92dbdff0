/**
 * The control channel between the app (parent) and one sandbox's VMM process
 * (child): Node's IPC channel with `serialization: 'advanced'`, so pixels
 * travel as Uint8Arrays without JSON. The parent builds every message it
 * sends; the child's messages come from a process that runs beside a hostile
 * guest, so the parent checks them with `parseChildMessage` (shapes, sizes,
 * text lengths) before anything else sees them.
 */

/** What one sandbox runs: built by the app from a validated request. */
export interface SandboxSpec {
  readonly kernel: string;
  readonly initrd: string;
  /** The guest image's read-only root filesystem (squashfs). */
  readonly rootfs: string;
  readonly cmdline: string;
  /** The item disk (read-only) when a file is opened. */
  readonly itemDisk?: string;
  /** The URL when a web page is opened. */
  readonly url?: string;
  readonly memoryMiB: number;
  readonly vcpus: number;
  readonly display: { readonly width: number; readonly height: number };
  /** `web`: the egress proxy lets the guest reach the public web; `none`: it refuses everything. */
  readonly network: 'none' | 'web';
  /** `ip:port` targets the proxy allows although they are private (end-to-end tests only). */
  readonly allowForTests?: readonly string[];
  /** Give up when the guest agent has not said `ready` by then. */
  readonly agentTimeoutMs: number;
}

export type SandboxInputEvent =
  | { readonly type: 'key'; readonly code: string; readonly down: boolean }
  | { readonly type: 'pointer-move'; readonly x: number; readonly y: number }
  | { readonly type: 'pointer-button'; readonly button: 'left' | 'middle' | 'right'; readonly down: boolean }
  | { readonly type: 'wheel'; readonly dx: number; readonly dy: number };

export type ParentMessage =
  | { readonly type: 'start'; readonly spec: SandboxSpec }
  | { readonly type: 'input'; readonly events: readonly SandboxInputEvent[] }
  | { readonly type: 'resize'; readonly width: number; readonly height: number }
  /** The oldest frame sent is consumed: one more may come. */
  | { readonly type: 'frame-ack' }
  /** Send the whole screen next (a display was attached). */
  | { readonly type: 'refresh' }
  | { readonly type: 'shutdown' };

export type SandboxStage = 'booting' | 'guest-ready' | 'opening' | 'shown';

export interface FrameRectMessage {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
  readonly pixels: Uint8Array;
}

export interface CursorMessage {
  readonly visible: boolean;
  readonly x: number;
  readonly y: number;
  readonly hotX: number;
  readonly hotY: number;
  readonly image?: { readonly width: number; readonly height: number; readonly pixels: Uint8Array };
}

export interface FrameMessage {
  readonly type: 'frame';
  readonly seq: number;
  readonly enabled: boolean;
  readonly full: boolean;
  readonly width: number;
  readonly height: number;
  readonly rects: readonly FrameRectMessage[];
  readonly cursor?: CursorMessage;
}

export type ChildMessage =
  /** `ms`: milliseconds since the VMM process started. */
  | { readonly type: 'stage'; readonly stage: SandboxStage; readonly ms: number }
  | {
      readonly type: 'page';
      readonly state: 'idle' | 'loading' | 'loaded' | 'error';
      readonly title?: string;
      readonly error?: string;
    }
  /** The first frame whose pixels are not all one colour. */
  | { readonly type: 'first-content'; readonly ms: number }
  | FrameMessage
  | { readonly type: 'exit'; readonly kind: string; readonly detail?: string; readonly console?: string };

// ------------------------------------------------------------------ validation (parent side)

export const CONTROL_LIMITS = {
  maxText: 2048,
  maxConsoleTail: 16 * 1024,
  maxScreenSide: 3840,
  maxRects: 64,
  maxCursorSide: 256,
} as const;

export class ControlError extends Error {
  override name = 'ControlError';
}

const STAGES: readonly SandboxStage[] = ['booting', 'guest-ready', 'opening', 'shown'];
const PAGE_STATES = ['idle', 'loading', 'loaded', 'error'] as const;

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function int(v: unknown, min: number, max: number, what: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw new ControlError(`bad ${what}`);
  return v;
}

function num(v: unknown, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) throw new ControlError(`bad ${what}`);
  return v;
}

function text(v: unknown, limit: number = CONTROL_LIMITS.maxText): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new ControlError('bad text');
  return v.length > limit ? v.slice(0, limit) : v;
}

function pixels(v: unknown, width: number, height: number, what: string): Uint8Array {
  if (!(v instanceof Uint8Array) || v.length !== width * height * 4) throw new ControlError(`bad ${what} pixels`);
  return v;
}

function parseFrame(m: Record<string, unknown>): FrameMessage {
  const width = int(m['width'], 0, CONTROL_LIMITS.maxScreenSide, 'frame width');
  const height = int(m['height'], 0, CONTROL_LIMITS.maxScreenSide, 'frame height');
  const rawRects = m['rects'];
  if (!Array.isArray(rawRects) || rawRects.length > CONTROL_LIMITS.maxRects) throw new ControlError('bad rects');
  const rects = rawRects.map((r: unknown): FrameRectMessage => {
    if (!isRecord(r)) throw new ControlError('bad rect');
    const x = int(r['x'], 0, width, 'rect x');
    const y = int(r['y'], 0, height, 'rect y');
    const w = int(r['width'], 1, width - x, 'rect width');
    const h = int(r['height'], 1, height - y, 'rect height');
    return { x, y, width: w, height: h, pixels: pixels(r['pixels'], w, h, 'rect') };
  });
  let cursor: CursorMessage | undefined;
  if (m['cursor'] !== undefined) {
    const c = m['cursor'];
    if (!isRecord(c)) throw new ControlError('bad cursor');
    const base = {
      visible: c['visible'] === true,
      x: int(c['x'], -65536, 65536, 'cursor x'),
      y: int(c['y'], -65536, 65536, 'cursor y'),
      hotX: int(c['hotX'], 0, CONTROL_LIMITS.maxCursorSide, 'cursor hotX'),
      hotY: int(c['hotY'], 0, CONTROL_LIMITS.maxCursorSide, 'cursor hotY'),
    };
    const image = c['image'];
    if (image === undefined) {
      cursor = base;
    } else {
      if (!isRecord(image)) throw new ControlError('bad cursor image');
      const cw = int(image['width'], 1, CONTROL_LIMITS.maxCursorSide, 'cursor width');
      const ch = int(image['height'], 1, CONTROL_LIMITS.maxCursorSide, 'cursor height');
      cursor = { ...base, image: { width: cw, height: ch, pixels: pixels(image['pixels'], cw, ch, 'cursor') } };
    }
  }
  return {
    type: 'frame',
    seq: int(m['seq'], 0, Number.MAX_SAFE_INTEGER, 'frame seq'),
    enabled: m['enabled'] === true,
    full: m['full'] === true,
    width,
    height,
    rects,
    ...(cursor ? { cursor } : {}),
  };
}

/** Checks one message from a VMM process; throws ControlError on anything unexpected. */
export function parseChildMessage(m: unknown): ChildMessage {
  if (!isRecord(m)) throw new ControlError('not an object');
  switch (m['type']) {
    case 'stage': {
      const stage = m['stage'];
      if (!STAGES.includes(stage as SandboxStage)) throw new ControlError('bad stage');
      return { type: 'stage', stage: stage as SandboxStage, ms: num(m['ms'], 'ms') };
    }
    case 'page': {
      const state = m['state'];
      if (!PAGE_STATES.includes(state as (typeof PAGE_STATES)[number])) throw new ControlError('bad page state');
      const title = text(m['title']);
      const error = text(m['error']);
      return {
        type: 'page',
        state: state as (typeof PAGE_STATES)[number],
        ...(title === undefined ? {} : { title }),
        ...(error === undefined ? {} : { error }),
      };
    }
    case 'first-content':
      return { type: 'first-content', ms: num(m['ms'], 'ms') };
    case 'frame':
      return parseFrame(m);
    case 'exit': {
      const kind = text(m['kind'], 32);
      if (kind === undefined) throw new ControlError('bad exit kind');
      const detail = text(m['detail']);
      const console = text(m['console'], CONTROL_LIMITS.maxConsoleTail);
      return {
        type: 'exit',
        kind,
        ...(detail === undefined ? {} : { detail }),
        ...(console === undefined ? {} : { console }),
      };
    }
    default:
      throw new ControlError('unknown message type');
  }
}
