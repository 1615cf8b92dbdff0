/**
 * A minimal PNG encoder (8-bit RGBA, no interlacing, filter type None) for
 * screen snapshots in tests and diagnostics. Compression is zlib's, from
 * node:zlib; CRC-32 is zlib.crc32 where the runtime has it (Node ≥ 20.15),
 * else a table-driven implementation of the same polynomial.
 */
import * as zlib from 'node:zlib';

const SIGNATURE = Uint8Array.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
const COLOR_TYPE_RGBA = 6;

let table: Uint32Array | undefined;

/** CRC-32 (ISO-HDLC, reflected polynomial 0xedb88320), as PNG chunks use. */
export function crc32Table(data: Uint8Array, value = 0): number {
  if (!table) {
    table = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      table[n] = c >>> 0;
    }
  }
  let crc = ~value >>> 0;
  for (let i = 0; i < data.length; i++) crc = table[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return ~crc >>> 0;
}

function crc32(data: Uint8Array, value = 0): number {
  return typeof zlib.crc32 === 'function' ? zlib.crc32(data, value) : crc32Table(data, value);
}

function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

export interface PngOptions {
  /** zlib level 0–9. Default 6. */
  readonly level?: number;
}

/** Encode `rgba` (width × height pixels, bytes R, G, B, A, rows without padding) as a PNG file. */
export function encodePng(width: number, height: number, rgba: Uint8Array, options: PngOptions = {}): Buffer {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1) {
    throw new RangeError(`PNG: bad size ${width}x${height}`);
  }
  const stride = width * 4;
  if (rgba.length !== stride * height)
    throw new RangeError(`PNG: expected ${stride * height} bytes, got ${rgba.length}`);
  // Each scanline is preceded by its filter type byte (0: None).
  const raw = Buffer.alloc((stride + 1) * height);
  for (let y = 0; y < height; y++) raw.set(rgba.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 8; // bits per sample
  header[9] = COLOR_TYPE_RGBA;
  // compression 0 (deflate), filter method 0, no interlace
  return Buffer.concat([
    SIGNATURE,
    chunk('IHDR', header),
    chunk('IDAT', zlib.deflateSync(raw, { level: options.level ?? 6 })),
    chunk('IEND', new Uint8Array(0)),
  ]);
}
