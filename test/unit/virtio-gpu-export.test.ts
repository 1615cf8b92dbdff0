/**
 * The pieces behind virtio-gpu's frame export, tested on their own: pixel
 * conversion (SIMD and plain JavaScript), the damage region, the exporter's
 * flow control, the PNG encoder and the EDID generator.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as zlib from 'node:zlib';
import { convertInPlace, createScratch, simdAvailable } from '../../vmm/devices/virtio/gpu/pixel-convert.js';
import { DamageRegion, MAX_DAMAGE_RECTS } from '../../vmm/devices/virtio/gpu/damage.js';
import { FrameExport } from '../../vmm/devices/virtio/gpu/frame-export.js';
import type { ScanoutSource } from '../../vmm/devices/virtio/gpu/frame-export.js';
import { crc32Table, encodePng } from '../../vmm/devices/virtio/gpu/png.js';
import {
  EDID_BLOCK_SIZE,
  edidChecksum,
  generateEdid,
  reducedBlankingTiming,
} from '../../vmm/devices/virtio/gpu/edid.js';
import { clampDisplaySize, DISPLAY_MAX_PIXELS } from '../../vmm/devices/virtio/gpu/gpu.js';
import { FORMATS, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM } from '../../vmm/devices/virtio/gpu/protocol.js';
import type { FormatLayout, Rect } from '../../vmm/devices/virtio/gpu/protocol.js';

const BGRX = FORMATS.get(VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM)!;

function randomBytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

/** The reference conversion, one byte at a time. */
function reference(src: Uint8Array, layout: FormatLayout, opaque: boolean): Uint8Array {
  const out = new Uint8Array(src.length);
  for (let p = 0; p < src.length; p += 4) {
    out[p] = src[p + layout.r]!;
    out[p + 1] = src[p + layout.g]!;
    out[p + 2] = src[p + layout.b]!;
    out[p + 3] = opaque ? 255 : src[p + layout.a]!;
  }
  return out;
}

// ---------------------------------------------------------------------------- pixel conversion

test('the SIMD converter is available in this runtime', () => {
  assert.equal(simdAvailable(), true);
});

test('SIMD and JavaScript conversions match the reference for every format, opaque or not', () => {
  for (const [format, layout] of FORMATS) {
    for (const opaque of [true, false]) {
      for (const pixels of [1, 3, 4, 5, 17, 1000]) {
        const src = randomBytes(pixels * 4, format * 31 + pixels);
        const want = reference(src, layout, opaque);
        const js = src.slice();
        convertInPlace(js, layout, opaque);
        assert.deepEqual(js, want, `JS ${layout.name} opaque=${opaque} n=${pixels}`);
        for (const simd of [true, false]) {
          const scratch = createScratch(simd);
          scratch.ensure(src.length + 8);
          scratch.data.set(src, 8);
          scratch.data.fill(0x77, 8 + src.length, 8 + src.length + 4);
          scratch.convert(8, 8 + src.length, layout, opaque);
          assert.deepEqual(scratch.data.subarray(8, 8 + src.length), want, `scratch simd=${simd} ${layout.name}`);
          assert.deepEqual([...scratch.data.subarray(0, 8)], [0, 0, 0, 0, 0, 0, 0, 0], 'bytes before untouched');
        }
      }
    }
  }
});

test('unaligned views fall back to byte-wise conversion', () => {
  const backing = randomBytes(4 * 10 + 1, 9);
  const view = backing.subarray(1);
  const want = reference(view, BGRX, true);
  convertInPlace(view, BGRX, true);
  assert.deepEqual(view, want);
});

test('a scratch buffer grows on demand and refuses bad ranges', () => {
  for (const simd of [true, false]) {
    const scratch = createScratch(simd);
    scratch.ensure(10 * 1024 * 1024);
    assert.ok(scratch.capacity >= 10 * 1024 * 1024);
    assert.ok(scratch.data.length >= scratch.capacity);
    assert.throws(() => scratch.convert(2, 10, BGRX, true), RangeError);
    assert.throws(() => scratch.convert(0, 7, BGRX, true), RangeError);
    assert.throws(() => scratch.convert(0, scratch.capacity + 4, BGRX, true), RangeError);
    assert.doesNotThrow(() => scratch.convert(4, 4, BGRX, true));
  }
});

// ---------------------------------------------------------------------------- damage region

test('the damage region clips, merges overlaps and stays bounded', () => {
  const region = new DamageRegion();
  region.add({ x: -10, y: -10, width: 20, height: 20 }, 100, 100);
  assert.deepEqual(region.rects, [{ x: 0, y: 0, width: 10, height: 10 }]);
  region.add({ x: 200, y: 0, width: 5, height: 5 }, 100, 100); // outside: ignored
  region.add({ x: 5, y: 5, width: 0, height: 5 }, 100, 100); // empty: ignored
  assert.equal(region.rects.length, 1);
  region.add({ x: 8, y: 8, width: 10, height: 10 }, 100, 100); // overlaps: merged
  assert.deepEqual(region.rects, [{ x: 0, y: 0, width: 18, height: 18 }]);
  region.clear();
  // A diagonal line of small rectangles: never more than MAX_DAMAGE_RECTS, never overlapping.
  for (let i = 0; i < 1000; i++) {
    region.add({ x: (i * 97) % 3000, y: (i * 61) % 2000, width: 3, height: 3 }, 3000, 2000);
    const rects: readonly Rect[] = region.rects;
    assert.ok(rects.length <= MAX_DAMAGE_RECTS);
    for (let a = 0; a < rects.length; a++) {
      for (let b = a + 1; b < rects.length; b++) {
        const p: Rect = rects[a]!;
        const q: Rect = rects[b]!;
        const overlap: boolean =
          p.x < q.x + q.width && q.x < p.x + p.width && p.y < q.y + q.height && q.y < p.y + p.height;
        assert.equal(overlap, false);
      }
    }
  }
  assert.ok(region.area <= 3000 * 2000);
  // Adjacent rectangles (a text line typed character by character) merge.
  region.clear();
  for (let x = 0; x < 100; x += 8) region.add({ x, y: 50, width: 8, height: 16 }, 800, 600);
  assert.deepEqual(region.rects, [{ x: 0, y: 50, width: 104, height: 16 }]);
});

// ---------------------------------------------------------------------------- the exporter

function source(width: number, height: number, resourceId = 1): ScanoutSource {
  const pixels = new Uint8Array(width * height * 4);
  for (let i = 0; i < pixels.length; i += 4) {
    const p = i / 4;
    pixels.set([p & 0xff, (p >> 8) & 0xff, resourceId, 0x33], i); // B, G, R, X
  }
  return { resourceId, pixels, stride: width * 4, layout: BGRX, rect: { x: 0, y: 0, width, height } };
}

test('the exporter produces the same frames with and without SIMD', () => {
  const frames = [true, false].map((simd) => {
    const exporter = new FrameExport({ simd });
    exporter.setSource(source(97, 31));
    exporter.takeFrame()?.release();
    exporter.addDamage({ x: 3, y: 4, width: 50, height: 7 });
    exporter.addDamage({ x: 90, y: 0, width: 7, height: 31 });
    const frame = exporter.takeFrame();
    assert.ok(frame);
    return frame.rects.map((r) => ({ x: r.x, y: r.y, width: r.width, height: r.height, pixels: [...r.pixels] }));
  });
  assert.deepEqual(frames[0], frames[1]);
  assert.equal(frames[0]!.length, 2);
});

test('frames in flight are bounded; released buffers are reused', () => {
  const exporter = new FrameExport({ maxFramesInFlight: 1 });
  assert.throws(() => new FrameExport({ maxFramesInFlight: 0 }), RangeError);
  assert.throws(() => new FrameExport({ maxFramesInFlight: 9 }), RangeError);
  exporter.setSource(source(64, 64));
  const first = exporter.takeFrame();
  assert.ok(first);
  exporter.addDamage({ x: 0, y: 0, width: 1, height: 1 });
  assert.equal(exporter.takeFrame(), null);
  assert.equal(exporter.hasPending(), true);
  const buffer = first.rects[0]!.pixels.buffer;
  first.release();
  const second = exporter.takeFrame();
  assert.ok(second);
  assert.equal(second.rects[0]!.pixels.buffer, buffer, 'the pooled buffer came back');
  assert.equal(second.seq, first.seq + 1);
  second.release();
  assert.equal(exporter.stats.frames, 2);
  assert.equal(exporter.stats.bytes, 64 * 64 * 4 + 4);
});

test('small frames reuse the screen-sized buffer instead of reallocating it', () => {
  const exporter = new FrameExport({ maxFramesInFlight: 1 });
  exporter.setSource(source(2000, 2000));
  const full = exporter.takeFrame();
  assert.ok(full);
  const buffer = full.rects[0]!.pixels.buffer;
  full.release();
  exporter.addDamage({ x: 5, y: 5, width: 3, height: 3 });
  const small = exporter.takeFrame();
  assert.ok(small);
  assert.equal(small.rects[0]!.pixels.buffer, buffer);
  small.release();
});

test('a listener that throws gets its frame released and does not stall the stream', async () => {
  const exporter = new FrameExport({ maxFramesInFlight: 1 });
  let calls = 0;
  exporter.subscribe(() => {
    calls++;
    throw new Error('consumer bug');
  });
  assert.throws(() => exporter.subscribe(() => {}), /already a subscriber/);
  exporter.setSource(source(8, 8));
  await new Promise((resolve) => setImmediate(resolve));
  exporter.addDamage({ x: 0, y: 0, width: 2, height: 2 });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(calls, 2);
  assert.equal(exporter.stats.listenerErrors, 2);
  assert.equal(exporter.framesInFlight, 0);
});

test('a new resource, a new rectangle and invalidate() make a full frame; a smaller screen shrinks the pool', () => {
  const exporter = new FrameExport();
  exporter.setSource(source(2000, 2000));
  const big = exporter.takeFrame();
  assert.ok(big?.full);
  const bigBuffer = big.rects[0]!.pixels.buffer;
  big.release();
  exporter.setSource(source(100, 100, 2));
  const small = exporter.takeFrame();
  assert.ok(small?.full);
  assert.deepEqual([small.width, small.height], [100, 100]);
  assert.notEqual(small.rects[0]!.pixels.buffer, bigBuffer, 'a 16 MB buffer is not kept for a 40 KB frame');
  assert.deepEqual([...small.rects[0]!.pixels.subarray(0, 4)], [2, 0, 0, 255]);
  small.release();
  exporter.invalidate();
  const again = exporter.takeFrame();
  assert.ok(again?.full);
  assert.ok(again.cursor, 'invalidate resends the cursor state');
  again.release();
  exporter.setSource(null);
  const off = exporter.takeFrame();
  assert.deepEqual([off?.enabled, off?.full, off?.rects.length], [false, true, 0]);
  off?.release();
  assert.equal(exporter.snapshot(), null);
});

test('cursor images keep their alpha, un-premultiplied; moves are coalesced', () => {
  const exporter = new FrameExport();
  exporter.takeFrame()?.release();
  const argb = FORMATS.get(1)!; // B8G8R8A8
  const raw = Uint8Array.from([0, 0, 0, 0, 40, 20, 10, 64, 255, 255, 255, 255, 0, 0, 0, 0]); // 2x2, with stride 8
  exporter.defineCursor(raw, 8, 2, 2, argb, 1, 1, 10, 20);
  for (let i = 0; i < 100; i++) exporter.moveCursor(i, i);
  const frame = exporter.takeFrame();
  assert.ok(frame?.cursor?.image);
  assert.deepEqual([frame.cursor.x, frame.cursor.y, frame.cursor.hotX], [99, 99, 1]);
  assert.deepEqual([...frame.cursor.image.pixels], [0, 0, 0, 0, 40, 80, 159, 64, 255, 255, 255, 255, 0, 0, 0, 0]);
  frame.release();
});

// ---------------------------------------------------------------------------- PNG

/** A small PNG reader: checks every CRC and returns the RGBA pixels. */
function decodePng(png: Buffer): { width: number; height: number; rgba: Uint8Array } {
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  let at = 8;
  let width = 0;
  let height = 0;
  const idat: Buffer[] = [];
  const types: string[] = [];
  while (at < png.length) {
    const length = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    const body = png.subarray(at + 8, at + 8 + length);
    assert.equal(png.readUInt32BE(at + 8 + length), zlib.crc32(png.subarray(at + 4, at + 8 + length)), `${type} CRC`);
    types.push(type);
    if (type === 'IHDR') {
      width = body.readUInt32BE(0);
      height = body.readUInt32BE(4);
      assert.deepEqual([...body.subarray(8)], [8, 6, 0, 0, 0]);
    }
    if (type === 'IDAT') idat.push(body);
    at += 12 + length;
  }
  assert.deepEqual(types, ['IHDR', 'IDAT', 'IEND']);
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const rgba = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    assert.equal(raw[y * (width * 4 + 1)], 0, 'filter None');
    rgba.set(raw.subarray(y * (width * 4 + 1) + 1, (y + 1) * (width * 4 + 1)), y * width * 4);
  }
  return { width, height, rgba };
}

test('the PNG encoder round-trips through zlib with valid CRCs', () => {
  const rgba = randomBytes(13 * 7 * 4, 5);
  const decoded = decodePng(encodePng(13, 7, rgba));
  assert.deepEqual([decoded.width, decoded.height], [13, 7]);
  assert.deepEqual(decoded.rgba, rgba);
  assert.throws(() => encodePng(0, 1, new Uint8Array(0)), RangeError);
  assert.throws(() => encodePng(2, 2, new Uint8Array(15)), RangeError);
});

test('the table CRC-32 matches zlib.crc32', () => {
  for (const data of [new Uint8Array(0), Uint8Array.from([0x61]), randomBytes(5000, 3)]) {
    assert.equal(crc32Table(data), zlib.crc32(data));
  }
  assert.equal(crc32Table(new TextEncoder().encode('123456789')), 0xcbf43926);
});

test('snapshotPng decodes to the screen in RGBA', () => {
  const exporter = new FrameExport();
  exporter.setSource(source(20, 10));
  const { width, height, rgba } = decodePng(exporter.snapshotPng());
  assert.deepEqual([width, height], [20, 10]);
  assert.deepEqual([...rgba.subarray(4 * 21, 4 * 22)], [1, 0, 21, 255]); // pixel 21: B=21, G=0, R=1
  assert.equal(exporter.hasPending(), true, 'a snapshot does not consume damage');
  const blank = decodePng(new FrameExport().snapshotPng({ width: 3, height: 2 }));
  assert.deepEqual(
    [...blank.rgba],
    [0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255],
  );
});

// ---------------------------------------------------------------------------- EDID

function decodeDtd(edid: Uint8Array) {
  const d = edid.subarray(54, 72);
  const hActive = d[2]! | ((d[4]! >> 4) << 8);
  const hBlank = d[3]! | ((d[4]! & 0xf) << 8);
  const vActive = d[5]! | ((d[7]! >> 4) << 8);
  const vBlank = d[6]! | ((d[7]! & 0xf) << 8);
  const clockHz = (d[0]! | (d[1]! << 8)) * 10_000;
  const refresh = clockHz / ((hActive + hBlank) * (vActive + vBlank));
  return { hActive, vActive, hBlank, vBlank, refresh };
}

test('generated EDIDs are valid 1.4 blocks whose preferred timing is the mode at ~60 Hz', () => {
  for (const [w, h] of [
    [64, 64],
    [640, 480],
    [1280, 800],
    [1920, 1080],
    [2560, 1600],
    [3840, 2400],
    [2400, 3840],
    [1234, 567],
  ]) {
    const edid = generateEdid(w!, h!);
    assert.equal(edid.length, EDID_BLOCK_SIZE);
    assert.deepEqual([...edid.subarray(0, 8)], [0, 255, 255, 255, 255, 255, 255, 0]);
    assert.equal(edid.reduce((a, b) => a + b, 0) % 256, 0, `checksum ${w}x${h}`);
    assert.equal(edidChecksum(edid), edid[127]);
    assert.deepEqual([edid[18], edid[19]], [1, 4], 'EDID 1.4');
    assert.equal(edid[126], 0, 'no extensions');
    const dtd = decodeDtd(edid);
    assert.deepEqual([dtd.hActive, dtd.vActive], [w, h]);
    assert.ok(dtd.refresh >= 59.9 && dtd.refresh < 61, `${w}x${h} refresh ${dtd.refresh}`);
    assert.ok(dtd.vBlank >= 3 + 4 + 6);
    // Manufacturer "BJR".
    const id = (edid[8]! << 8) | edid[9]!;
    assert.equal(String.fromCharCode(64 + (id >> 10), 64 + ((id >> 5) & 31), 64 + (id & 31)), 'BJR');
    // The name descriptor.
    assert.equal(edid[93], 0xfc);
    assert.equal(Buffer.from(edid.subarray(95, 102)).toString('latin1'), 'Belljar');
  }
  assert.equal(Buffer.from(generateEdid(800, 600, { name: 'Test' }).subarray(95, 100)).toString('latin1'), 'Test\n');
  assert.throws(() => generateEdid(4096, 100), RangeError);
  assert.throws(() => generateEdid(0, 100), RangeError);
  assert.throws(() => generateEdid(100, 100, { name: 'x'.repeat(14) }), RangeError);
  // Very large modes lower the refresh rate rather than overflow the clock field.
  assert.ok(reducedBlankingTiming(4095, 4095).refresh < 60);
});

test('display sizes the device offers always have a 60 Hz EDID', () => {
  for (const [w, h] of [
    [3840, 3840],
    [3840, 64],
    [64, 3840],
    [3000, 3000],
  ]) {
    const size = clampDisplaySize(w!, h!);
    assert.ok(size.width * size.height <= DISPLAY_MAX_PIXELS);
    assert.equal(reducedBlankingTiming(size.width, size.height).refresh, 60, JSON.stringify(size));
  }
});
