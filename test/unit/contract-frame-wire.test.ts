import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  decodeFrame,
  encodedFrameBytes,
  encodeFrame,
  FRAME_FLAGS,
  FRAME_HEADER_BYTES,
  FRAME_MAGIC,
  FRAME_RECT_HEADER_BYTES,
  FrameWireError,
  MAX_CURSOR_SIDE,
  MAX_FRAME_RECTS,
  MAX_SCREEN_SIDE,
  type WireFrame,
  type WireRect,
} from '../../electron/contract/frame-wire.js';
import { BRIDGE_METHODS, packBridgeFrame, unpackBridgeFrame } from '../../electron/contract/bridge-protocol.js';

/** Pixels whose every byte depends on its position and a seed, so misplaced bytes show. */
function pattern(width: number, height: number, seed = 0): Uint8Array {
  const out = new Uint8Array(width * height * 4);
  for (let i = 0; i < out.length; i++) out[i] = (i * 31 + seed * 7 + 3) & 0xff;
  return out;
}

function rect(x: number, y: number, width: number, height: number, seed = 0): WireRect {
  return { x, y, width, height, pixels: pattern(width, height, seed) };
}

function refuses(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof FrameWireError, `expected a FrameWireError, got ${String(error)}`);
    assert.match(error.message, pattern);
    return true;
  });
}

/** Compares a decoded frame with what was encoded (Uint8Array views compared by content). */
function assertSameFrame(actual: WireFrame, expected: WireFrame): void {
  assert.equal(actual.seq, expected.seq >>> 0);
  assert.equal(actual.enabled, expected.enabled);
  assert.equal(actual.full, expected.full);
  assert.equal(actual.width, expected.width);
  assert.equal(actual.height, expected.height);
  assert.equal(actual.rects.length, expected.rects.length);
  actual.rects.forEach((r, i) => {
    const e = expected.rects[i]!;
    assert.deepEqual([r.x, r.y, r.width, r.height], [e.x, e.y, e.width, e.height]);
    assert.deepEqual(Buffer.from(r.pixels), Buffer.from(e.pixels));
  });
  if (!expected.cursor) {
    assert.equal(actual.cursor, undefined);
    assert.ok(!('cursor' in actual));
    return;
  }
  const c = actual.cursor;
  assert.ok(c);
  const e = expected.cursor;
  assert.deepEqual([c.visible, c.x, c.y, c.hotX, c.hotY], [e.visible, e.x, e.y, e.hotX, e.hotY]);
  if (!e.image) {
    assert.equal(c.image, undefined);
    return;
  }
  assert.ok(c.image);
  assert.equal(c.image.width, e.image.width);
  assert.equal(c.image.height, e.image.height);
  assert.deepEqual(Buffer.from(c.image.pixels), Buffer.from(e.image.pixels));
}

const SCREEN = { width: 64, height: 48 };

function baseFrame(overrides: Partial<WireFrame> = {}): WireFrame {
  return { seq: 7, enabled: true, full: false, ...SCREEN, rects: [rect(2, 3, 5, 4)], ...overrides };
}

describe('frame-wire round trip', () => {
  test('a full frame with one rect covering the screen', () => {
    const frame = baseFrame({ full: true, rects: [rect(0, 0, SCREEN.width, SCREEN.height, 1)] });
    const buffer = encodeFrame(frame);
    assert.equal(buffer.byteLength, FRAME_HEADER_BYTES + FRAME_RECT_HEADER_BYTES + SCREEN.width * SCREEN.height * 4);
    assert.equal(buffer.byteLength, encodedFrameBytes(frame));
    assertSameFrame(decodeFrame(buffer), frame);
  });

  test('several rects keep their order, positions and pixels', () => {
    const frame = baseFrame({
      seq: 123_456,
      rects: [rect(0, 0, 1, 1, 1), rect(10, 20, 7, 3, 2), rect(SCREEN.width - 4, SCREEN.height - 2, 4, 2, 3)],
    });
    const decoded = decodeFrame(encodeFrame(frame));
    assertSameFrame(decoded, frame);
  });

  test('the header layout is the documented one (magic, seq, size, flags, count)', () => {
    const frame = baseFrame({
      full: true,
      cursor: { visible: true, x: -3, y: 9, hotX: 1, hotY: 2, image: { width: 2, height: 3, pixels: pattern(2, 3) } },
    });
    const view = new DataView(encodeFrame(frame));
    assert.equal(view.getUint32(0, true), FRAME_MAGIC);
    assert.equal(String.fromCharCode(view.getUint8(0), view.getUint8(1), view.getUint8(2), view.getUint8(3)), 'BJF1');
    assert.equal(view.getUint32(4, true), 7);
    assert.equal(view.getUint16(8, true), SCREEN.width);
    assert.equal(view.getUint16(10, true), SCREEN.height);
    assert.equal(
      view.getUint8(12),
      FRAME_FLAGS.enabled | FRAME_FLAGS.full | FRAME_FLAGS.cursor | FRAME_FLAGS.cursorImage | FRAME_FLAGS.cursorVisible,
    );
    assert.equal(view.getUint8(13), 1);
    assert.equal(view.getInt32(16, true), -3);
    assert.equal(view.getInt32(20, true), 9);
    assert.equal(view.getUint16(28, true), 2);
    assert.equal(view.getUint16(30, true), 3);
    // The rect header follows the frame header.
    assert.deepEqual(
      [0, 2, 4, 6].map((o) => view.getUint16(FRAME_HEADER_BYTES + o, true)),
      [2, 3, 5, 4],
    );
  });

  test('a cursor without an image (position and visibility only)', () => {
    const frame = baseFrame({ rects: [], cursor: { visible: false, x: 100, y: -20, hotX: 3, hotY: 4 } });
    const buffer = encodeFrame(frame);
    assert.equal(buffer.byteLength, FRAME_HEADER_BYTES);
    const decoded = decodeFrame(buffer);
    assertSameFrame(decoded, frame);
    assert.equal(decoded.cursor?.visible, false);
  });

  test('a cursor with an image, after the rects', () => {
    const image = { width: MAX_CURSOR_SIDE, height: 2, pixels: pattern(MAX_CURSOR_SIDE, 2, 9) };
    const frame = baseFrame({ cursor: { visible: true, x: 5, y: 6, hotX: 0, hotY: 1, image } });
    const buffer = encodeFrame(frame);
    assert.equal(buffer.byteLength, encodedFrameBytes(frame));
    const decoded = decodeFrame(buffer);
    assertSameFrame(decoded, frame);
    // The decoded pixels are views into the buffer, not copies.
    assert.equal(decoded.cursor?.image?.pixels.buffer, buffer);
    assert.equal(decoded.rects[0]?.pixels.buffer, buffer);
  });

  test('a disabled frame (0×0, no rects)', () => {
    const frame: WireFrame = { seq: 0, enabled: false, full: true, width: 0, height: 0, rects: [] };
    const buffer = encodeFrame(frame);
    assert.equal(buffer.byteLength, FRAME_HEADER_BYTES);
    const decoded = decodeFrame(buffer);
    assertSameFrame(decoded, frame);
    assert.equal(decoded.enabled, false);
  });

  test('seq wraps to u32', () => {
    const decoded = decodeFrame(encodeFrame(baseFrame({ seq: 2 ** 32 + 5 })));
    assert.equal(decoded.seq, 5);
  });

  test('the largest allowed frame header values round-trip (max screen, max rect count)', () => {
    const rects = Array.from({ length: MAX_FRAME_RECTS }, (_, i) => rect(i, 0, 1, 1, i));
    const frame = baseFrame({ width: MAX_SCREEN_SIDE, height: 1, rects });
    assertSameFrame(decodeFrame(encodeFrame(frame)), frame);
  });
});

describe('frame-wire encoder refuses bad frames', () => {
  test('screen too large', () => {
    refuses(() => encodeFrame(baseFrame({ width: MAX_SCREEN_SIDE + 1, rects: [] })), /screen too large/);
    refuses(() => encodeFrame(baseFrame({ height: MAX_SCREEN_SIDE + 1, rects: [] })), /screen too large/);
  });

  test('too many rects', () => {
    const rects = Array.from({ length: MAX_FRAME_RECTS + 1 }, () => rect(0, 0, 1, 1));
    refuses(() => encodeFrame(baseFrame({ rects })), /too many rects/);
  });

  test('rects outside the screen, empty or with non-integer fields', () => {
    refuses(() => encodeFrame(baseFrame({ rects: [rect(SCREEN.width - 1, 0, 2, 1)] })), /outside the screen/);
    refuses(() => encodeFrame(baseFrame({ rects: [rect(0, SCREEN.height, 1, 1)] })), /outside the screen/);
    refuses(
      () => encodeFrame(baseFrame({ rects: [{ x: -1, y: 0, width: 1, height: 1, pixels: pattern(1, 1) }] })),
      /outside the screen/,
    );
    refuses(
      () => encodeFrame(baseFrame({ rects: [{ x: 0, y: 0, width: 0, height: 1, pixels: new Uint8Array(0) }] })),
      /empty rect/,
    );
    refuses(
      () => encodeFrame(baseFrame({ rects: [{ x: 0.5, y: 0, width: 1, height: 1, pixels: pattern(1, 1) }] })),
      /must be integers/,
    );
  });

  test('rect pixel count that does not match its size', () => {
    refuses(
      () => encodeFrame(baseFrame({ rects: [{ x: 0, y: 0, width: 2, height: 2, pixels: new Uint8Array(15) }] })),
      /pixel count/,
    );
  });

  test('cursor image too large or with the wrong pixel count', () => {
    const big = MAX_CURSOR_SIDE + 1;
    refuses(
      () =>
        encodeFrame(
          baseFrame({
            cursor: {
              visible: true,
              x: 0,
              y: 0,
              hotX: 0,
              hotY: 0,
              image: { width: big, height: 1, pixels: pattern(big, 1) },
            },
          }),
        ),
      /cursor too large/,
    );
    refuses(
      () =>
        encodeFrame(
          baseFrame({
            cursor: {
              visible: true,
              x: 0,
              y: 0,
              hotX: 0,
              hotY: 0,
              image: { width: 2, height: 2, pixels: pattern(2, 1) },
            },
          }),
        ),
      /cursor pixel count/,
    );
  });
});

describe('frame-wire decoder refuses hostile buffers', () => {
  const good = () =>
    encodeFrame(
      baseFrame({
        rects: [rect(0, 0, 3, 2, 1), rect(4, 4, 2, 2, 2)],
        cursor: { visible: true, x: 1, y: 1, hotX: 0, hotY: 0, image: { width: 2, height: 2, pixels: pattern(2, 2) } },
      }),
    );

  /** A copy of `buffer` with `edit` applied through a DataView. */
  function edited(buffer: ArrayBuffer, edit: (view: DataView) => void): ArrayBuffer {
    const copy = buffer.slice(0);
    edit(new DataView(copy));
    return copy;
  }

  test('the unmodified buffer decodes (control for the cases below)', () => {
    assert.equal(decodeFrame(good()).rects.length, 2);
  });

  test('buffers shorter than the header', () => {
    refuses(() => decodeFrame(new ArrayBuffer(0)), /shorter than its header/);
    refuses(() => decodeFrame(good().slice(0, FRAME_HEADER_BYTES - 1)), /shorter than its header/);
  });

  test('every truncation of a valid frame is refused', () => {
    const buffer = good();
    for (let length = 0; length < buffer.byteLength; length++) {
      assert.throws(() => decodeFrame(buffer.slice(0, length)), FrameWireError, `length ${length}`);
    }
  });

  test('truncation inside a rect header, rect pixels and the cursor image names the part', () => {
    const buffer = good();
    refuses(() => decodeFrame(buffer.slice(0, FRAME_HEADER_BYTES + 4)), /truncated rect header/);
    refuses(
      () => decodeFrame(buffer.slice(0, FRAME_HEADER_BYTES + FRAME_RECT_HEADER_BYTES + 5)),
      /truncated rect pixels/,
    );
    refuses(() => decodeFrame(buffer.slice(0, buffer.byteLength - 1)), /truncated cursor image/);
  });

  test('bad magic', () => {
    refuses(() => decodeFrame(edited(good(), (v) => v.setUint32(0, FRAME_MAGIC + 1, true))), /bad magic/);
    refuses(() => decodeFrame(edited(good(), (v) => v.setUint32(0, FRAME_MAGIC, false))), /bad magic/);
  });

  test('screen larger than the maximum', () => {
    refuses(() => decodeFrame(edited(good(), (v) => v.setUint16(8, MAX_SCREEN_SIDE + 1, true))), /screen too large/);
  });

  test('rect outside the screen', () => {
    // Move the first rect (3×2) to x = width - 2.
    refuses(
      () => decodeFrame(edited(good(), (v) => v.setUint16(FRAME_HEADER_BYTES, SCREEN.width - 2, true))),
      /rect outside the screen/,
    );
    // Shrink the screen below the second rect.
    refuses(() => decodeFrame(edited(good(), (v) => v.setUint16(10, 5, true))), /rect outside the screen/);
  });

  test('an empty rect', () => {
    const buffer = encodeFrame(baseFrame({ rects: [rect(0, 0, 1, 1)], cursor: undefined }));
    // width 0: the pixel bytes (4) become trailing bytes, but the rect check comes first.
    refuses(() => decodeFrame(edited(buffer, (v) => v.setUint16(FRAME_HEADER_BYTES + 4, 0, true))), /empty rect/);
  });

  test('a rect header whose size does not match the pixels that follow', () => {
    const buffer = encodeFrame(baseFrame({ rects: [rect(0, 0, 2, 2)] }));
    // Claims 2×1: 8 pixel bytes are left over.
    refuses(() => decodeFrame(edited(buffer, (v) => v.setUint16(FRAME_HEADER_BYTES + 6, 1, true))), /trailing bytes/);
    // Claims 2×3: more pixels than there are.
    refuses(
      () => decodeFrame(edited(buffer, (v) => v.setUint16(FRAME_HEADER_BYTES + 6, 3, true))),
      /truncated rect pixels/,
    );
  });

  test('a rect count larger than the rects present', () => {
    refuses(() => decodeFrame(edited(good(), (v) => v.setUint8(13, 3))), /truncated/);
  });

  test('trailing bytes', () => {
    const buffer = good();
    const longer = new Uint8Array(buffer.byteLength + 1);
    longer.set(new Uint8Array(buffer));
    refuses(() => decodeFrame(longer.buffer), /trailing bytes/);
    // A cursor image whose flag is cleared leaves its bytes behind.
    refuses(
      () => decodeFrame(edited(buffer, (v) => v.setUint8(12, v.getUint8(12) & ~FRAME_FLAGS.cursorImage))),
      /trailing bytes/,
    );
  });

  test('too many rects', () => {
    refuses(() => decodeFrame(edited(good(), (v) => v.setUint8(13, MAX_FRAME_RECTS + 1))), /too many rects/);
    refuses(() => decodeFrame(edited(good(), (v) => v.setUint8(13, 255))), /too many rects/);
  });

  test('a cursor image larger than the maximum', () => {
    refuses(() => decodeFrame(edited(good(), (v) => v.setUint16(28, MAX_CURSOR_SIDE + 1, true))), /cursor too large/);
  });

  test('cursor fields are ignored unless the cursor flag is set', () => {
    const buffer = encodeFrame(baseFrame({ rects: [] }));
    const decoded = decodeFrame(edited(buffer, (v) => v.setInt32(16, 99, true)));
    assert.equal(decoded.cursor, undefined);
  });
});

describe('bridge-protocol frame packing', () => {
  test('pack prefixes the id length and id; unpack returns both, the frame decodable', () => {
    const frame = baseFrame({ rects: [rect(1, 1, 3, 3, 4)] });
    const encoded = encodeFrame(frame);
    const packed = packBridgeFrame('sbx-00aa11bb22cc', encoded);
    assert.equal(packed[0], 'sbx-00aa11bb22cc'.length);
    assert.equal(Buffer.from(packed.subarray(1, 17)).toString('ascii'), 'sbx-00aa11bb22cc');
    assert.equal(packed.length, 1 + 16 + encoded.byteLength);

    // Hand unpack an ArrayBuffer that is exactly the message.
    const message = packed.buffer.slice(packed.byteOffset, packed.byteOffset + packed.byteLength) as ArrayBuffer;
    const { sandboxId, frame: bytes } = unpackBridgeFrame(message);
    assert.equal(sandboxId, 'sbx-00aa11bb22cc');
    assert.deepEqual(Buffer.from(bytes), Buffer.from(encoded));
    // The frame is a copy starting at offset 0, so the decoder's DataView and pixel views are aligned.
    assert.notEqual(bytes, message);
    assertSameFrame(decodeFrame(bytes), frame);
  });

  test('an empty id and an empty frame round-trip', () => {
    const packed = packBridgeFrame('', new ArrayBuffer(0));
    assert.deepEqual([...packed], [0]);
    const { sandboxId, frame } = unpackBridgeFrame(packed.buffer as ArrayBuffer);
    assert.equal(sandboxId, '');
    assert.equal(frame.byteLength, 0);
  });

  test('ids of up to 255 bytes are packed; longer ones are refused', () => {
    const id = 'a'.repeat(255);
    const { sandboxId } = unpackBridgeFrame(packBridgeFrame(id, new ArrayBuffer(4)).buffer as ArrayBuffer);
    assert.equal(sandboxId, id);
    assert.throws(() => packBridgeFrame('a'.repeat(256), new ArrayBuffer(0)), /sandbox id too long/);
    // Length is counted in UTF-8 bytes, not characters.
    assert.throws(() => packBridgeFrame('é'.repeat(128), new ArrayBuffer(0)), /sandbox id too long/);
  });

  test('unpack refuses empty and truncated messages', () => {
    assert.throws(() => unpackBridgeFrame(new ArrayBuffer(0)), /truncated frame message/);
    const short = new Uint8Array([10, 0x61, 0x62]);
    assert.throws(() => unpackBridgeFrame(short.buffer), /truncated frame message/);
  });

  test('the method list has every API call once', () => {
    assert.equal(new Set(BRIDGE_METHODS).size, BRIDGE_METHODS.length);
    for (const m of ['listSandboxes', 'open', 'pickAndOpenFile', 'close', 'input', 'resize', 'attachDisplay']) {
      assert.ok(BRIDGE_METHODS.includes(m as (typeof BRIDGE_METHODS)[number]), m);
    }
    assert.ok(!BRIDGE_METHODS.includes('frameAck' as (typeof BRIDGE_METHODS)[number]));
  });
});
