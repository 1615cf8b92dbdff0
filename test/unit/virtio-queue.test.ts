import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory } from '../../vmm/memory/guest-memory.js';
import {
  DescriptorChain,
  readSegments,
  segmentViews,
  Virtqueue,
  writeSegments,
} from '../../vmm/devices/virtio/queue.js';
import type { PopResult, VirtqueueErrorKind } from '../../vmm/devices/virtio/queue.js';
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from '../../vmm/devices/virtio/constants.js';
import { assertChangedOnlyIn, GuestRing, snapshot } from './virtio-harness.js';

const RAM = 0x10_0000; // 1 MiB
const RING_BASE = 0x1000;
const BUF = 0x8_0000;

function setup(size = 8, maxSize = 16, options = {}): { memory: GuestMemory; ring: GuestRing; queue: Virtqueue } {
  const memory = GuestMemory.allocate(RAM);
  const ring = new GuestRing(memory, RING_BASE, size);
  const queue = new Virtqueue(memory, 0, maxSize, options);
  queue.size = size;
  queue.descTable = ring.desc;
  queue.availRing = ring.avail;
  queue.usedRing = ring.used;
  assert.equal(queue.enable(), null);
  return { memory, ring, queue };
}

function expectChain(result: PopResult): DescriptorChain {
  assert.equal(result.kind, 'chain', result.kind === 'error' ? result.error.message : 'queue was empty');
  return (result as { kind: 'chain'; chain: DescriptorChain }).chain;
}

/** Pop, asserting the VMM side never throws. */
function popSafely(queue: Virtqueue): PopResult {
  let result: PopResult = { kind: 'empty' };
  assert.doesNotThrow(() => {
    result = queue.pop();
  });
  return result;
}

function brokenKind(queue: Virtqueue): VirtqueueErrorKind | undefined {
  return queue.broken?.kind;
}

function expectError(result: PopResult, kind: VirtqueueErrorKind): void {
  assert.equal(result.kind, 'error');
  if (result.kind === 'error') assert.equal(result.error.kind, kind, result.error.message);
}

test('an empty ring pops nothing; a chain pops as readable segments then writable ones', () => {
  const { ring, queue } = setup();
  assert.deepEqual(queue.pop(), { kind: 'empty' });
  const head = ring.addChain([
    { addr: BUF, len: 16, writable: false },
    { addr: BUF + 0x100, len: 512, writable: false },
    { addr: BUF + 0x1000, len: 4096, writable: true },
    { addr: BUF + 0x2000, len: 1, writable: true },
  ]);
  assert.equal(queue.pending(), 1);
  const chain = expectChain(queue.pop());
  assert.equal(chain.head, head);
  assert.deepEqual(chain.readable, [
    { addr: BUF, len: 16, writable: false },
    { addr: BUF + 0x100, len: 512, writable: false },
  ]);
  assert.deepEqual(chain.writable, [
    { addr: BUF + 0x1000, len: 4096, writable: true },
    { addr: BUF + 0x2000, len: 1, writable: true },
  ]);
  assert.equal(chain.readableBytes, 528);
  assert.equal(chain.writableBytes, 4097);
  assert.deepEqual(queue.pop(), { kind: 'empty' });
});

test('pushUsed writes the element before publishing used.idx and touches nothing else', () => {
  const { memory, ring, queue } = setup();
  const head = ring.addChain([{ addr: BUF, len: 64, writable: true }]);
  const chain = expectChain(queue.pop());
  const before = snapshot(memory);
  assert.equal(queue.pushUsed(chain.head, 64), null);
  assert.equal(ring.usedIdx, 1);
  assert.deepEqual(ring.usedElem(0), { id: head, len: 64 });
  assertChangedOnlyIn(memory, before, [
    [ring.used + 2, 2],
    [ring.used + 4, 8],
  ]);
  assert.equal(queue.pushUsed(8, 0)?.kind, 'invalid-used', 'head beyond the queue size');
  assert.equal(queue.pushUsed(0, -1)?.kind, 'invalid-used');
  assert.equal(queue.pushUsed(0, 2 ** 32)?.kind, 'invalid-used');
});

test('ring indices wrap at 2^16 and ring slots at the queue size', () => {
  const { ring, queue } = setup(4, 4);
  for (let i = 0; i < 70_000; i++) {
    const head = ring.addChain([{ addr: BUF + (i % 4) * 16, len: 16, writable: true }]);
    const chain = expectChain(queue.pop());
    assert.equal(chain.head, head);
    assert.equal(queue.pushUsed(chain.head, 16), null);
  }
  assert.equal(queue.lastAvailIndex, 70_000 & 0xffff);
  assert.equal(ring.usedIdx, 70_000 & 0xffff);
  assert.deepEqual(queue.pop(), { kind: 'empty' });
});

test('QueueReady checks refuse bad sizes, misaligned rings and rings outside RAM', () => {
  const memory = GuestMemory.allocate(RAM);
  const q = new Virtqueue(memory, 3, 256);
  const cases: [Partial<Pick<Virtqueue, 'size' | 'descTable' | 'availRing' | 'usedRing'>>, VirtqueueErrorKind][] = [
    [{ size: 0 }, 'invalid-size'],
    [{ size: 100 }, 'invalid-size'],
    [{ size: 512 }, 'invalid-size'],
    [{ size: 0x1_0001 }, 'invalid-size'],
    [{ descTable: 0x1008 }, 'misaligned-ring'],
    [{ availRing: 0x3001 }, 'misaligned-ring'],
    [{ usedRing: 0x4002 }, 'misaligned-ring'],
    [{ descTable: RAM - 16 }, 'ring-out-of-range'],
    [{ usedRing: RAM - 8 }, 'ring-out-of-range'],
    [{ availRing: Infinity }, 'ring-out-of-range'],
    [{ usedRing: 2 ** 40 }, 'ring-out-of-range'],
  ];
  for (const [patch, kind] of cases) {
    q.reset();
    Object.assign(q, { size: 256, descTable: 0x1000, availRing: 0x3000, usedRing: 0x4000 }, patch);
    assert.equal(q.enable()?.kind, kind, JSON.stringify(patch));
    assert.equal(q.ready, false);
  }
  q.reset();
  Object.assign(q, { size: 128, descTable: 0x1000, availRing: 0x3000, usedRing: 0x4000 });
  assert.equal(q.enable(), null);
  assert.equal(q.ready, true);
  assert.throws(() => new Virtqueue(memory, 0, 100), RangeError);
  assert.throws(() => new Virtqueue(memory, 0, 65536), RangeError);
});

test('a descriptor loop is caught after queue-size descriptors', () => {
  const { ring, queue } = setup();
  ring.writeDesc(0, BUF, 16, VIRTQ_DESC_F_NEXT, 1);
  ring.writeDesc(1, BUF, 16, VIRTQ_DESC_F_NEXT, 0);
  ring.putAvail(0);
  ring.publish();
  expectError(popSafely(queue), 'descriptor-loop');
  // A self-loop too.
  ring.writeDesc(2, BUF, 16, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 2);
  ring.putAvail(2);
  ring.publish();
  expectError(queue.pop(), 'descriptor-loop');
});

test('a chain may use every descriptor once, but not one more', () => {
  const { ring, queue } = setup(8, 8);
  const buffers = Array.from({ length: 8 }, (_, i) => ({ addr: BUF + 16 * i, len: 16, writable: i >= 4 }));
  ring.addChain(buffers);
  const chain = expectChain(queue.pop());
  assert.equal(chain.readable.length + chain.writable.length, 8);
});

test('descriptor indices at or beyond the queue size are refused', () => {
  const { ring, queue } = setup();
  ring.writeDesc(0, BUF, 16, VIRTQ_DESC_F_NEXT, 8);
  ring.putAvail(0);
  ring.publish();
  expectError(queue.pop(), 'next-out-of-range');
  assert.equal(brokenKind(queue), undefined, 'a bad chain does not break the ring');

  ring.putAvail(0xffff);
  ring.publish();
  expectError(queue.pop(), 'head-out-of-range');
  assert.equal(brokenKind(queue), 'head-out-of-range', 'a bad head breaks the ring');
  expectError(queue.pop(), 'head-out-of-range');
});

test('INDIRECT descriptors are refused (the feature is never offered)', () => {
  const { ring, queue } = setup();
  ring.writeDesc(0, BUF, 64, VIRTQ_DESC_F_INDIRECT, 0);
  ring.putAvail(0);
  ring.publish();
  expectError(queue.pop(), 'indirect-descriptor');
});

test('a device-readable descriptor after a writable one is refused', () => {
  const { ring, queue } = setup();
  ring.addChain([
    { addr: BUF, len: 16, writable: true },
    { addr: BUF + 16, len: 16, writable: false },
  ]);
  expectError(queue.pop(), 'readable-after-writable');
});

test('buffers outside RAM, near 2^64 or overflowing are refused', () => {
  const hostile: [number | bigint, number][] = [
    [RAM, 1],
    [RAM - 1, 2],
    [0, 0xffff_ffff],
    [0xffff_ffff_ffff_fff0n, 0x20], // wraps around 2^64 in 64-bit arithmetic
    [0xffff_ffff_ffff_ffffn, 1],
    [2n ** 53n, 0],
    [2n ** 53n - 1n, 2],
  ];
  for (const [addr, len] of hostile) {
    const { ring, queue, memory } = setup();
    ring.writeDesc(0, addr, len, VIRTQ_DESC_F_WRITE, 0);
    ring.putAvail(0);
    ring.publish();
    const before = snapshot(memory);
    expectError(popSafely(queue), 'buffer-out-of-range');
    assertChangedOnlyIn(memory, before, []);
  }
  // The last byte of RAM is fine; a zero-length buffer at the very end too.
  const { ring, queue } = setup();
  ring.addChain([
    { addr: RAM - 1, len: 1, writable: false },
    { addr: RAM, len: 0, writable: true },
  ]);
  expectChain(queue.pop());
});

test('the total length of a chain is bounded even when descriptors overlap', () => {
  const { ring, queue } = setup(16, 16, { maxChainBytes: 1 << 20 });
  ring.addChain(Array.from({ length: 16 }, () => ({ addr: 0, len: 0x1_0000, writable: true })));
  expectChain(queue.pop()); // exactly 1 MiB
  ring.addChain(
    Array.from({ length: 16 }, (_, i) => ({ addr: 0, len: i === 0 ? 0x1_0001 : 0x1_0000, writable: true })),
  );
  expectError(queue.pop(), 'chain-too-large');
});

test('avail.idx moving more than the queue size past our index breaks the queue', () => {
  const { ring, queue } = setup(8, 8);
  ring.addChain([{ addr: BUF, len: 1, writable: true }]);
  expectChain(queue.pop());
  ring.publish(1 + 9);
  expectError(queue.pop(), 'avail-index-jump');
  assert.equal(queue.broken?.kind, 'avail-index-jump');
  assert.equal(queue.pushUsed(0, 0)?.kind, 'avail-index-jump', 'a broken queue returns nothing');
  // Going backwards is a jump of nearly 2^16.
  const second = setup(8, 8);
  second.ring.publish(0xffff);
  expectError(second.queue.pop(), 'avail-index-jump');
});

test('a full ring (exactly size entries outstanding) is not a jump', () => {
  const { ring, queue } = setup(4, 4);
  for (let i = 0; i < 4; i++) ring.addChain([{ addr: BUF + i, len: 1, writable: true }]);
  for (let i = 0; i < 4; i++) expectChain(queue.pop());
  assert.deepEqual(queue.pop(), { kind: 'empty' });
});

test('a queue that is not ready yields an error, and reset returns to power-on', () => {
  const { queue } = setup();
  queue.disable();
  expectError(queue.pop(), 'not-ready');
  queue.reset();
  assert.equal(queue.size, 16);
  assert.equal(queue.descTable, 0);
  assert.equal(queue.ready, false);
  assert.equal(queue.broken, null);
});

test('segment helpers gather and scatter across descriptor boundaries', () => {
  const memory = GuestMemory.allocate(0x1000);
  const segs = [
    { addr: 0x100, len: 3, writable: true },
    { addr: 0x200, len: 0, writable: true },
    { addr: 0x300, len: 5, writable: true },
  ];
  writeSegments(memory, segs, 1, Uint8Array.of(1, 2, 3, 4, 5, 6));
  assert.deepEqual([...memory.read(0x100, 3)], [0, 1, 2]);
  assert.deepEqual([...memory.read(0x300, 5)], [3, 4, 5, 6, 0]);
  const out = new Uint8Array(4);
  readSegments(memory, segs, 2, out);
  assert.deepEqual([...out], [2, 3, 4, 5]);
  const views = segmentViews(memory, segs, 0, 8);
  assert.deepEqual(
    views.map((v) => v.length),
    [3, 5],
  );
  views[1]![4] = 9; // views are live guest memory
  assert.equal(memory.readU8(0x304), 9);
  assert.throws(() => segmentViews(memory, segs, 4, 5), RangeError);
});
