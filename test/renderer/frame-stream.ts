/**
 * Recorded frame streams: a file of records, each a u32 little-endian length
 * followed by that many bytes of one frame in the frame-wire format
 * (electron/contract/frame-wire.ts), in the order they were sent. The file
 * may be gzip-compressed (a full screen of pixels is large but compresses
 * well); the reader recognises gzip by its magic bytes, so a stream recorded
 * from a real VM can be stored either way.
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

const GZIP_MAGIC = [0x1f, 0x8b] as const;
/** Larger than any frame the wire format allows (3840² pixels + headers), to catch a corrupt length. */
const MAX_RECORD_BYTES = 3840 * 3840 * 4 + 64 * 1024 + 256 * 256 * 4;

export function serializeFrameStream(frames: readonly ArrayBuffer[]): Uint8Array {
  const total = frames.reduce((sum, f) => sum + 4 + f.byteLength, 0);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  let at = 0;
  for (const frame of frames) {
    view.setUint32(at, frame.byteLength, true);
    out.set(new Uint8Array(frame), at + 4);
    at += 4 + frame.byteLength;
  }
  return out;
}

/** Splits a stream into its frames (each its own ArrayBuffer); throws on a truncated record. */
export function parseFrameStream(bytes: Uint8Array): ArrayBuffer[] {
  const data = bytes[0] === GZIP_MAGIC[0] && bytes[1] === GZIP_MAGIC[1] ? new Uint8Array(gunzipSync(bytes)) : bytes;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const frames: ArrayBuffer[] = [];
  let at = 0;
  while (at < data.length) {
    if (at + 4 > data.length) throw new Error(`frame stream: truncated length at byte ${at}`);
    const length = view.getUint32(at, true);
    if (length > MAX_RECORD_BYTES || at + 4 + length > data.length) {
      throw new Error(`frame stream: record at byte ${at} claims ${length} bytes, beyond the file`);
    }
    frames.push(data.slice(at + 4, at + 4 + length).buffer);
    at += 4 + length;
  }
  return frames;
}

export function readFrameStream(path: string): ArrayBuffer[] {
  return parseFrameStream(new Uint8Array(readFileSync(path)));
}
