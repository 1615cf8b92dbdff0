/**
 * Draws decoded frames onto the display canvas with 2D `putImageData`, one
 * call per dirty rectangle: in `npm run bench:canvas` it beat WebGL
 * `texSubImage2D` at every rectangle size (docs/renderer.md has the numbers).
 * The canvas's backing store is the guest's screen, pixel for pixel; CSS
 * scales it. The guest's cursor (virtio-gpu's cursor plane: the guest does not
 * draw it into the screen) is a second small canvas positioned over the first.
 */
import { decodeFrame, type WireCursor } from '../../../electron/contract/frame-wire.js';

export interface PaintResult {
  /** The screen's size changed (a full frame of another size). */
  readonly resized: boolean;
  readonly width: number;
  readonly height: number;
  /** Whether the guest's own cursor is shown (the host's is hidden then). */
  readonly cursorVisible: boolean;
}

/** ImageData's view of decoded pixels, without a copy (decodeFrame's views are over the frame's ArrayBuffer). */
function clampedView(pixels: Uint8Array): Uint8ClampedArray<ArrayBuffer> {
  return new Uint8ClampedArray(pixels.buffer as ArrayBuffer, pixels.byteOffset, pixels.length);
}

export class FramePainter {
  private readonly ctx: CanvasRenderingContext2D;
  private readonly cursorCtx: CanvasRenderingContext2D;
  private cursorVisible = false;
  private hasCursorImage = false;

  constructor(
    private readonly canvas: HTMLCanvasElement,
    private readonly cursor: HTMLCanvasElement,
  ) {
    // alpha: false lets Chromium skip blending; desynchronized lowers latency where supported.
    const ctx = canvas.getContext('2d', { alpha: false, desynchronized: true });
    const cursorCtx = cursor.getContext('2d');
    if (!ctx || !cursorCtx) throw new Error('display: no 2D canvas context');
    this.ctx = ctx;
    this.cursorCtx = cursorCtx;
  }

  /** Decodes and draws one frame; throws FrameWireError on a malformed one (nothing drawn). */
  paint(buffer: ArrayBuffer): PaintResult {
    const frame = decodeFrame(buffer);
    let resized = false;
    if (frame.full && (this.canvas.width !== frame.width || this.canvas.height !== frame.height)) {
      this.canvas.width = frame.width; // also clears the canvas
      this.canvas.height = frame.height;
      resized = true;
    }
    if (!frame.enabled) {
      this.ctx.fillStyle = '#000';
      this.ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    } else {
      for (const r of frame.rects) {
        // Rects are validated against the screen by decodeFrame.
        this.ctx.putImageData(new ImageData(clampedView(r.pixels), r.width, r.height), r.x, r.y);
      }
    }
    if (frame.cursor) this.placeCursor(frame.cursor);
    return {
      resized,
      width: this.canvas.width,
      height: this.canvas.height,
      cursorVisible: this.cursorVisible && this.hasCursorImage,
    };
  }

  private placeCursor(c: WireCursor): void {
    if (c.image) {
      this.cursor.width = c.image.width;
      this.cursor.height = c.image.height;
      if (c.image.width > 0 && c.image.height > 0) {
        this.cursorCtx.putImageData(new ImageData(clampedView(c.image.pixels), c.image.width, c.image.height), 0, 0);
      }
      this.hasCursorImage = c.image.width > 0 && c.image.height > 0;
    }
    this.cursorVisible = c.visible;
    const { width, height } = this.canvas;
    const show = c.visible && this.hasCursorImage && width > 0 && height > 0;
    this.cursor.hidden = !show;
    if (!show) return;
    // Percentages of the screen, so the overlay follows the display's CSS scale without JS.
    const style = this.cursor.style;
    style.left = `${(c.x / width) * 100}%`;
    style.top = `${(c.y / height) * 100}%`;
    style.width = `${(this.cursor.width / width) * 100}%`;
    style.height = `${(this.cursor.height / height) * 100}%`;
  }
}
