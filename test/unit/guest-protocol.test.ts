import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  encodeFrame,
  FrameDecoder,
  MAX_FRAME_BYTES,
  parseGuestMessage,
  ProtocolError,
} from '../../guest-images/protocol.js';

function frame(value: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(value));
  const out = Buffer.alloc(4 + json.length);
  out.writeUInt32BE(json.length, 0);
  json.copy(out, 4);
  return out;
}

test('host frames are a big-endian length then UTF-8 JSON', () => {
  const f = encodeFrame({ v: 1, type: 'open', id: 7, url: 'https://example.org/é' });
  const len = f.readUInt32BE(0);
  assert.equal(len, f.length - 4);
  assert.deepEqual(JSON.parse(f.subarray(4).toString('utf8')), {
    v: 1,
    type: 'open',
    id: 7,
    url: 'https://example.org/é',
  });
});

test('the decoder reassembles frames split anywhere', () => {
  const bytes = Buffer.concat([
    frame({ v: 1, type: 'ready', protocol: 1, agent: 'x', timings: { init: 1200, agent_ready: 3000 } }),
    frame({ v: 1, type: 'status', id: 1, state: 'loaded', title: 'Grüße', elapsed_ms: 42 }),
  ]);
  const d = new FrameDecoder();
  const out = [];
  for (const byte of bytes) out.push(...d.push(Buffer.from([byte])));
  assert.deepEqual(out, [
    { type: 'ready', protocol: 1, agent: 'x', timings: { init: 1200, agent_ready: 3000 } },
    { type: 'status', id: 1, state: 'loaded', title: 'Grüße', elapsedMs: 42 },
  ]);
});

test('bad frames: oversized or empty poison the stream, bad JSON and bad messages are reported', () => {
  const d = new FrameDecoder();
  const out = d.push(
    Buffer.concat([frame('not an object'), frame({ v: 2, type: 'bye' }), frame({ v: 1, type: 'bye', id: 3 })]),
  );
  assert.ok(out[0] instanceof ProtocolError);
  assert.ok(out[1] instanceof ProtocolError);
  assert.deepEqual(out[2], { type: 'bye', id: 3 });
  const garbage = Buffer.from([0, 0, 0, 3, 0x7b, 0x7b, 0x7b]);
  assert.ok(new FrameDecoder().push(garbage)[0] instanceof ProtocolError);

  const big = Buffer.alloc(4);
  big.writeUInt32BE(MAX_FRAME_BYTES + 1, 0);
  const poisoned = new FrameDecoder();
  assert.throws(() => poisoned.push(big), ProtocolError);
  assert.throws(() => poisoned.push(frame({ v: 1, type: 'bye' })), ProtocolError);
  assert.throws(() => new FrameDecoder().push(Buffer.alloc(4)), /frame of 0 bytes/);
});

test('guest messages are validated field by field', () => {
  assert.throws(() => parseGuestMessage({ v: 1, type: 'status', state: 'exploded' }), ProtocolError);
  assert.throws(() => parseGuestMessage({ v: 1, type: 'status', state: 'idle', title: 5 }), ProtocolError);
  assert.throws(() => parseGuestMessage({ v: 1, type: 'status', state: 'idle', id: -1 }), ProtocolError);
  assert.throws(() => parseGuestMessage({ v: 1, type: 'ready', protocol: 2, timings: {} }), /protocol 2/);
  assert.throws(() => parseGuestMessage({ v: 1, type: 'exec', cmd: 'rm -rf /' }), /unknown message type/);
  assert.throws(() => parseGuestMessage([1]), ProtocolError);
  // Unknown timing keys and non-numbers are dropped; long strings are cut.
  const ready = parseGuestMessage({
    v: 1,
    type: 'ready',
    protocol: 1,
    timings: { init: 5, 'bad key': 1, rootfs: 'x' },
  });
  assert.deepEqual(ready, { type: 'ready', protocol: 1, agent: 'unknown', timings: { init: 5 } });
  const status = parseGuestMessage({ v: 1, type: 'status', state: 'loaded', title: 't'.repeat(10000) });
  assert.equal(status.type === 'status' && status.title?.length, 8192);
});

test("the guest's display answer carries whole, bounded sides", () => {
  assert.deepEqual(parseGuestMessage({ v: 1, type: 'display', id: 3, width: 800, height: 600 }), {
    type: 'display',
    id: 3,
    width: 800,
    height: 600,
  });
  for (const bad of [
    { width: 800 },
    { width: 800.5, height: 600 },
    { width: '800', height: 600 },
    { width: 0, height: 600 },
    { width: 800, height: 1e9 },
  ]) {
    assert.throws(() => parseGuestMessage({ v: 1, type: 'display', id: 1, ...bad }), /display\.(width|height)/);
  }
});
