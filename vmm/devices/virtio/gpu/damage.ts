/**
 * A coalescing damage region: the part of a screen that changed since the
 * consumer last took a frame. Its size is bounded no matter how many
 * rectangles the guest flushes: rectangles that overlap (or nearly touch) are
 * merged into their bounding box, the region never holds more than
 * `MAX_DAMAGE_RECTS` rectangles (beyond that it collapses to one bounding
 * box), and the rectangles it holds never overlap, so exporting them never
 * costs more than one full screen of pixels.
 */
import type { Rect } from './protocol.js';

export const MAX_DAMAGE_RECTS = 16;
/** Merge two rectangles when their bounding box is at most this much bigger than both together. */
const MERGE_SLACK = 1.25;

interface Box {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

function area(b: Box): number {
  return (b.x1 - b.x0) * (b.y1 - b.y0);
}

function intersects(a: Box, b: Box): boolean {
  return a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;
}

function union(a: Box, b: Box): Box {
  return { x0: Math.min(a.x0, b.x0), y0: Math.min(a.y0, b.y0), x1: Math.max(a.x1, b.x1), y1: Math.max(a.y1, b.y1) };
}

export class DamageRegion {
  private boxes: Box[] = [];

  get isEmpty(): boolean {
    return this.boxes.length === 0;
  }

  /** The rectangles (pairwise disjoint), in the order they were formed. */
  get rects(): Rect[] {
    return this.boxes.map((b) => ({ x: b.x0, y: b.y0, width: b.x1 - b.x0, height: b.y1 - b.y0 }));
  }

  /** Total pixels covered. */
  get area(): number {
    let n = 0;
    for (const b of this.boxes) n += area(b);
    return n;
  }

  clear(): void {
    this.boxes = [];
  }

  /** Add `rect`, clipped to [0, width) × [0, height). Empty rectangles are ignored. */
  add(rect: Rect, width: number, height: number): void {
    let box: Box = {
      x0: Math.max(0, rect.x),
      y0: Math.max(0, rect.y),
      x1: Math.min(width, rect.x + rect.width),
      y1: Math.min(height, rect.y + rect.height),
    };
    if (!(box.x0 < box.x1 && box.y0 < box.y1)) return;
    for (let i = 0; i < this.boxes.length;) {
      const other = this.boxes[i]!;
      const merged = union(box, other);
      if (intersects(box, other) || area(merged) <= (area(box) + area(other)) * MERGE_SLACK) {
        box = merged;
        this.boxes.splice(i, 1);
        i = 0; // the bigger box may now reach rectangles already passed
        continue;
      }
      i++;
    }
    this.boxes.push(box);
    if (this.boxes.length > MAX_DAMAGE_RECTS) {
      this.boxes = [this.boxes.reduce(union)];
    }
  }

  /** Replace the region by the whole [0, width) × [0, height). */
  setAll(width: number, height: number): void {
    this.boxes = width > 0 && height > 0 ? [{ x0: 0, y0: 0, x1: width, y1: height }] : [];
  }
}
