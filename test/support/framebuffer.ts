/**
 * A host-side copy of a guest screen, kept current from the frame-wire
 * stream (as the renderer's canvas is), with colour checks over regions
 * given in screen fractions. For tests that watch a sandbox without a browser.
 */
import { decodeFrame } from '../../electron/contract/frame-wire.js';

export type Rgb = readonly [number, number, number];

/** A region in fractions of the screen: x0, y0, x1, y1 in 0..1. */
export type Region = readonly [number, number, number, number];

const COLOUR_TOLERANCE = 16;

export class Framebuffer {
  width = 0;
  height = 0;
  pixels = new Uint8Array(0);
  frames = 0;

  /** Applies one encoded frame. */
  apply(buffer: ArrayBuffer): void {
    const frame = decodeFrame(buffer);
    this.frames++;
    if (frame.full || frame.width !== this.width || frame.height !== this.height) {
      this.width = frame.width;
      this.height = frame.height;
      this.pixels = new Uint8Array(frame.width * frame.height * 4);
    }
    for (const rect of frame.rects) {
      for (let row = 0; row < rect.height; row++) {
        const from = row * rect.width * 4;
        this.pixels.set(rect.pixels.subarray(from, from + rect.width * 4), ((rect.y + row) * this.width + rect.x) * 4);
      }
    }
  }

  /** The share (0..1) of the region's pixels within tolerance of `rgb`. */
  coverage(rgb: Rgb, region: Region = [0, 0, 1, 1]): number {
    if (this.width === 0) return 0;
    const [x0, y0, x1, y1] = region.map((f, i) => Math.round(f * (i % 2 === 0 ? this.width : this.height)));
    let hits = 0;
    let total = 0;
    for (let y = y0!; y < y1!; y += 2) {
      for (let x = x0!; x < x1!; x += 2) {
        const i = (y * this.width + x) * 4;
        total++;
        if (rgb.every((v, k) => Math.abs(this.pixels[i + k]! - v) <= COLOUR_TOLERANCE)) hits++;
      }
    }
    return total === 0 ? 0 : hits / total;
  }

  /** The share of the region's pixels that differ from `rgb` (something drawn over it). */
  differing(rgb: Rgb, region: Region): number {
    return 1 - this.coverage(rgb, region);
  }
}
