import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory } from '../../vmm/memory/guest-memory.js';
import { VirtioRng } from '../../vmm/devices/virtio/rng.js';
import type { VirtioRngOptions } from '../../vmm/devices/virtio/rng.js';
import { VirtioMmioTransport } from '../../vmm/devices/virtio/mmio-transport.js';
import {
  MMIO_CONFIG,
  MMIO_DEVICE_ID,
  STATUS_DEVICE_NEEDS_RESET,
  VIRTIO_F_VERSION_1,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from '../../vmm/devices/virtio/constants.js';
import { assertChangedOnlyIn, FakeIrq, GuestDriver, read32, snapshot } from './virtio-harness.js';

const RAM = 0x10_0000;
const RING = 0x1000;
const BUF = 0x4_0000;

function setup(options: VirtioRngOptions = {}) {
  const memory = GuestMemory.allocate(RAM);
  const irq = new FakeIrq();
  const device = new VirtioRng(options);
  const transport = new VirtioMmioTransport(device, memory, irq);
  const driver = new GuestDriver(transport, memory);
  const [ring] = driver.bringUp([RING]);
  return { memory, irq, device, transport, driver, ring: ring! };
}

test('virtio-rng identifies itself, offers only VERSION_1 and has no config', () => {
  const { driver, transport } = setup();
  assert.equal(driver.read(MMIO_DEVICE_ID), 4);
  assert.equal(transport.deviceFeatures, VIRTIO_F_VERSION_1);
  assert.equal(read32(transport, MMIO_CONFIG), 0);
});

test('fills every writable buffer of a chain and nothing else', () => {
  const { memory, ring, driver, irq } = setup();
  const before = snapshot(memory);
  const head = ring.addChain([
    { addr: BUF, len: 64, writable: true },
    { addr: BUF + 0x1000, len: 32, writable: true },
  ]);
  assert.doesNotThrow(() => driver.notify(0));
  assert.deepEqual(ring.usedElem(0), { id: head, len: 96 });
  assert.equal(irq.level, true);
  const filled = [...memory.read(BUF, 64), ...memory.read(BUF + 0x1000, 32)];
  // 96 random bytes are all zero with probability 2^-768.
  assert.ok(filled.some((b) => b !== 0));
  assert.ok(new Set(filled).size > 16);
  assertChangedOnlyIn(memory, before, [
    [BUF, 64],
    [BUF + 0x1000, 32],
    [ring.base, ring.byteLength],
  ]);
});

test('uses the configured fill source and caps each request', () => {
  const { memory, ring, driver } = setup({ maxBytesPerRequest: 100, fill: (into) => into.fill(0x5a) });
  const before = snapshot(memory);
  ring.addChain([
    { addr: BUF, len: 60, writable: true },
    { addr: BUF + 0x100, len: 60, writable: true },
  ]);
  driver.notify(0);
  assert.equal(ring.usedElem(0).len, 100);
  assert.deepEqual([...memory.read(BUF, 60)], new Array(60).fill(0x5a));
  assert.deepEqual([...memory.read(BUF + 0x100, 40)], new Array(40).fill(0x5a));
  assert.deepEqual([...memory.read(BUF + 0x100 + 40, 20)], new Array(20).fill(0), 'beyond the cap stays untouched');
  assertChangedOnlyIn(memory, before, [
    [BUF, 60],
    [BUF + 0x100, 40],
    [ring.base, ring.byteLength],
  ]);
});

test('the default cap is 64 KiB per request', () => {
  const { ring, driver, device } = setup();
  assert.equal(device.maxBytesPerRequest, 65536);
  ring.addChain([{ addr: BUF, len: 0x8_0000, writable: true }]);
  driver.notify(0);
  assert.equal(ring.usedElem(0).len, 65536);
});

test('a chain with device-readable buffers is returned unfilled with used length 0', () => {
  const { memory, ring, driver, device } = setup();
  const before = snapshot(memory);
  const head = ring.addChain([
    { addr: BUF, len: 16, writable: false },
    { addr: BUF + 16, len: 16, writable: true },
  ]);
  assert.doesNotThrow(() => driver.notify(0));
  assert.deepEqual(ring.usedElem(0), { id: head, len: 0 });
  assert.equal(device.badRequests, 1);
  assertChangedOnlyIn(memory, before, [[ring.base, ring.byteLength]]);
  assert.equal(driver.status & STATUS_DEVICE_NEEDS_RESET, 0);
});

test('hostile chains (loop, out-of-RAM, avail jump) stop the device without writing to the guest', () => {
  const scenarios: ((ring: ReturnType<typeof setup>['ring']) => void)[] = [
    (ring) => {
      ring.writeDesc(0, BUF, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
      ring.writeDesc(1, BUF, 16, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 0);
      ring.putAvail(0);
      ring.publish();
    },
    (ring) => {
      ring.writeDesc(0, 0xffff_ffff_ffff_f000n, 0x2000, VIRTQ_DESC_F_WRITE, 0);
      ring.putAvail(0);
      ring.publish();
    },
    (ring) => ring.publish(ring.size + 1),
  ];
  for (const scenario of scenarios) {
    const { memory, ring, driver, irq } = setup();
    scenario(ring);
    const before = snapshot(memory);
    assert.doesNotThrow(() => driver.notify(0));
    assert.equal(driver.status & STATUS_DEVICE_NEEDS_RESET, STATUS_DEVICE_NEEDS_RESET);
    assert.equal(irq.level, true);
    assertChangedOnlyIn(memory, before, []);
  }
});
