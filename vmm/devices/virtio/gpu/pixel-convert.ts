/**
 * Conversion of the guest's 32-bit pixel formats to the export format,
 * RGBA8888 (bytes R, G, B, A), in place inside a scratch buffer.
 *
 * The hot path is a 106-byte WebAssembly module using 128-bit SIMD: one
 * `i8x16.swizzle` and one `v128.or` per four pixels. A full 1280×800 frame
 * converts in about 0.2 ms that way, against about 2 ms for the best plain
 * JavaScript loop on the same machine (see docs/display.md). When the runtime
 * has no WebAssembly SIMD (or `simd: false` is asked for, e.g. in tests), an
 * Int32Array loop does the same work.
 *
 * The module (WAT):
 *
 *   (module
 *     (import "env" "memory" (memory 1))
 *     (func (export "convert") (param $p i32) (param $end i32)
 *       (block (loop
 *         (br_if 1 (i32.ge_u (local.get $p) (local.get $end)))
 *         (v128.store (local.get $p)
 *           (v128.or
 *             (i8x16.swizzle (v128.load (local.get $p)) (v128.load (i32.const 0)))
 *             (v128.load (i32.const 16))))
 *         (local.set $p (i32.add (local.get $p) (i32.const 16)))
 *         (br 0)))))
 *
 * Bytes 0–15 of the memory hold the swizzle pattern, 16–31 the alpha mask;
 * pixel data starts at DATA_OFFSET.
 */
import type { FormatLayout } from './protocol.js';

/** Where pixel data starts inside a scratch buffer (the swizzle constants sit below). */
const DATA_OFFSET = 64;
/** The SIMD loop works in 16-byte steps: every scratch keeps this much slack after its data. */
const SIMD_SLACK = 16;
const WASM_PAGE = 65536;

// prettier-ignore
const MODULE_BYTES = Uint8Array.from([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version 1
  0x01, 0x06, 0x01, 0x60, 0x02, 0x7f, 0x7f, 0x00, // type section: (i32, i32) -> ()
  0x02, 0x0f, 0x01, 0x03, 0x65, 0x6e, 0x76, 0x06, 0x6d, 0x65, 0x6d, 0x6f, 0x72, 0x79, 0x02, 0x00, 0x01, // import env.memory, min 1 page
  0x03, 0x02, 0x01, 0x00, // function section: one function of type 0
  0x07, 0x0b, 0x01, 0x07, 0x63, 0x6f, 0x6e, 0x76, 0x65, 0x72, 0x74, 0x00, 0x00, // export "convert"
  0x0a, 0x36, 0x01, 0x34, 0x00, // code section: one body of 52 bytes, no locals
  0x02, 0x40, 0x03, 0x40, // block, loop
  0x20, 0x00, 0x20, 0x01, 0x4f, 0x0d, 0x01, // br_if 1 (p >= end)
  0x20, 0x00, // p (store address)
  0x20, 0x00, 0xfd, 0x00, 0x00, 0x00, // v128.load p
  0x41, 0x00, 0xfd, 0x00, 0x00, 0x00, // v128.load 0 (pattern)
  0xfd, 0x0e, // i8x16.swizzle
  0x41, 0x10, 0xfd, 0x00, 0x00, 0x00, // v128.load 16 (alpha mask)
  0xfd, 0x50, // v128.or
  0xfd, 0x0b, 0x00, 0x00, // v128.store
  0x20, 0x00, 0x41, 0x10, 0x6a, 0x21, 0x00, // p += 16
  0x0c, 0x00, // br 0
  0x0b, 0x0b, 0x0b, // end loop, end block, end function
]);

// The few WebAssembly JS API pieces we use (the project's TypeScript lib has no DOM/wasm typings).
interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { readonly exports: Record<string, unknown> };
  Memory: new (descriptor: { initial: number }) => WasmMemory;
}

let compiled: object | null | undefined;

/** The compiled module, or null when this runtime cannot run it (no wasm, no SIMD). */
function simdModule(): object | null {
  if (compiled !== undefined) return compiled;
  compiled = null;
  const api = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  if (!api) return null;
  try {
    const module = new api.Module(MODULE_BYTES);
    // Check it does what it says before trusting it.
    const probe = new WasmScratch(api, module);
    probe.ensure(8);
    probe.data.set([1, 2, 3, 4, 5, 6, 7, 8]);
    probe.convert(0, 8, { name: 'probe', r: 2, g: 1, b: 0, a: 3, hasAlpha: false }, true);
    const ok = probe.data.subarray(0, 8).join() === [3, 2, 1, 255, 7, 6, 5, 255].join();
    compiled = ok ? module : null;
  } catch {
    compiled = null;
  }
  return compiled;
}

/** Whether the SIMD converter is available in this runtime. */
export function simdAvailable(): boolean {
  return simdModule() !== null;
}

/**
 * A growable byte buffer whose contents can be converted to RGBA8888 in place.
 * `data` is a view of the usable bytes; it changes when `ensure` grows the
 * buffer (old views may then be detached), so fetch it after each `ensure`.
 */
export interface PixelScratch {
  /** Usable bytes (what `ensure` guarantees). */
  readonly capacity: number;
  readonly data: Uint8Array;
  /** Make at least `bytes` usable. Only call while nobody holds views of `data`. */
  ensure(bytes: number): void;
  /**
   * Convert the pixels in data[start, end) (whole 4-byte pixels; `start`
   * 4-aligned) from `layout` to RGBA8888. `opaque` forces alpha to 255;
   * otherwise the source alpha is kept. May also rewrite up to 15 bytes after
   * `end` (slack that `ensure` always provides).
   */
  convert(start: number, end: number, layout: FormatLayout, opaque: boolean): void;
}

/** The swizzle pattern (source byte per destination byte, 16 lanes) and alpha mask for a layout. */
function simdConstants(layout: FormatLayout, opaque: boolean): Uint8Array {
  const consts = new Uint8Array(32);
  for (let px = 0; px < 4; px++) {
    const base = px * 4;
    consts[base] = base + layout.r;
    consts[base + 1] = base + layout.g;
    consts[base + 2] = base + layout.b;
    // Out-of-range index: the swizzle yields 0 there, and the mask sets 255.
    consts[base + 3] = opaque ? 0x80 : base + layout.a;
    consts[16 + base + 3] = opaque ? 0xff : 0;
  }
  return consts;
}

class WasmScratch implements PixelScratch {
  private readonly memory: WasmMemory;
  private readonly run: (start: number, end: number) => void;
  private view: Uint8Array;
  private usable: number;
  private constantsFor: string | null = null;

  constructor(api: WasmApi, module: object) {
    this.memory = new api.Memory({ initial: 1 });
    const instance = new api.Instance(module, { env: { memory: this.memory } });
    const fn = instance.exports['convert'];
    if (typeof fn !== 'function') throw new Error('pixel converter: module has no convert export');
    this.run = fn as (start: number, end: number) => void;
    this.usable = this.memory.buffer.byteLength - DATA_OFFSET - SIMD_SLACK;
    this.view = new Uint8Array(this.memory.buffer, DATA_OFFSET, this.usable);
  }

  get capacity(): number {
    return this.usable;
  }

  get data(): Uint8Array {
    return this.view;
  }

  ensure(bytes: number): void {
    if (bytes <= this.usable) return;
    const needed = bytes + DATA_OFFSET + SIMD_SLACK;
    const pages = Math.ceil(needed / WASM_PAGE) - this.memory.buffer.byteLength / WASM_PAGE;
    this.memory.grow(pages);
    this.usable = this.memory.buffer.byteLength - DATA_OFFSET - SIMD_SLACK;
    this.view = new Uint8Array(this.memory.buffer, DATA_OFFSET, this.usable);
    this.constantsFor = null;
  }

  convert(start: number, end: number, layout: FormatLayout, opaque: boolean): void {
    checkRange(start, end, this.usable);
    if (end === start) return;
    const key = `${layout.r}${layout.g}${layout.b}${layout.a}${opaque ? 'o' : 'a'}`;
    if (key !== this.constantsFor) {
      new Uint8Array(this.memory.buffer, 0, 32).set(simdConstants(layout, opaque));
      this.constantsFor = key;
    }
    this.run(DATA_OFFSET + start, DATA_OFFSET + end);
  }
}

class JsScratch implements PixelScratch {
  private view = new Uint8Array(0);

  get capacity(): number {
    return this.view.length - SIMD_SLACK;
  }

  get data(): Uint8Array {
    return this.view;
  }

  ensure(bytes: number): void {
    if (bytes + SIMD_SLACK <= this.view.length) return;
    this.view = new Uint8Array(Math.max(bytes + SIMD_SLACK, this.view.length * 2));
  }

  convert(start: number, end: number, layout: FormatLayout, opaque: boolean): void {
    checkRange(start, end, this.capacity);
    convertInPlace(this.view.subarray(start, end), layout, opaque);
  }
}

function checkRange(start: number, end: number, capacity: number): void {
  if (!(start >= 0 && start <= end && end <= capacity && start % 4 === 0 && (end - start) % 4 === 0)) {
    throw new RangeError(`pixel converter: bad range [${start}, ${end}) of ${capacity}`);
  }
}

/**
 * Convert whole pixels of `pixels` from `layout` to RGBA8888 in place, with
 * plain JavaScript (the fallback, and for small images such as cursors).
 */
export function convertInPlace(pixels: Uint8Array, layout: FormatLayout, opaque: boolean): void {
  const n = pixels.length >> 2;
  if (pixels.byteOffset % 4 !== 0) {
    convertBytes(pixels, n, layout, opaque);
    return;
  }
  // Int32 keeps every value a small integer for the JIT (Uint32 values ≥ 2^31 become doubles).
  const px = new Int32Array(pixels.buffer, pixels.byteOffset, n);
  const alpha = opaque ? -0x1000000 : 0; // 0xff000000 as an int32
  const { r, g, b, a } = layout;
  if (r === 2 && g === 1 && b === 0 && a === 3) {
    // Bytes B G R A → R G B A: swap bytes 0 and 2 (keep G, and A unless forced).
    const keep = opaque ? 0xff00 : 0xff00ff00 | 0;
    for (let i = 0; i < n; i++) {
      const v = px[i]!;
      const t = v & 0xff00ff;
      px[i] = (v & keep) | (t >>> 16) | (t << 16) | alpha;
    }
  } else if (r === 0 && g === 1 && b === 2 && a === 3) {
    if (opaque) for (let i = 0; i < n; i++) px[i] = px[i]! | alpha;
  } else if (r === 1 && g === 2 && b === 3 && a === 0) {
    // Bytes A R G B → R G B A: rotate by one byte.
    for (let i = 0; i < n; i++) {
      const v = px[i]!;
      px[i] = (v >>> 8) | (opaque ? alpha : v << 24);
    }
  } else {
    convertBytes(pixels, n, layout, opaque);
  }
}

function convertBytes(pixels: Uint8Array, n: number, layout: FormatLayout, opaque: boolean): void {
  const { r, g, b, a } = layout;
  for (let i = 0, p = 0; i < n; i++, p += 4) {
    const rv = pixels[p + r]!;
    const gv = pixels[p + g]!;
    const bv = pixels[p + b]!;
    const av = opaque ? 255 : pixels[p + a]!;
    pixels[p] = rv;
    pixels[p + 1] = gv;
    pixels[p + 2] = bv;
    pixels[p + 3] = av;
  }
}

/** A scratch buffer: SIMD-backed when available and `simd` is not false. */
export function createScratch(simd = true): PixelScratch {
  const module = simd ? simdModule() : null;
  const api = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;
  if (module && api) return new WasmScratch(api, module);
  return new JsScratch();
}
