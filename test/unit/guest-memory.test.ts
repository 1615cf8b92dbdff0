import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory, GuestMemoryError } from '../../vmm/memory/guest-memory.js';

test('guest memory reads and writes little-endian values inside RAM', () => {
  const mem = GuestMemory.allocate(4096);
  mem.writeU32(0x10, 0xdeadbeef);
  assert.equal(mem.readU8(0x10), 0xef);
  assert.equal(mem.readU32(0x10), 0xdeadbeef);
  mem.writeU64(0x20, 0x1_2345_6789n);
  assert.equal(mem.readU64(0x20), 0x1_2345_6789);
});

test('guest memory refuses every access that leaves RAM', () => {
  const mem = GuestMemory.allocate(4096);
  assert.throws(() => mem.readU32(4094), GuestMemoryError);
  assert.throws(() => mem.slice(4000, 97), GuestMemoryError);
  assert.throws(() => mem.slice(-1, 1), GuestMemoryError);
  assert.throws(() => mem.slice(0, Number.MAX_SAFE_INTEGER), GuestMemoryError);
  assert.throws(() => mem.slice(Infinity, 1), GuestMemoryError);
  assert.throws(() => mem.write(4095, new Uint8Array(2)), GuestMemoryError);
  assert.equal(mem.slice(4096, 0).length, 0);
});

test('a 64-bit guest address beyond 2^53 reads as Infinity so bounds checks fail', () => {
  const mem = GuestMemory.allocate(64);
  mem.writeU64(0, 0xffff_ffff_ffff_fff0n);
  assert.equal(mem.readU64(0), Infinity);
  assert.equal(mem.contains(mem.readU64(0), 1), false);
});
