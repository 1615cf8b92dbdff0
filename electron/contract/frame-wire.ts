/**
 * One display frame as one binary message (an ArrayBuffer over a MessagePort
 * in Electron, a binary WebSocket message in the test bridge). Main encodes,
 * the renderer decodes and draws; the decoder trusts nothing it is given.
 *
 * Layout, little-endian:
 *   header  (FRAME_HEADER_BYTES)
 *     u32 magic 'BJF1'   u32 seq
 *     u16 width          u16 height        screen size (0×0 when disabled)
 *     u8  flags          u8  rectCount     flags: FRAME_FLAGS
 *     u16 reserved (0)
 *     i32 cursorX        i32 cursorY       cursor's top-left corner in screen pixels
 *     u16 cursorHotX     u16 cursorHotY
 *     u16 cursorWidth    u16 cursorHeight  image size when FRAME_FLAGS.cursorImage
 *   rectCount × rect     u16 x, u16 y, u16 width, u16 height, then width×height×4 pixel bytes
 *   cursor image         cursorWidth×cursorHeight×4 bytes when FRAME_FLAGS.cursorImage
 * Pixels are RGBA8888 (ImageData's layout), rows packed.
 */

export const FRAME_MAGIC = 0x31464a42; // 'BJF1' read as a little-endian u32
export const FRAME_HEADER_BYTES = 36;
export const FRAME_RECT_HEADER_BYTES = 8;
/** Most rectangles in one frame (the VMM's damage region holds fewer). */
export const MAX_FRAME_RECTS = 64;
export const MAX_SCREEN_SIDE = 3840;
export const MAX_CURSOR_SIDE = 256;
const BYTES_PER_PIXEL = 4;

export const FRAME_FLAGS = {
  /** The guest shows something (else draw black). */
  enabled: 1,
  /** The screen was replaced: resize the canvas, the rects cover it all. */
  full: 2,
  /** The cursor's state is in this frame. */
  cursor: 4,
  /** ... and its image changed (the image follows the rects). */
  cursorImage: 8,
  /** The cursor is visible. */
  cursorVisible: 16,
} as const;

export interface WireRect {
  readonly x: number;
  readonly y: number;
  readonly width: number;
  readonly height: number;
  /** RGBA8888, width × height × 4 bytes. */
  readonly pixels: Uint8Array;
}

export interface WireCursor {
  readonly visible: boolean;
  readonly x: number;
  readonly y: number;
  readonly hotX: number;
  readonly hotY: number;
  /** Present when the image changed. */
  readonly image?: { readonly width: number; readonly height: number; readonly pixels: Uint8Array };
}

export interface WireFrame {
  readonly seq: number;
  readonly enabled: boolean;
  readonly full: boolean;
  readonly width: number;
  readonly height: number;
  readonly rects: readonly WireRect[];
  readonly cursor?: WireCursor;
}

export class FrameWireError extends Error {
  override name = 'FrameWireError';
}

function check(condition: boolean, message: string): asserts condition {
  if (!condition) throw new FrameWireError(`frame: ${message}`);
}

function checkRect(r: WireRect, width: number, height: number): void {
  check(
    Number.isInteger(r.x) && Number.isInteger(r.y) && Number.isInteger(r.width) && Number.isInteger(r.height),
    'rect fields must be integers',
  );
  check(r.width > 0 && r.height > 0, 'empty rect');
  check(r.x >= 0 && r.y >= 0 && r.x + r.width <= width && r.y + r.height <= height, 'rect outside the screen');
  check(r.pixels.length === r.width * r.height * BYTES_PER_PIXEL, 'rect pixel count does not match its size');
}

/** The encoded size, so a caller can check budgets before encoding. */
export function encodedFrameBytes(frame: WireFrame): number {
  let bytes = FRAME_HEADER_BYTES;
  for (const r of frame.rects) bytes += FRAME_RECT_HEADER_BYTES + r.pixels.length;
  if (frame.cursor?.image) bytes += frame.cursor.image.pixels.length;
  return bytes;
}

export function encodeFrame(frame: WireFrame): ArrayBuffer {
  check(frame.width <= MAX_SCREEN_SIDE && frame.height <= MAX_SCREEN_SIDE, 'screen too large');
  check(frame.rects.length <= MAX_FRAME_RECTS, 'too many rects');
  for (const r of frame.rects) checkRect(r, frame.width, frame.height);
  const image = frame.cursor?.image;
  if (image) {
    check(image.width <= MAX_CURSOR_SIDE && image.height <= MAX_CURSOR_SIDE, 'cursor too large');
    check(image.pixels.length === image.width * image.height * BYTES_PER_PIXEL, 'cursor pixel count');
  }
  const buffer = new ArrayBuffer(encodedFrameBytes(frame));
  const view = new DataView(buffer);
  const bytes = new Uint8Array(buffer);
  const cursor = frame.cursor;
  const flags =
    (frame.enabled ? FRAME_FLAGS.enabled : 0) |
    (frame.full ? FRAME_FLAGS.full : 0) |
    (cursor ? FRAME_FLAGS.cursor : 0) |
    (image ? FRAME_FLAGS.cursorImage : 0) |
    (cursor?.visible ? FRAME_FLAGS.cursorVisible : 0);
  view.setUint32(0, FRAME_MAGIC, true);
  view.setUint32(4, frame.seq >>> 0, true);
  view.setUint16(8, frame.width, true);
  view.setUint16(10, frame.height, true);
  view.setUint8(12, flags);
  view.setUint8(13, frame.rects.length);
  view.setUint16(14, 0, true);
  view.setInt32(16, cursor?.x ?? 0, true);
  view.setInt32(20, cursor?.y ?? 0, true);
  view.setUint16(24, cursor?.hotX ?? 0, true);
  view.setUint16(26, cursor?.hotY ?? 0, true);
  view.setUint16(28, image?.width ?? 0, true);
  view.setUint16(30, image?.height ?? 0, true);
  view.setUint32(32, 0, true);
  let at = FRAME_HEADER_BYTES;
  for (const r of frame.rects) {
    view.setUint16(at, r.x, true);
    view.setUint16(at + 2, r.y, true);
    view.setUint16(at + 4, r.width, true);
    view.setUint16(at + 6, r.height, true);
    bytes.set(r.pixels, at + FRAME_RECT_HEADER_BYTES);
    at += FRAME_RECT_HEADER_BYTES + r.pixels.length;
  }
  if (image) bytes.set(image.pixels, at);
  return buffer;
}

/** Decodes and validates; the pixel arrays are views into `buffer` (no copy). */
export function decodeFrame(buffer: ArrayBuffer): WireFrame {
  check(buffer.byteLength >= FRAME_HEADER_BYTES, 'shorter than its header');
  const view = new DataView(buffer);
  check(view.getUint32(0, true) === FRAME_MAGIC, 'bad magic');
  const seq = view.getUint32(4, true);
  const width = view.getUint16(8, true);
  const height = view.getUint16(10, true);
  const flags = view.getUint8(12);
  const rectCount = view.getUint8(13);
  check(width <= MAX_SCREEN_SIDE && height <= MAX_SCREEN_SIDE, 'screen too large');
  check(rectCount <= MAX_FRAME_RECTS, 'too many rects');
  const rects: WireRect[] = [];
  let at = FRAME_HEADER_BYTES;
  for (let i = 0; i < rectCount; i++) {
    check(at + FRAME_RECT_HEADER_BYTES <= buffer.byteLength, 'truncated rect header');
    const x = view.getUint16(at, true);
    const y = view.getUint16(at + 2, true);
    const w = view.getUint16(at + 4, true);
    const h = view.getUint16(at + 6, true);
    const size = w * h * BYTES_PER_PIXEL;
    at += FRAME_RECT_HEADER_BYTES;
    check(at + size <= buffer.byteLength, 'truncated rect pixels');
    const rect = { x, y, width: w, height: h, pixels: new Uint8Array(buffer, at, size) };
    checkRect(rect, width, height);
    rects.push(rect);
    at += size;
  }
  let cursor: WireCursor | undefined;
  if (flags & FRAME_FLAGS.cursor) {
    const base = {
      visible: (flags & FRAME_FLAGS.cursorVisible) !== 0,
      x: view.getInt32(16, true),
      y: view.getInt32(20, true),
      hotX: view.getUint16(24, true),
      hotY: view.getUint16(26, true),
    };
    if (flags & FRAME_FLAGS.cursorImage) {
      const cw = view.getUint16(28, true);
      const ch = view.getUint16(30, true);
      check(cw <= MAX_CURSOR_SIDE && ch <= MAX_CURSOR_SIDE, 'cursor too large');
      const size = cw * ch * BYTES_PER_PIXEL;
      check(at + size <= buffer.byteLength, 'truncated cursor image');
      cursor = { ...base, image: { width: cw, height: ch, pixels: new Uint8Array(buffer, at, size) } };
      at += size;
    } else {
      cursor = base;
    }
  }
  check(at === buffer.byteLength, 'trailing bytes');
  return {
    seq,
    enabled: (flags & FRAME_FLAGS.enabled) !== 0,
    full: (flags & FRAME_FLAGS.full) !== 0,
    width,
    height,
    rects,
    ...(cursor ? { cursor } : {}),
  };
}
