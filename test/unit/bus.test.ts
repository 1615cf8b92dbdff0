import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Bus, type BusDevice } from '../../vmm/devices/bus.js';

class Recorder implements BusDevice {
  readonly writes: [number, number[]][] = [];
  read(offset: number, data: Uint8Array): void {
    data.fill(offset);
  }
  write(offset: number, data: Uint8Array): void {
    this.writes.push([offset, [...data]]);
  }
}

test('bus: accesses reach the device at their offset inside its window', () => {
  const bus = new Bus('pio');
  const dev = new Recorder();
  bus.insert('dev', 0x3f8, 8, dev);
  const data = new Uint8Array(1);
  assert.equal(bus.read(0x3fd, data), true);
  assert.equal(data[0], 5);
  assert.equal(bus.write(0x3f8, Uint8Array.of(0x41)), true);
  assert.deepEqual(dev.writes, [[0, [0x41]]]);
});

test('bus: a guest access that hits no device, or straddles a window edge, reads all-ones and writes nowhere', () => {
  const bus = new Bus('mmio');
  const dev = new Recorder();
  bus.insert('dev', 0x1000, 0x200, dev);
  const data = new Uint8Array(4);
  assert.equal(bus.read(0x5000, data), false);
  assert.deepEqual([...data], [0xff, 0xff, 0xff, 0xff]);
  assert.equal(bus.read(0x11fe, data), false, 'straddles the end of the window');
  assert.equal(bus.write(0x0ffe, Uint8Array.of(1, 2, 3, 4)), false, 'straddles the start');
  assert.equal(bus.write(Number.MAX_SAFE_INTEGER, Uint8Array.of(1)), false);
  assert.deepEqual(dev.writes, []);
});

test('bus: overlapping windows are refused when the VM is built', () => {
  const bus = new Bus('mmio');
  bus.insert('a', 0x1000, 0x200, new Recorder());
  assert.throws(() => bus.insert('b', 0x11ff, 0x10, new Recorder()), /overlaps a/);
  assert.throws(() => bus.insert('c', 0x2000, 0, new Recorder()), /empty range/);
  bus.insert('d', 0x1200, 0x200, new Recorder());
});
