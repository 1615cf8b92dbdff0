/** Pure geometry of the display: fitting the guest screen, mapping pointer positions, wheel detents. */
import { LIMITS } from '../../../electron/contract/ipc.js';

export interface Size {
  readonly width: number;
  readonly height: number;
}

/** The CSS size that shows the guest screen as large as fits in `area`, aspect kept. */
export function fitSize(guest: Size, area: Size): Size {
  if (guest.width <= 0 || guest.height <= 0 || area.width <= 0 || area.height <= 0) return { width: 0, height: 0 };
  const scale = Math.min(area.width / guest.width, area.height / guest.height);
  return { width: Math.floor(guest.width * scale), height: Math.floor(guest.height * scale) };
}

export interface BoxLike {
  readonly left: number;
  readonly top: number;
  readonly width: number;
  readonly height: number;
}

/** A client (CSS) position over the canvas's box → a guest pixel, clamped to the screen. */
export function toGuestPixel(clientX: number, clientY: number, box: BoxLike, guest: Size): { x: number; y: number } {
  const clamp = (v: number, max: number) => Math.min(max - 1, Math.max(0, Math.floor(v)));
  return {
    x: clamp(((clientX - box.left) * guest.width) / box.width, guest.width),
    y: clamp(((clientY - box.top) * guest.height) / box.height, guest.height),
  };
}

/** DOM `WheelEvent.deltaMode` values. */
const DOM_DELTA_LINE = 1;
const DOM_DELTA_PAGE = 2;
/** Pixels of wheel motion per detent (Chromium reports about 53–120 px per notch, depending on the platform). */
export const PIXELS_PER_DETENT = 100;
const LINES_PER_DETENT = 3;

/**
 * Turns wheel deltas into whole detents (DOM sign: positive = down/right),
 * keeping the remainder so smooth touchpad scrolling adds up; each event's
 * detents are clamped to the contract's limit.
 */
export class WheelAccumulator {
  private x = 0;
  private y = 0;

  add(dx: number, dy: number, deltaMode: number): { dx: number; dy: number } | null {
    const unit = deltaMode === DOM_DELTA_PAGE ? 1 : deltaMode === DOM_DELTA_LINE ? LINES_PER_DETENT : PIXELS_PER_DETENT;
    this.x += dx / unit;
    this.y += dy / unit;
    const out = { dx: Math.trunc(this.x), dy: Math.trunc(this.y) };
    this.x -= out.dx;
    this.y -= out.dy;
    if (out.dx === 0 && out.dy === 0) return null;
    const clamp = (v: number) => Math.max(-LIMITS.maxWheel, Math.min(LIMITS.maxWheel, v));
    return { dx: clamp(out.dx), dy: clamp(out.dy) };
  }

  reset(): void {
    this.x = 0;
    this.y = 0;
  }
}
