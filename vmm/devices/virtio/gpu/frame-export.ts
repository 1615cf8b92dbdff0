/**
 * The frame export API: how the app gets the guest's screen out of the
 * virtio-gpu model.
 *
 * Pixel format: **RGBA8888**, bytes R, G, B, A in memory (alpha is always
 * 255 for the screen), rows packed without padding (stride = width × 4). That
 * is `ImageData`'s layout, so a renderer draws a rectangle with
 * `ctx.putImageData(new ImageData(pixels, width, height), x, y)` and no
 * further conversion; docs/display.md explains the choice.
 *
 * Flow control is by pull with a bounded number of frames in flight:
 *
 *   const stop = gpu.frames.subscribe((frame) => {
 *     send(frame, () => frame.release());   // release when the bytes are gone
 *   });
 *
 * The exporter calls the listener (from a `setImmediate`, never inside guest
 * command processing) when something changed and fewer than
 * `maxFramesInFlight` frames are unreleased. Damage that arrives meanwhile is
 * coalesced into a bounded region (see damage.ts), and the pixels are read
 * from the host-side resource only when the frame is built, so a slow consumer
 * costs neither memory nor conversion work: it just gets fewer, larger
 * frames. `takeFrame()` is the same thing without the listener (tests,
 * polling consumers).
 *
 * A frame's `pixels` are views into a pooled buffer that stays valid until
 * `release()`; after that the memory is reused or detached. Copy what you
 * need to keep.
 */
import { DamageRegion } from './damage.js';
import { encodePng } from './png.js';
import type { PngOptions } from './png.js';
import { convertInPlace, createScratch } from './pixel-convert.js';
import type { PixelScratch } from './pixel-convert.js';
import type { FormatLayout, Rect } from './protocol.js';

/** The one pixel format of everything this module exports. */
export const EXPORT_PIXEL_FORMAT = 'rgba8888';

/** What a scanout shows: a rectangle of a host-side resource. */
export interface ScanoutSource {
  /** Identity of the resource (a change of resource repaints the whole screen). */
  readonly resourceId: number;
  /** The resource's pixels: rows of `stride` bytes in `layout`. */
  readonly pixels: Uint8Array;
  readonly stride: number;
  readonly layout: FormatLayout;
  /** The shown rectangle, in resource pixels; its size is the screen size. */
  readonly rect: Rect;
}

/** One damaged rectangle of a frame and its pixels. */
export interface FrameRect extends Rect {
  /** RGBA8888, `width × height × 4` bytes, stride `width × 4`. Valid until the frame is released. */
  readonly pixels: Uint8Array;
}

/** A cursor image: RGBA8888 with straight (not premultiplied) alpha. */
export interface CursorImage {
  readonly width: number;
  readonly height: number;
  readonly pixels: Uint8Array;
}

export interface CursorState {
  readonly visible: boolean;
  /** Top-left corner of the cursor image in screen pixels (may be negative). */
  readonly x: number;
  readonly y: number;
  /** Hot spot inside the image: the pointer is at (x + hotX, y + hotY). */
  readonly hotX: number;
  readonly hotY: number;
  /** Changes whenever the image changes. */
  readonly imageSerial: number;
  /** The image when `imageSerial` changed since the previous frame, else null (keep the one you have). */
  readonly image: CursorImage | null;
}

export interface DisplayFrame {
  /** 1, 2, 3, … per exporter. */
  readonly seq: number;
  /** False when the guest shows nothing (no scanout set, or it was disabled): draw black. */
  readonly enabled: boolean;
  /** Screen size in pixels (the guest's scanout rectangle); 0×0 when disabled. */
  readonly width: number;
  readonly height: number;
  /**
   * The screen was replaced: size, resource or enabled state changed, or
   * `invalidate()` was called. `rects` then covers the whole screen; resize
   * the canvas to width × height before drawing.
   */
  readonly full: boolean;
  /** Pairwise disjoint damaged rectangles, at most MAX_DAMAGE_RECTS. */
  readonly rects: readonly FrameRect[];
  /** The cursor when it changed since the previous frame, else null. */
  readonly cursor: CursorState | null;
  /** Give the pixel memory back. Idempotent; required before more than `maxFramesInFlight` frames come. */
  release(): void;
}

export interface FrameExportOptions {
  /** Frames handed out and not yet released, at most. Default 2, range 1–8. */
  readonly maxFramesInFlight?: number;
  /** Use the WebAssembly SIMD converter when the runtime has it. Default true. */
  readonly simd?: boolean;
}

export interface Snapshot {
  readonly width: number;
  readonly height: number;
  /** RGBA8888, owned by the caller. */
  readonly pixels: Uint8Array;
}

export interface FrameExportStats {
  frames: number;
  /** Pixel bytes exported. */
  bytes: number;
  /** Listener calls that threw (the frame is released for it). */
  listenerErrors: number;
  /** Frames not built because an export buffer could not be allocated (retried on the next change). */
  allocationFailures: number;
}

const DEFAULT_IN_FLIGHT = 2;
const MAX_IN_FLIGHT = 8;
/** A pooled buffer much larger than needed is dropped rather than kept (bytes of slack allowed). */
const POOL_SLACK_BYTES = 4 * 1024 * 1024;

interface CursorInternal {
  visible: boolean;
  x: number;
  y: number;
  hotX: number;
  hotY: number;
  imageSerial: number;
  image: CursorImage | null;
}

export class FrameExport {
  readonly maxFramesInFlight: number;
  readonly stats: FrameExportStats = { frames: 0, bytes: 0, listenerErrors: 0, allocationFailures: 0 };

  private readonly simd: boolean;
  private source: ScanoutSource | null = null;
  private readonly damage = new DamageRegion();
  /** The next frame replaces the whole screen. */
  private full = true;
  private cursor: CursorInternal = { visible: false, x: 0, y: 0, hotX: 0, hotY: 0, imageSerial: 0, image: null };
  private cursorChanged = false;
  private cursorImageChanged = false;
  private seq = 0;
  private inFlight = 0;
  private readonly pool: PixelScratch[] = [];
  private listener: ((frame: DisplayFrame) => void) | null = null;
  private scheduled = false;

  constructor(options: FrameExportOptions = {}) {
    const max = options.maxFramesInFlight ?? DEFAULT_IN_FLIGHT;
    if (!Number.isInteger(max) || max < 1 || max > MAX_IN_FLIGHT) {
      throw new RangeError(`frame export: maxFramesInFlight ${max} must be an integer in 1..${MAX_IN_FLIGHT}`);
    }
    this.maxFramesInFlight = max;
    this.simd = options.simd ?? true;
  }

  // ------------------------------------------------------------ consumer side

  /**
   * Register the consumer. `listener` receives each frame and must call
   * `frame.release()` when done with its pixels. The first frame is a full
   * one. Returns a function that unsubscribes. One listener at a time.
   */
  subscribe(listener: (frame: DisplayFrame) => void): () => void {
    if (this.listener) throw new Error('frame export: there is already a subscriber');
    this.listener = listener;
    this.invalidate();
    return () => {
      if (this.listener === listener) this.listener = null;
    };
  }

  /** Build a frame from what changed, now; null when nothing did or too many frames are unreleased. */
  takeFrame(): DisplayFrame | null {
    if (!this.hasPending() || this.inFlight >= this.maxFramesInFlight) return null;
    const source = this.source;
    const width = source ? source.rect.width : 0;
    const height = source ? source.rect.height : 0;
    const damaged: Rect[] = !source ? [] : this.full ? [{ x: 0, y: 0, width, height }] : this.damage.rects;
    let scratch: PixelScratch | null = null;
    const rects: FrameRect[] = [];
    if (source && damaged.length > 0) {
      let total = 0;
      for (const r of damaged) total += r.width * r.height * 4;
      scratch = this.acquire(total, width * height * 4);
      if (!scratch) return null; // out of host memory: keep the damage, try again later
      const data = scratch.data;
      let at = 0;
      for (const r of damaged) {
        copyRect(source, r, data, at);
        at += r.width * r.height * 4;
      }
      scratch.convert(0, total, source.layout, true);
      at = 0;
      for (const r of damaged) {
        const bytes = r.width * r.height * 4;
        rects.push({ x: r.x, y: r.y, width: r.width, height: r.height, pixels: data.subarray(at, at + bytes) });
        at += bytes;
      }
      this.stats.bytes += total;
    }
    const cursor: CursorState | null = this.cursorChanged
      ? { ...this.cursor, image: this.cursorImageChanged ? this.cursor.image : null }
      : null;
    const full = this.full;
    this.full = false;
    this.damage.clear();
    this.cursorChanged = false;
    this.cursorImageChanged = false;
    this.inFlight++;
    this.stats.frames++;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      this.inFlight--;
      if (scratch && this.pool.length < this.maxFramesInFlight) this.pool.push(scratch);
      this.schedule();
    };
    return { seq: ++this.seq, enabled: source !== null, width, height, full, rects, cursor, release };
  }

  /** Make the next frame a full one (e.g. the consumer lost its canvas). */
  invalidate(): void {
    this.full = true;
    this.cursorChanged = true;
    this.cursorImageChanged = true;
    this.schedule();
  }

  /** Frames handed out and not yet released. */
  get framesInFlight(): number {
    return this.inFlight;
  }

  /** Whether a frame would have content (damage, a new screen or a cursor change). */
  hasPending(): boolean {
    return this.full || !this.damage.isEmpty || this.cursorChanged;
  }

  /** The current screen as RGBA8888 (a copy), or null when the guest shows nothing. Does not consume damage. */
  snapshot(): Snapshot | null {
    const source = this.source;
    if (!source) return null;
    const { width, height } = source.rect;
    const pixels = new Uint8Array(width * height * 4);
    copyRect(source, { x: 0, y: 0, width, height }, pixels, 0);
    convertInPlace(pixels, source.layout, true);
    return { width, height, pixels };
  }

  /**
   * The current screen as a PNG file. When the guest shows nothing: a black
   * image of `blankSize` (default 1×1). The cursor is not drawn in.
   */
  snapshotPng(blankSize: { width: number; height: number } = { width: 1, height: 1 }, options?: PngOptions): Buffer {
    const shot = this.snapshot();
    if (shot) return encodePng(shot.width, shot.height, shot.pixels, options);
    const pixels = new Uint8Array(blankSize.width * blankSize.height * 4);
    for (let i = 3; i < pixels.length; i += 4) pixels[i] = 255;
    return encodePng(blankSize.width, blankSize.height, pixels, options);
  }

  /** The cursor as it is now (image included). */
  get cursorState(): CursorState {
    return { ...this.cursor };
  }

  // ------------------------------------------------------------ device side

  /** The scanout now shows `source` (null: disabled). A different resource or rectangle repaints everything. */
  setSource(source: ScanoutSource | null): void {
    const old = this.source;
    if (old && source && sameSource(old, source)) return;
    if (!old && !source) return;
    this.source = source;
    this.full = true;
    this.damage.clear();
    this.schedule();
  }

  /** `rect` (screen coordinates) changed. */
  addDamage(rect: Rect): void {
    const source = this.source;
    if (!source || this.full) return;
    this.damage.add(rect, source.rect.width, source.rect.height);
    this.schedule();
  }

  /**
   * A new cursor image from a resource's pixels (`layout`, rows of
   * `stride` bytes, `width × height`), with its hot spot and position.
   */
  defineCursor(
    pixels: Uint8Array,
    stride: number,
    width: number,
    height: number,
    layout: FormatLayout,
    hotX: number,
    hotY: number,
    x: number,
    y: number,
  ): void {
    const image = new Uint8Array(width * height * 4);
    for (let row = 0; row < height; row++) {
      image.set(pixels.subarray(row * stride, row * stride + width * 4), row * width * 4);
    }
    convertInPlace(image, layout, !layout.hasAlpha);
    if (layout.hasAlpha) unpremultiply(image);
    this.cursor = {
      visible: true,
      x,
      y,
      hotX,
      hotY,
      imageSerial: this.cursor.imageSerial + 1,
      image: { width, height, pixels: image },
    };
    this.cursorChanged = true;
    this.cursorImageChanged = true;
    this.schedule();
  }

  moveCursor(x: number, y: number): void {
    if (this.cursor.x === x && this.cursor.y === y) return;
    this.cursor = { ...this.cursor, x, y };
    this.cursorChanged = true;
    this.schedule();
  }

  hideCursor(x: number, y: number): void {
    if (!this.cursor.visible && this.cursor.x === x && this.cursor.y === y) return;
    this.cursor = { ...this.cursor, visible: false, x, y };
    this.cursorChanged = true;
    this.schedule();
  }

  /** Device reset: nothing shown, no cursor. */
  reset(): void {
    this.setSource(null);
    this.hideCursor(0, 0);
  }

  // ------------------------------------------------------------ internals

  /** A scratch buffer of at least `bytes` for a screen of `screenBytes`; null if memory ran out. */
  private acquire(bytes: number, screenBytes: number): PixelScratch | null {
    let scratch = this.pool.pop();
    // Keep pooled buffers sized for the screen (small and full frames alternate), but do
    // not keep a huge one around after the screen got much smaller.
    if (scratch && scratch.capacity > 2 * screenBytes + POOL_SLACK_BYTES) scratch = undefined;
    try {
      scratch ??= createScratch(this.simd);
      scratch.ensure(bytes);
      return scratch;
    } catch {
      this.stats.allocationFailures++;
      return null;
    }
  }

  private schedule(): void {
    if (!this.listener || this.scheduled || this.inFlight >= this.maxFramesInFlight || !this.hasPending()) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.deliver();
    });
  }

  private deliver(): void {
    const listener = this.listener;
    if (!listener) return;
    const frame = this.takeFrame();
    if (!frame) return;
    try {
      listener(frame);
    } catch {
      // Runs from setImmediate: a consumer bug must not take the VMM down.
      this.stats.listenerErrors++;
      frame.release();
    }
  }
}

function sameSource(a: ScanoutSource, b: ScanoutSource): boolean {
  return (
    a.resourceId === b.resourceId &&
    a.pixels === b.pixels &&
    a.stride === b.stride &&
    a.layout === b.layout &&
    a.rect.x === b.rect.x &&
    a.rect.y === b.rect.y &&
    a.rect.width === b.rect.width &&
    a.rect.height === b.rect.height
  );
}

/** Copy `rect` (screen coordinates) of the source's pixels, packed, into `into` at `at`. */
function copyRect(source: ScanoutSource, rect: Rect, into: Uint8Array, at: number): void {
  const { pixels, stride } = source;
  const rowBytes = rect.width * 4;
  const first = (source.rect.y + rect.y) * stride + (source.rect.x + rect.x) * 4;
  if (rowBytes === stride) {
    into.set(pixels.subarray(first, first + rowBytes * rect.height), at);
    return;
  }
  for (let row = 0, from = first; row < rect.height; row++, from += stride, at += rowBytes) {
    into.set(pixels.subarray(from, from + rowBytes), at);
  }
}

/** Premultiplied RGBA (what DRM cursor planes hold) → straight alpha (what canvases expect). */
function unpremultiply(rgba: Uint8Array): void {
  for (let i = 0; i < rgba.length; i += 4) {
    const a = rgba[i + 3]!;
    if (a === 255) continue;
    if (a === 0) {
      rgba[i] = rgba[i + 1] = rgba[i + 2] = 0;
      continue;
    }
    rgba[i] = Math.min(255, Math.round((rgba[i]! * 255) / a));
    rgba[i + 1] = Math.min(255, Math.round((rgba[i + 1]! * 255) / a));
    rgba[i + 2] = Math.min(255, Math.round((rgba[i + 2]! * 255) / a));
  }
}
