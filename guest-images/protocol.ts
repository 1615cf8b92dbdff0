/**
 * The host side of the guest agent protocol (version 1): length-prefixed JSON
 * over any byte stream (virtio-vsock in the product, a virtserialport in the
 * smoke test). Each frame is a 4-byte big-endian length, then that many bytes
 * of UTF-8 JSON holding one object with `v` (the protocol version) and `type`.
 *
 * The guest is untrusted: every frame it sends is size-limited, parsed and
 * validated field by field here before anything else sees it.
 */

export const PROTOCOL_VERSION = 1;
/** Largest frame either side accepts (the agent enforces the same limit). */
export const MAX_FRAME_BYTES = 1 << 20;
/** Longest string the host keeps from a guest message. */
const MAX_STRING = 8192;
/** Largest display side a guest may report (far above any real screen). */
const MAX_DISPLAY_SIDE = 16384;

// ---------------------------------------------------------------- host → guest
export type HostMessage =
  | { readonly v: 1; readonly type: 'open'; readonly id: number; readonly item: { readonly disk: string } }
  | { readonly v: 1; readonly type: 'open'; readonly id: number; readonly url: string }
  | { readonly v: 1; readonly type: 'status'; readonly id: number }
  | { readonly v: 1; readonly type: 'display'; readonly id: number; readonly width: number; readonly height: number }
  | { readonly v: 1; readonly type: 'shutdown'; readonly id: number };

// ---------------------------------------------------------------- guest → host
export type PageState = 'idle' | 'loading' | 'loaded' | 'error';

export interface ReadyMessage {
  readonly type: 'ready';
  readonly protocol: number;
  readonly agent: string;
  /** Guest uptime in ms at each boot mark (`init`, `rootfs`, `stage2`, `seatd`, `viewer`, `agent_ready`, …). */
  readonly timings: Readonly<Record<string, number>>;
}
export interface StatusMessage {
  readonly type: 'status';
  readonly id?: number;
  readonly state: PageState;
  readonly url?: string;
  readonly title?: string;
  readonly error?: string;
  readonly elapsedMs?: number;
  /** Guest uptime (ms) when the message was sent, and when Chromium's DevTools first answered. */
  readonly uptimeMs?: number;
  readonly devtoolsMs?: number;
}
export interface ErrorMessage {
  readonly type: 'error';
  readonly id?: number;
  readonly message: string;
}
export interface ByeMessage {
  readonly type: 'bye';
  readonly id?: number;
}
/** The guest's compositor now shows this mode (the answer to a host `display`). */
export interface DisplayMessage {
  readonly type: 'display';
  readonly id?: number;
  readonly width: number;
  readonly height: number;
}
export type GuestMessage = ReadyMessage | StatusMessage | ErrorMessage | ByeMessage | DisplayMessage;

export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

export function encodeFrame(message: HostMessage): Buffer {
  const json = Buffer.from(JSON.stringify(message), 'utf8');
  if (json.length > MAX_FRAME_BYTES) throw new ProtocolError(`message of ${json.length} bytes is over the frame limit`);
  const frame = Buffer.alloc(4 + json.length);
  frame.writeUInt32BE(json.length, 0);
  json.copy(frame, 4);
  return frame;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function optString(obj: Record<string, unknown>, key: string): string | undefined {
  const value = obj[key];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== 'string') throw new ProtocolError(`${key} must be a string`);
  return value.length > MAX_STRING ? value.slice(0, MAX_STRING) : value;
}

function optId(obj: Record<string, unknown>): { id?: number } {
  const id = obj['id'];
  if (id === undefined || id === null) return {};
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0)
    throw new ProtocolError('id must be a non-negative integer');
  return { id };
}

function optNumber<K extends string>(obj: Record<string, unknown>, key: string, as: K): { [P in K]?: number } {
  const value = obj[key];
  return typeof value === 'number' && Number.isFinite(value) ? ({ [as]: value } as { [P in K]?: number }) : {};
}

const STATES: ReadonlySet<string> = new Set<PageState>(['idle', 'loading', 'loaded', 'error']);

/** Validates one decoded guest message; throws ProtocolError when it is not one. */
export function parseGuestMessage(value: unknown): GuestMessage {
  if (!isRecord(value)) throw new ProtocolError('a message must be a JSON object');
  if (value['v'] !== PROTOCOL_VERSION) throw new ProtocolError(`unsupported protocol version ${String(value['v'])}`);
  const type = value['type'];
  switch (type) {
    case 'ready': {
      const protocol = value['protocol'];
      if (protocol !== PROTOCOL_VERSION) throw new ProtocolError(`agent speaks protocol ${String(protocol)}`);
      const timings: Record<string, number> = {};
      const raw = value['timings'];
      if (isRecord(raw)) {
        for (const [k, v] of Object.entries(raw).slice(0, 64)) {
          if (/^[a-z_]{1,32}$/.test(k) && typeof v === 'number' && Number.isFinite(v)) timings[k] = v;
        }
      }
      return { type, protocol, agent: optString(value, 'agent') ?? 'unknown', timings };
    }
    case 'status': {
      const state = value['state'];
      if (typeof state !== 'string' || !STATES.has(state)) throw new ProtocolError('status.state is not a known state');
      const elapsed = value['elapsed_ms'];
      const url = optString(value, 'url');
      const title = optString(value, 'title');
      const error = optString(value, 'error');
      return {
        type,
        ...optId(value),
        state: state as PageState,
        ...(url !== undefined ? { url } : {}),
        ...(title !== undefined ? { title } : {}),
        ...(error !== undefined ? { error } : {}),
        ...(typeof elapsed === 'number' && Number.isFinite(elapsed) ? { elapsedMs: elapsed } : {}),
        ...optNumber(value, 'uptime_ms', 'uptimeMs'),
        ...optNumber(value, 'devtools_ms', 'devtoolsMs'),
      };
    }
    case 'error':
      return { type, ...optId(value), message: optString(value, 'message') ?? 'unspecified error' };
    case 'bye':
      return { type, ...optId(value) };
    case 'display': {
      const side = (key: string): number => {
        const n = value[key];
        if (typeof n !== 'number' || !Number.isSafeInteger(n) || n <= 0 || n > MAX_DISPLAY_SIDE)
          throw new ProtocolError(`display.${key} must be a whole number from 1 to ${MAX_DISPLAY_SIDE}`);
        return n;
      };
      return { type, ...optId(value), width: side('width'), height: side('height') };
    }
    default:
      throw new ProtocolError(`unknown message type ${JSON.stringify(type)}`);
  }
}

/**
 * Reassembles frames from stream chunks. A frame that is empty or over the
 * limit poisons the stream (the length can no longer be trusted): `push`
 * throws and every later call throws too.
 */
export class FrameDecoder {
  private buffer: Buffer = Buffer.alloc(0);
  private broken: ProtocolError | undefined;

  constructor(private readonly maxFrame = MAX_FRAME_BYTES) {}

  /** Returns the raw JSON values of the frames completed by `chunk`. */
  pushRaw(chunk: Uint8Array): unknown[] {
    if (this.broken) throw this.broken;
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : Buffer.from(chunk);
    const out: unknown[] = [];
    while (this.buffer.length >= 4) {
      const length = this.buffer.readUInt32BE(0);
      if (length === 0 || length > this.maxFrame) {
        this.broken = new ProtocolError(`frame of ${length} bytes refused (limit ${this.maxFrame})`);
        throw this.broken;
      }
      if (this.buffer.length < 4 + length) break;
      const json = this.buffer.subarray(4, 4 + length).toString('utf8');
      this.buffer = this.buffer.subarray(4 + length);
      try {
        out.push(JSON.parse(json) as unknown);
      } catch {
        out.push(new ProtocolError('frame is not valid JSON'));
      }
    }
    return out;
  }

  /** Frames completed by `chunk`, each validated; invalid ones come back as ProtocolError values. */
  push(chunk: Uint8Array): (GuestMessage | ProtocolError)[] {
    return this.pushRaw(chunk).map((value) => {
      if (value instanceof ProtocolError) return value;
      try {
        return parseGuestMessage(value);
      } catch (error) {
        return error instanceof ProtocolError ? error : new ProtocolError(String(error));
      }
    });
  }
}
