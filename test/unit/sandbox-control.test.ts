import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CONTROL_LIMITS, ControlError, parseChildMessage } from '../../vmm/sandbox/control.js';

function refuses(message: unknown, pattern: RegExp): void {
  assert.throws(
    () => parseChildMessage(message),
    (error: unknown) => {
      assert.ok(error instanceof ControlError, `expected a ControlError, got ${String(error)}`);
      assert.equal(error.name, 'ControlError');
      assert.match(error.message, pattern);
      return true;
    },
  );
}

function pixels(width: number, height: number): Uint8Array {
  return new Uint8Array(width * height * 4).map((_, i) => i & 0xff);
}

/** A valid frame message; `overrides` replace top-level fields. */
function frame(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    type: 'frame',
    seq: 3,
    enabled: true,
    full: false,
    width: 32,
    height: 16,
    rects: [{ x: 4, y: 2, width: 3, height: 2, pixels: pixels(3, 2) }],
    ...overrides,
  };
}

function withRect(rect: Record<string, unknown>): Record<string, unknown> {
  return frame({ rects: [{ x: 0, y: 0, width: 1, height: 1, pixels: pixels(1, 1), ...rect }] });
}

function withCursor(cursor: Record<string, unknown>): Record<string, unknown> {
  return frame({ cursor: { visible: true, x: 1, y: 2, hotX: 0, hotY: 0, ...cursor } });
}

describe('parseChildMessage accepts every message type', () => {
  test('stage, for every stage', () => {
    for (const stage of ['booting', 'guest-ready', 'opening', 'shown']) {
      assert.deepEqual(parseChildMessage({ type: 'stage', stage, ms: 1234.5 }), { type: 'stage', stage, ms: 1234.5 });
    }
  });

  test('page with and without title and error, dropping unknown fields', () => {
    assert.deepEqual(parseChildMessage({ type: 'page', state: 'loading' }), { type: 'page', state: 'loading' });
    assert.deepEqual(parseChildMessage({ type: 'page', state: 'loaded', title: 'Hello', extra: 'dropped' }), {
      type: 'page',
      state: 'loaded',
      title: 'Hello',
    });
    assert.deepEqual(parseChildMessage({ type: 'page', state: 'error', error: 'net::ERR_BLOCKED' }), {
      type: 'page',
      state: 'error',
      error: 'net::ERR_BLOCKED',
    });
    assert.deepEqual(parseChildMessage({ type: 'page', state: 'idle', title: '' }), {
      type: 'page',
      state: 'idle',
      title: '',
    });
  });

  test('first-content', () => {
    assert.deepEqual(parseChildMessage({ type: 'first-content', ms: 0 }), { type: 'first-content', ms: 0 });
  });

  test('exit with kind only, and with detail and console', () => {
    assert.deepEqual(parseChildMessage({ type: 'exit', kind: 'poweroff' }), { type: 'exit', kind: 'poweroff' });
    assert.deepEqual(parseChildMessage({ type: 'exit', kind: 'error', detail: 'kernel: bad', console: 'boot log' }), {
      type: 'exit',
      kind: 'error',
      detail: 'kernel: bad',
      console: 'boot log',
    });
  });

  test('frame with rects; pixels are passed through, booleans default to false', () => {
    const px = pixels(3, 2);
    const parsed = parseChildMessage(
      frame({ enabled: 'yes', full: 1, rects: [{ x: 4, y: 2, width: 3, height: 2, pixels: px }] }),
    );
    assert.equal(parsed.type, 'frame');
    assert.ok(parsed.type === 'frame');
    assert.equal(parsed.enabled, false);
    assert.equal(parsed.full, false);
    assert.equal(parsed.seq, 3);
    assert.deepEqual([parsed.width, parsed.height], [32, 16]);
    assert.equal(parsed.rects.length, 1);
    assert.deepEqual(parsed.rects[0], { x: 4, y: 2, width: 3, height: 2, pixels: px });
    assert.equal(parsed.rects[0]?.pixels, px);
    assert.ok(!('cursor' in parsed));
  });

  test('frame with rects touching the right and bottom edges, and a full-screen rect', () => {
    const edge = parseChildMessage(withRect({ x: 31, y: 15 }));
    assert.ok(edge.type === 'frame');
    assert.deepEqual([edge.rects[0]?.x, edge.rects[0]?.y], [31, 15]);
    const full = parseChildMessage(
      frame({ full: true, rects: [{ x: 0, y: 0, width: 32, height: 16, pixels: pixels(32, 16) }] }),
    );
    assert.ok(full.type === 'frame' && full.full);
  });

  test('disabled frame: 0×0 with no rects', () => {
    assert.deepEqual(parseChildMessage(frame({ enabled: false, width: 0, height: 0, rects: [] })), {
      type: 'frame',
      seq: 3,
      enabled: false,
      full: false,
      width: 0,
      height: 0,
      rects: [],
    });
  });

  test('frame with a cursor without an image, and with one', () => {
    const plain = parseChildMessage(withCursor({ visible: 'true', x: -10, y: 3, hotX: 1, hotY: 2 }));
    assert.ok(plain.type === 'frame');
    assert.deepEqual(plain.cursor, { visible: false, x: -10, y: 3, hotX: 1, hotY: 2 });

    const image = { width: 2, height: 3, pixels: pixels(2, 3) };
    const withImage = parseChildMessage(withCursor({ image }));
    assert.ok(withImage.type === 'frame');
    assert.deepEqual(withImage.cursor, { visible: true, x: 1, y: 2, hotX: 0, hotY: 0, image });
  });

  test('a Buffer is a Uint8Array and is accepted as pixels', () => {
    const parsed = parseChildMessage(withRect({ pixels: Buffer.alloc(4) }));
    assert.ok(parsed.type === 'frame');
    assert.equal(parsed.rects[0]?.pixels.length, 4);
  });
});

describe('parseChildMessage truncates long text to its limit', () => {
  test('page title and error', () => {
    const huge = 'T'.repeat(1_000_000);
    const parsed = parseChildMessage({ type: 'page', state: 'error', title: huge, error: huge });
    assert.ok(parsed.type === 'page');
    assert.equal(parsed.title?.length, CONTROL_LIMITS.maxText);
    assert.equal(parsed.error?.length, CONTROL_LIMITS.maxText);
    assert.equal(parsed.title, huge.slice(0, CONTROL_LIMITS.maxText));
  });

  test('a title exactly at the limit is kept whole', () => {
    const title = 'x'.repeat(CONTROL_LIMITS.maxText);
    const parsed = parseChildMessage({ type: 'page', state: 'loaded', title });
    assert.ok(parsed.type === 'page');
    assert.equal(parsed.title, title);
  });

  test('exit kind (32), detail (maxText) and console (maxConsoleTail)', () => {
    const parsed = parseChildMessage({
      type: 'exit',
      kind: 'k'.repeat(100),
      detail: 'd'.repeat(CONTROL_LIMITS.maxText * 3),
      console: 'c'.repeat(CONTROL_LIMITS.maxConsoleTail + 500),
    });
    assert.ok(parsed.type === 'exit');
    assert.equal(parsed.kind, 'k'.repeat(32));
    assert.equal(parsed.detail?.length, CONTROL_LIMITS.maxText);
    assert.equal(parsed.console?.length, CONTROL_LIMITS.maxConsoleTail);
  });
});

describe('parseChildMessage refuses hostile messages', () => {
  test('non-objects', () => {
    for (const bad of [null, undefined, 'stage', 5, [{ type: 'stage', stage: 'booting', ms: 1 }], true]) {
      refuses(bad, /not an object/);
    }
  });

  test('unknown or missing type', () => {
    for (const type of [undefined, 'STAGE', 'log', 'exec', 'frame ', '__proto__', 7]) {
      refuses({ type, stage: 'booting', ms: 1 }, /unknown message type/);
    }
  });

  test('stage: unknown stage', () => {
    for (const stage of [undefined, 'preparing', 'ready', 'BOOTING', 1])
      refuses({ type: 'stage', stage, ms: 1 }, /bad stage/);
  });

  test('stage and first-content: negative, NaN, Infinity or non-number ms', () => {
    for (const ms of [-1, -0.5, NaN, Infinity, -Infinity, '10', null, undefined, 10n]) {
      refuses({ type: 'stage', stage: 'booting', ms }, /bad ms/);
      refuses({ type: 'first-content', ms }, /bad ms/);
    }
  });

  test('page: unknown state, non-string title or error', () => {
    for (const state of [undefined, 'done', 'LOADED', 0]) refuses({ type: 'page', state }, /bad page state/);
    refuses({ type: 'page', state: 'loaded', title: 42 }, /bad text/);
    refuses({ type: 'page', state: 'loaded', title: null }, /bad text/);
    refuses({ type: 'page', state: 'error', error: { message: 'x' } }, /bad text/);
  });

  test('exit: missing or non-string kind, detail or console', () => {
    refuses({ type: 'exit' }, /bad exit kind/);
    refuses({ type: 'exit', kind: 3 }, /bad text/);
    refuses({ type: 'exit', kind: 'error', detail: ['x'] }, /bad text/);
    refuses({ type: 'exit', kind: 'error', console: Buffer.from('x') }, /bad text/);
  });

  test('frame: bad screen size', () => {
    for (const width of [-1, 3841, 1.5, NaN, Infinity, '32', undefined]) refuses(frame({ width }), /bad frame width/);
    for (const height of [-1, 3841, 0.1, NaN, null]) refuses(frame({ height }), /bad frame height/);
  });

  test('frame: bad seq', () => {
    for (const seq of [-1, 1.5, NaN, Infinity, Number.MAX_SAFE_INTEGER + 2, '1', undefined]) {
      refuses(frame({ seq }), /bad frame seq/);
    }
  });

  test('frame: rects not an array, too many, or not objects', () => {
    refuses(frame({ rects: undefined }), /bad rects/);
    refuses(frame({ rects: { length: 0 } }), /bad rects/);
    const tooMany = Array.from({ length: CONTROL_LIMITS.maxRects + 1 }, () => ({
      x: 0,
      y: 0,
      width: 1,
      height: 1,
      pixels: pixels(1, 1),
    }));
    refuses(frame({ rects: tooMany }), /bad rects/);
    refuses(frame({ rects: [null] }), /bad rect$/);
    refuses(frame({ rects: [[0, 0, 1, 1]] }), /bad rect$/);
  });

  test('frame: the maximum number of rects is accepted', () => {
    const rects = Array.from({ length: CONTROL_LIMITS.maxRects }, (_, i) => ({
      x: i % 32,
      y: 0,
      width: 1,
      height: 1,
      pixels: pixels(1, 1),
    }));
    const parsed = parseChildMessage(frame({ rects }));
    assert.ok(parsed.type === 'frame');
    assert.equal(parsed.rects.length, CONTROL_LIMITS.maxRects);
  });

  test('frame: rects out of bounds or with bad numbers', () => {
    refuses(withRect({ x: -1 }), /bad rect x/);
    refuses(withRect({ x: 33 }), /bad rect x/);
    refuses(withRect({ x: NaN }), /bad rect x/);
    refuses(withRect({ y: -1 }), /bad rect y/);
    refuses(withRect({ y: 17 }), /bad rect y/);
    refuses(withRect({ y: 0.5 }), /bad rect y/);
    // Starting at the right edge leaves no room for a pixel.
    refuses(withRect({ x: 32 }), /bad rect width/);
    refuses(withRect({ x: 30, width: 3, pixels: pixels(3, 1) }), /bad rect width/);
    refuses(withRect({ y: 15, height: 2, pixels: pixels(1, 2) }), /bad rect height/);
    refuses(withRect({ width: 0, pixels: new Uint8Array(0) }), /bad rect width/);
    refuses(withRect({ height: -1 }), /bad rect height/);
    refuses(withRect({ width: Infinity }), /bad rect width/);
  });

  test('frame: rects on a 0×0 screen are refused', () => {
    refuses(frame({ width: 0, height: 0 }), /bad rect/);
  });

  test('frame: wrong pixel lengths and non-Uint8Array pixels', () => {
    refuses(withRect({ pixels: new Uint8Array(3) }), /bad rect pixels/);
    refuses(withRect({ pixels: new Uint8Array(5) }), /bad rect pixels/);
    refuses(withRect({ width: 2, pixels: pixels(1, 1) }), /bad rect pixels/);
    refuses(withRect({ pixels: [0, 0, 0, 0] }), /bad rect pixels/);
    refuses(withRect({ pixels: new Uint8ClampedArray(4) }), /bad rect pixels/);
    refuses(withRect({ pixels: new Int8Array(4) }), /bad rect pixels/);
    refuses(withRect({ pixels: new ArrayBuffer(4) }), /bad rect pixels/);
    refuses(withRect({ pixels: { length: 4 } }), /bad rect pixels/);
    refuses(withRect({ pixels: 'abcd' }), /bad rect pixels/);
    refuses(withRect({ pixels: undefined }), /bad rect pixels/);
  });

  test('frame: bad cursor', () => {
    refuses(frame({ cursor: null }), /bad cursor$/);
    refuses(frame({ cursor: 'arrow' }), /bad cursor$/);
    refuses(withCursor({ x: 65537 }), /bad cursor x/);
    refuses(withCursor({ x: NaN }), /bad cursor x/);
    refuses(withCursor({ y: -65537 }), /bad cursor y/);
    refuses(withCursor({ y: 1.5 }), /bad cursor y/);
    refuses(withCursor({ hotX: -1 }), /bad cursor hotX/);
    refuses(withCursor({ hotY: CONTROL_LIMITS.maxCursorSide + 1 }), /bad cursor hotY/);
  });

  test('frame: bad cursor image (size and pixels)', () => {
    refuses(withCursor({ image: null }), /bad cursor image/);
    refuses(withCursor({ image: 'png' }), /bad cursor image/);
    const side = CONTROL_LIMITS.maxCursorSide + 1;
    refuses(withCursor({ image: { width: side, height: 1, pixels: pixels(side, 1) } }), /bad cursor width/);
    refuses(withCursor({ image: { width: 1, height: side, pixels: pixels(1, side) } }), /bad cursor height/);
    refuses(withCursor({ image: { width: 0, height: 1, pixels: new Uint8Array(0) } }), /bad cursor width/);
    refuses(withCursor({ image: { width: 2, height: 2, pixels: pixels(2, 1) } }), /bad cursor pixels/);
    refuses(withCursor({ image: { width: 1, height: 1, pixels: [1, 2, 3, 4] } }), /bad cursor pixels/);
  });

  test('the result never carries fields the parser did not check', () => {
    const parsed = parseChildMessage({ type: 'stage', stage: 'shown', ms: 5, evil: () => 0, __proto__: { x: 1 } });
    assert.deepEqual(Object.keys(parsed).sort(), ['ms', 'stage', 'type']);
    const f = parseChildMessage(
      frame({ rects: [{ x: 0, y: 0, width: 1, height: 1, pixels: pixels(1, 1), extra: 1 }] }),
    );
    assert.ok(f.type === 'frame');
    assert.deepEqual(Object.keys(f.rects[0]!).sort(), ['height', 'pixels', 'width', 'x', 'y']);
  });
});
