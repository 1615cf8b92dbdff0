/**
 * Reading QEMU's `screendump` output (binary PPM, P6, maxval 255) and asking
 * questions about its pixels: the smoke test asserts on known colours.
 */

export interface Rgb {
  readonly r: number;
  readonly g: number;
  readonly b: number;
}

export interface Image {
  readonly width: number;
  readonly height: number;
  /** RGB triples, row by row. */
  readonly data: Uint8Array;
}

export function parsePpm(bytes: Uint8Array): Image {
  const text = Buffer.from(bytes.subarray(0, Math.min(bytes.length, 512))).toString('latin1');
  // Header: magic, width, height, maxval separated by whitespace (comments allowed), one whitespace byte, pixels.
  const re = /^P6(?:\s+|#[^\n]*\n)+?(\d+)(?:\s+|#[^\n]*\n)+?(\d+)(?:\s+|#[^\n]*\n)+?(\d+)\s/;
  const m = re.exec(text);
  if (!m) throw new Error('not a binary PPM (P6) image');
  const width = Number(m[1]);
  const height = Number(m[2]);
  const maxval = Number(m[3]);
  if (maxval !== 255) throw new Error(`PPM maxval ${maxval} is not supported`);
  const offset = m[0].length;
  const size = width * height * 3;
  if (width <= 0 || height <= 0 || bytes.length < offset + size) throw new Error('PPM image is truncated');
  return { width, height, data: bytes.subarray(offset, offset + size) };
}

export function pixel(image: Image, x: number, y: number): Rgb {
  if (x < 0 || y < 0 || x >= image.width || y >= image.height)
    throw new RangeError(`pixel ${x},${y} is outside the image`);
  const i = (y * image.width + x) * 3;
  return { r: image.data[i] ?? 0, g: image.data[i + 1] ?? 0, b: image.data[i + 2] ?? 0 };
}

export function near(a: Rgb, b: Rgb, tolerance = 12): boolean {
  return Math.abs(a.r - b.r) <= tolerance && Math.abs(a.g - b.g) <= tolerance && Math.abs(a.b - b.b) <= tolerance;
}

/** The fraction (0..1) of pixels in a rectangle (fractions of the image size) close to `colour`. */
export function coverage(image: Image, colour: Rgb, box = { x0: 0, y0: 0, x1: 1, y1: 1 }, tolerance = 12): number {
  const x0 = Math.floor(box.x0 * image.width);
  const x1 = Math.ceil(box.x1 * image.width);
  const y0 = Math.floor(box.y0 * image.height);
  const y1 = Math.ceil(box.y1 * image.height);
  let hits = 0;
  let total = 0;
  for (let y = y0; y < y1; y += 2) {
    for (let x = x0; x < x1; x += 2) {
      total++;
      if (near(pixel(image, x, y), colour, tolerance)) hits++;
    }
  }
  return total === 0 ? 0 : hits / total;
}

export function hex(c: Rgb): string {
  return `#${[c.r, c.g, c.b].map((v) => v.toString(16).padStart(2, '0')).join('')}`;
}
