import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  ContractError,
  LIMITS,
  parseDisplaySize,
  parseInputEvent,
  parseInputEvents,
  parseOpenRequest,
  parseSandboxId,
} from '../../electron/contract/ipc.js';

/** Asserts that `fn` throws a ContractError whose message matches `pattern`. */
function refuses(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof ContractError, `expected a ContractError, got ${String(error)}`);
    assert.equal(error.name, 'ContractError');
    assert.match(error.message, pattern);
    return true;
  });
}

describe('parseSandboxId', () => {
  test('accepts ids of lower-case letters, digits and dashes up to the limit', () => {
    assert.equal(parseSandboxId('sbx-0123456789ab'), 'sbx-0123456789ab');
    assert.equal(parseSandboxId('a'), 'a');
    const longest = 'a'.repeat(LIMITS.maxIdChars);
    assert.equal(parseSandboxId(longest), longest);
  });

  test('refuses non-strings, empty, too long and characters outside [a-z0-9-]', () => {
    for (const bad of [
      undefined,
      null,
      42,
      ['sbx-1'],
      { id: 'sbx-1' },
      '',
      'a'.repeat(LIMITS.maxIdChars + 1),
      'SBX-1',
      'sbx_1',
      'sbx 1',
      'sbx-1\0',
      '../etc',
      'sbx-1\n',
      'sbx/1',
      'sbx-é',
    ]) {
      refuses(() => parseSandboxId(bad), /not a sandbox id/);
    }
  });
});

describe('parseOpenRequest', () => {
  test('accepts a file request and returns a fresh object with only kind and path', () => {
    const input = { kind: 'file', path: '/home/ann/report.pdf' };
    const parsed = parseOpenRequest(input);
    assert.deepEqual(parsed, { kind: 'file', path: '/home/ann/report.pdf' });
    assert.notEqual(parsed, input);
  });

  test('accepts a url request as given (scheme checks happen later, on the host)', () => {
    assert.deepEqual(parseOpenRequest({ kind: 'url', url: 'https://example.com/a?b=c' }), {
      kind: 'url',
      url: 'https://example.com/a?b=c',
    });
  });

  test('accepts paths and URLs exactly at the length limits', () => {
    const path = '/' + 'p'.repeat(LIMITS.maxPathChars - 1);
    assert.equal((parseOpenRequest({ kind: 'file', path }) as { path: string }).path, path);
    const url = 'https://e.com/' + 'u'.repeat(LIMITS.maxUrlChars - 'https://e.com/'.length);
    assert.equal(url.length, LIMITS.maxUrlChars);
    assert.equal((parseOpenRequest({ kind: 'url', url }) as { url: string }).url, url);
  });

  test('refuses values that are not plain objects', () => {
    for (const bad of [undefined, null, 'file', 1, true, [], [{ kind: 'file', path: '/x' }]]) {
      refuses(() => parseOpenRequest(bad), /must be an object/);
    }
  });

  test('refuses unknown or missing kinds', () => {
    for (const bad of [{}, { kind: 'FILE', path: '/x' }, { kind: 'dir', path: '/x' }, { path: '/x' }, { kind: 1 }]) {
      refuses(() => parseOpenRequest(bad), /kind must be "file" or "url"/);
    }
  });

  test('refuses extra fields, naming the field', () => {
    refuses(() => parseOpenRequest({ kind: 'file', path: '/x', url: 'https://e.com' }), /unexpected field "url"/);
    refuses(() => parseOpenRequest({ kind: 'url', url: 'https://e.com', path: '/x' }), /unexpected field "path"/);
    refuses(() => parseOpenRequest({ kind: 'file', path: '/x', __proto__x: 1 }), /unexpected field "__proto__x"/);
  });

  test('truncates a hostile field name in the error message', () => {
    const key = 'k'.repeat(10_000);
    assert.throws(
      () => parseOpenRequest({ kind: 'file', path: '/x', [key]: 1 }),
      (error: unknown) => error instanceof ContractError && error.message.length < 100,
    );
  });

  test('refuses bad file paths: non-string, empty, NUL, too long', () => {
    for (const path of [undefined, 3, ['/x'], '', '/tmp/a\0b', '\0', '/' + 'p'.repeat(LIMITS.maxPathChars)]) {
      refuses(() => parseOpenRequest({ kind: 'file', path }), /file path must be a non-empty string without NUL/);
    }
  });

  test('refuses bad URLs: non-string, empty, too long', () => {
    for (const url of [undefined, null, 7, { href: 'https://e.com' }, '', 'h'.repeat(LIMITS.maxUrlChars + 1)]) {
      refuses(() => parseOpenRequest({ kind: 'url', url }), /URL must be a string of 1 to 8192 characters/);
    }
  });
});

describe('parseInputEvent', () => {
  test('accepts every event type with its fields', () => {
    assert.deepEqual(parseInputEvent({ type: 'key', code: 'KeyA', down: true }), {
      type: 'key',
      code: 'KeyA',
      down: true,
    });
    assert.deepEqual(parseInputEvent({ type: 'key', code: 'F12', down: false }), {
      type: 'key',
      code: 'F12',
      down: false,
    });
    assert.deepEqual(parseInputEvent({ type: 'pointer-move', x: 10.5, y: 0 }), { type: 'pointer-move', x: 10.5, y: 0 });
    for (const button of ['left', 'middle', 'right'] as const) {
      assert.deepEqual(parseInputEvent({ type: 'pointer-button', button, down: true }), {
        type: 'pointer-button',
        button,
        down: true,
      });
    }
    assert.deepEqual(parseInputEvent({ type: 'wheel', dx: 0, dy: -3 }), { type: 'wheel', dx: 0, dy: -3 });
  });

  test('pointer coordinates are accepted at both ends of the range', () => {
    assert.deepEqual(parseInputEvent({ type: 'pointer-move', x: 0, y: LIMITS.maxDisplaySide }), {
      type: 'pointer-move',
      x: 0,
      y: LIMITS.maxDisplaySide,
    });
  });

  test('wheel deltas are rounded to whole detents and may reach ±maxWheel', () => {
    assert.deepEqual(parseInputEvent({ type: 'wheel', dx: 1.4, dy: -2.6 }), { type: 'wheel', dx: 1, dy: -3 });
    assert.deepEqual(parseInputEvent({ type: 'wheel', dx: LIMITS.maxWheel, dy: -LIMITS.maxWheel }), {
      type: 'wheel',
      dx: LIMITS.maxWheel,
      dy: -LIMITS.maxWheel,
    });
  });

  test('refuses non-objects and unknown event types', () => {
    for (const bad of [null, 'key', 5, [], [{ type: 'key', code: 'KeyA', down: true }]]) {
      refuses(() => parseInputEvent(bad), /an event must be an object/);
    }
    for (const type of [undefined, 'keydown', 'KEY', 'pointer', 'touch', 'clipboard', 1]) {
      refuses(() => parseInputEvent({ type, code: 'KeyA', down: true }), /unknown event type/);
    }
  });

  test('refuses extra fields on every event type', () => {
    refuses(
      () => parseInputEvent({ type: 'key', code: 'KeyA', down: true, repeat: true }),
      /unexpected field "repeat"/,
    );
    refuses(() => parseInputEvent({ type: 'pointer-move', x: 1, y: 1, z: 1 }), /unexpected field "z"/);
    refuses(
      () => parseInputEvent({ type: 'pointer-button', button: 'left', down: true, x: 1 }),
      /unexpected field "x"/,
    );
    refuses(() => parseInputEvent({ type: 'wheel', dx: 1, dy: 1, dz: 1 }), /unexpected field "dz"/);
  });

  test('refuses key codes that are not KeyboardEvent.code values', () => {
    for (const code of [undefined, 65, '', 'Key A', 'Key-A', 'KeyA\0', 'a'.repeat(LIMITS.maxKeyCodeChars + 1), 'ä']) {
      refuses(() => parseInputEvent({ type: 'key', code, down: true }), /code must be a KeyboardEvent.code/);
    }
    assert.equal(
      (parseInputEvent({ type: 'key', code: 'a'.repeat(LIMITS.maxKeyCodeChars), down: true }) as { code: string }).code
        .length,
      LIMITS.maxKeyCodeChars,
    );
  });

  test('refuses a non-boolean down', () => {
    for (const down of [undefined, 1, 'true', null]) {
      refuses(() => parseInputEvent({ type: 'key', code: 'KeyA', down }), /down must be true or false/);
      refuses(() => parseInputEvent({ type: 'pointer-button', button: 'left', down }), /down must be true or false/);
    }
  });

  test('refuses unknown pointer buttons', () => {
    for (const button of [undefined, 'back', 'LEFT', 0, 'forward']) {
      refuses(() => parseInputEvent({ type: 'pointer-button', button, down: true }), /unknown button/);
    }
  });

  test('refuses NaN, Infinity, strings and out-of-range pointer coordinates', () => {
    for (const bad of [NaN, Infinity, -Infinity, -1, -0.001, LIMITS.maxDisplaySide + 1, '5', null, undefined]) {
      refuses(() => parseInputEvent({ type: 'pointer-move', x: bad, y: 1 }), /x must be a number from 0 to 3840/);
      refuses(() => parseInputEvent({ type: 'pointer-move', x: 1, y: bad }), /y must be a number from 0 to 3840/);
    }
  });

  test('refuses NaN, Infinity and out-of-range wheel deltas', () => {
    for (const bad of [NaN, Infinity, -Infinity, LIMITS.maxWheel + 0.5, -LIMITS.maxWheel - 1, 1e9, '1']) {
      refuses(() => parseInputEvent({ type: 'wheel', dx: bad, dy: 0 }), /dx must be a number from -16 to 16/);
      refuses(() => parseInputEvent({ type: 'wheel', dx: 0, dy: bad }), /dy must be a number from -16 to 16/);
    }
  });
});

describe('parseInputEvents', () => {
  test('accepts an empty batch and a batch at the limit, validating each event', () => {
    assert.deepEqual(parseInputEvents([]), []);
    const batch = Array.from({ length: LIMITS.maxEventsPerBatch }, (_, i) => ({
      type: 'pointer-move',
      x: i,
      y: i,
    }));
    const parsed = parseInputEvents(batch);
    assert.equal(parsed.length, LIMITS.maxEventsPerBatch);
    assert.deepEqual(parsed[255], { type: 'pointer-move', x: 255, y: 255 });
  });

  test('returns the events in order with rounding applied', () => {
    assert.deepEqual(
      parseInputEvents([
        { type: 'key', code: 'Enter', down: true },
        { type: 'wheel', dx: 0.6, dy: 0 },
        { type: 'key', code: 'Enter', down: false },
      ]),
      [
        { type: 'key', code: 'Enter', down: true },
        { type: 'wheel', dx: 1, dy: 0 },
        { type: 'key', code: 'Enter', down: false },
      ],
    );
  });

  test('refuses batches over the limit and non-arrays', () => {
    const tooMany = Array.from({ length: LIMITS.maxEventsPerBatch + 1 }, () => ({
      type: 'key',
      code: 'KeyA',
      down: true,
    }));
    refuses(() => parseInputEvents(tooMany), /at most 256/);
    for (const bad of [undefined, null, { length: 1, 0: { type: 'key', code: 'KeyA', down: true } }, 'events', 3]) {
      refuses(() => parseInputEvents(bad), /events must be an array/);
    }
  });

  test('refuses the whole batch when one event is bad', () => {
    refuses(
      () =>
        parseInputEvents([
          { type: 'key', code: 'KeyA', down: true },
          { type: 'pointer-move', x: NaN, y: 0 },
        ]),
      /x must be a number/,
    );
    refuses(() => parseInputEvents([{ type: 'key', code: 'KeyA', down: true }, null]), /must be an object/);
  });
});

describe('parseDisplaySize', () => {
  test('accepts integer sizes in range unchanged', () => {
    assert.deepEqual(parseDisplaySize(1280, 800), { width: 1280, height: 800 });
    assert.deepEqual(parseDisplaySize(LIMITS.minDisplaySide, LIMITS.maxDisplaySide), {
      width: LIMITS.minDisplaySide,
      height: LIMITS.maxDisplaySide,
    });
  });

  test('clamps out-of-range integers to the limits', () => {
    assert.deepEqual(parseDisplaySize(0, 100_000), { width: LIMITS.minDisplaySide, height: LIMITS.maxDisplaySide });
    assert.deepEqual(parseDisplaySize(-5000, 1), { width: LIMITS.minDisplaySide, height: LIMITS.minDisplaySide });
  });

  test('refuses non-integers, NaN, Infinity and non-numbers', () => {
    for (const bad of [NaN, Infinity, -Infinity, 10.5, '800', null, undefined, [800]]) {
      refuses(() => parseDisplaySize(bad, 800), /width must be an integer/);
      refuses(() => parseDisplaySize(800, bad), /height must be an integer/);
    }
  });
});
