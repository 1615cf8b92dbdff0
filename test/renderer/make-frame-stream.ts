/**
 * Generates the deterministic frame stream the renderer tests replay:
 *   node dist/test/renderer/make-frame-stream.js
 * writes test/fixtures/frames/synthetic-640x400.bjfs.gz. The tests import the
 * same description (SYNTHETIC_PIXELS, SYNTHETIC_CURSOR) to know what the
 * screen must show after the stream, and check the stored file still equals
 * what this generator makes.
 *
 * The stream: a full 640×400 frame (left half red, right half blue), then
 * dirty rectangles (a green 64×64 square, a white strip in the bottom-right
 * corner, two small rectangles in one frame with a cursor image), then a
 * cursor-only move.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { gzipSync } from 'node:zlib';
import { encodeFrame, type WireCursor, type WireRect } from '../../electron/contract/frame-wire.js';
import { serializeFrameStream } from './frame-stream.js';

export const SYNTHETIC_STREAM_PATH = fileURLToPath(
  new URL('../../../test/fixtures/frames/synthetic-640x400.bjfs.gz', import.meta.url),
);
export const SYNTHETIC_SCREEN = { width: 640, height: 400 } as const;

type Rgb = readonly [number, number, number];
const RED: Rgb = [200, 30, 30];
const BLUE: Rgb = [30, 30, 200];
const GREEN: Rgb = [0, 200, 0];
const WHITE: Rgb = [255, 255, 255];
const YELLOW: Rgb = [240, 220, 0];
const MAGENTA: Rgb = [220, 0, 220];

/** Points of the screen and their colour once the whole stream is drawn. */
export const SYNTHETIC_PIXELS: readonly { readonly x: number; readonly y: number; readonly rgb: Rgb }[] = [
  { x: 4, y: 4, rgb: MAGENTA },
  { x: 8, y: 8, rgb: RED },
  { x: 20, y: 200, rgb: RED },
  { x: 319, y: 10, rgb: RED },
  { x: 320, y: 10, rgb: BLUE },
  { x: 630, y: 10, rgb: BLUE },
  { x: 99, y: 99, rgb: RED },
  { x: 100, y: 100, rgb: GREEN },
  { x: 163, y: 163, rgb: GREEN },
  { x: 164, y: 164, rgb: RED },
  { x: 305, y: 205, rgb: YELLOW },
  { x: 310, y: 210, rgb: RED },
  { x: 639, y: 399, rgb: WHITE },
  { x: 608, y: 384, rgb: WHITE },
  { x: 607, y: 383, rgb: BLUE },
];

/** The cursor after the stream: an 8×8 image, visible, top-left at (10, 20). */
export const SYNTHETIC_CURSOR = { x: 10, y: 20, width: 8, height: 8 } as const;

function solid(x: number, y: number, width: number, height: number, rgb: Rgb): WireRect {
  const pixels = new Uint8Array(width * height * 4);
  for (let i = 0; i < pixels.length; i += 4) {
    pixels[i] = rgb[0];
    pixels[i + 1] = rgb[1];
    pixels[i + 2] = rgb[2];
    pixels[i + 3] = 255;
  }
  return { x, y, width, height, pixels };
}

function cursorImage(): NonNullable<WireCursor['image']> {
  const { width, height } = SYNTHETIC_CURSOR;
  const pixels = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x <= y; x++) {
      const i = (y * width + x) * 4;
      const edge = x === 0 || x === y || y === height - 1;
      pixels.set(edge ? [0, 0, 0, 255] : [255, 255, 255, 255], i);
    }
  }
  return { width, height, pixels };
}

export function syntheticStream(): ArrayBuffer[] {
  const { width, height } = SYNTHETIC_SCREEN;
  const frame = (seq: number, rects: WireRect[], cursor?: WireCursor, full = false) =>
    encodeFrame({ seq, enabled: true, full, width, height, rects, ...(cursor ? { cursor } : {}) });
  return [
    frame(1, [solid(0, 0, width / 2, height, RED), solid(width / 2, 0, width / 2, height, BLUE)], undefined, true),
    frame(2, [solid(100, 100, 64, 64, GREEN)]),
    frame(3, [solid(width - 32, height - 16, 32, 16, WHITE)]),
    frame(4, [solid(300, 200, 10, 10, YELLOW), solid(0, 0, 8, 8, MAGENTA)], {
      visible: true,
      x: 320,
      y: 200,
      hotX: 0,
      hotY: 0,
      image: cursorImage(),
    }),
    frame(5, [], { visible: true, x: SYNTHETIC_CURSOR.x, y: SYNTHETIC_CURSOR.y, hotX: 0, hotY: 0 }),
  ];
}

/** The file's bytes (gzip level and header are fixed, so the output is byte-for-byte stable). */
export function syntheticStreamFile(): Uint8Array {
  return new Uint8Array(gzipSync(serializeFrameStream(syntheticStream()), { level: 9 }));
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const bytes = syntheticStreamFile();
  writeFileSync(SYNTHETIC_STREAM_PATH, bytes);
  console.log(`wrote ${SYNTHETIC_STREAM_PATH} (${bytes.length} bytes)`);
}
