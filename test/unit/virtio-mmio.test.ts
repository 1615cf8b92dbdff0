import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory } from '../../vmm/memory/guest-memory.js';
import { Bus } from '../../vmm/devices/bus.js';
import { drainQueue, readConfigBytes } from '../../vmm/devices/virtio/device.js';
import type { VirtioActivation, VirtioDevice } from '../../vmm/devices/virtio/device.js';
import { VirtioMmioTransport } from '../../vmm/devices/virtio/mmio-transport.js';
import type { VirtioTransportEvent } from '../../vmm/devices/virtio/mmio-transport.js';
import {
  BELLJAR_VENDOR_ID,
  MMIO_CONFIG,
  MMIO_CONFIG_GENERATION,
  MMIO_DEVICE_FEATURES,
  MMIO_DEVICE_FEATURES_SEL,
  MMIO_DEVICE_ID,
  MMIO_DRIVER_FEATURES,
  MMIO_DRIVER_FEATURES_SEL,
  MMIO_INTERRUPT_STATUS,
  MMIO_MAGIC_VALUE,
  MMIO_QUEUE_DESC_LOW,
  MMIO_QUEUE_NUM,
  MMIO_QUEUE_NUM_MAX,
  MMIO_QUEUE_READY,
  MMIO_QUEUE_SEL,
  MMIO_SHM_LEN_HIGH,
  MMIO_SHM_LEN_LOW,
  MMIO_SHM_SEL,
  MMIO_STATUS,
  MMIO_VENDOR_ID,
  MMIO_VERSION,
  STATUS_ACKNOWLEDGE,
  STATUS_DEVICE_NEEDS_RESET,
  STATUS_DRIVER,
  STATUS_DRIVER_OK,
  STATUS_FAILED,
  STATUS_FEATURES_OK,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
  VIRTIO_RING_F_INDIRECT_DESC,
  VIRTQ_DESC_F_NEXT,
} from '../../vmm/devices/virtio/constants.js';
import { FakeIrq, GuestDriver, readN, write32, writeN } from './virtio-harness.js';

const RAM = 0x10_0000;

/** A device that echoes: each chain is answered with used length = its writable bytes. */
class EchoDevice implements VirtioDevice {
  readonly deviceType = 42;
  readonly queueMaxSizes = [16, 8];
  readonly config = Uint8Array.from({ length: 12 }, (_, i) => 0xa0 + i);
  activations: VirtioActivation[] = [];
  processed: number[] = [];
  resets = 0;
  configWrites: [number, number[]][] = [];
  throwOnProcess = false;

  constructor(readonly features: bigint = (1n << 0n) | (1n << 5n) | (1n << 50n)) {}

  readConfig(offset: number, data: Uint8Array): void {
    readConfigBytes(this.config, offset, data);
  }
  writeConfig(offset: number, data: Uint8Array): void {
    this.configWrites.push([offset, [...data]]);
  }
  activate(ctx: VirtioActivation): void {
    this.activations.push(ctx);
  }
  processQueue(index: number): void {
    this.processed.push(index);
    if (this.throwOnProcess) throw new Error('device bug');
    const ctx = this.activations.at(-1)!;
    const queue = ctx.queues[index]!;
    drainQueue(queue, index, ctx.host, (chain) => chain.writableBytes);
  }
  reset(): void {
    this.resets++;
  }
}

function setup(device = new EchoDevice()) {
  const memory = GuestMemory.allocate(RAM);
  const irq = new FakeIrq();
  const events: VirtioTransportEvent[] = [];
  const transport = new VirtioMmioTransport(device, memory, irq, { onEvent: (e) => events.push(e) });
  const driver = new GuestDriver(transport, memory);
  return { memory, irq, events, transport, driver, device };
}

test('identification registers: magic "virt", version 2, device and vendor ids', () => {
  const { driver } = setup();
  assert.equal(driver.read(MMIO_MAGIC_VALUE), 0x74726976);
  assert.equal(driver.read(MMIO_VERSION), 2);
  assert.equal(driver.read(MMIO_DEVICE_ID), 42);
  assert.equal(driver.read(MMIO_VENDOR_ID), BELLJAR_VENDOR_ID);
  assert.equal(driver.read(MMIO_STATUS), 0);
});

test('a transport sits on a Bus at its base and answers there', () => {
  const { transport } = setup();
  const bus = new Bus('mmio');
  bus.insert('virtio-echo', 0xd000_0000, VirtioMmioTransport.WINDOW_SIZE, transport);
  const data = new Uint8Array(4);
  assert.equal(bus.read(0xd000_0000 + MMIO_MAGIC_VALUE, data), true);
  assert.deepEqual([...data], [0x76, 0x69, 0x72, 0x74]); // "virt"
  assert.equal(bus.read(0xd000_0000 + MMIO_CONFIG + 2, data.subarray(0, 2)), true);
  assert.deepEqual([...data.subarray(0, 2)], [0xa2, 0xa3]);
});

test('device features always include VERSION_1 and never ring features the queue lacks', () => {
  const device = new EchoDevice((1n << 3n) | VIRTIO_RING_F_INDIRECT_DESC | VIRTIO_RING_F_EVENT_IDX);
  const { driver } = setup(device);
  assert.equal(driver.deviceFeatures(), (1n << 3n) | VIRTIO_F_VERSION_1);
  driver.write(MMIO_DEVICE_FEATURES_SEL, 7);
  assert.equal(driver.read(MMIO_DEVICE_FEATURES), 0);
});

test('FEATURES_OK sticks only for a subset of the offered features that includes VERSION_1', () => {
  const { driver, transport } = setup();
  assert.equal(
    driver.negotiate((offered) => offered & ~VIRTIO_F_VERSION_1),
    false,
    'VERSION_1 must be accepted',
  );
  assert.equal(
    driver.negotiate((offered) => offered | (1n << 7n)),
    false,
    'unoffered bit 7',
  );
  assert.equal(
    driver.negotiate(() => VIRTIO_RING_F_INDIRECT_DESC | VIRTIO_F_VERSION_1),
    false,
    'indirect is not offered',
  );
  assert.equal(
    driver.negotiate(() => (1n << 5n) | VIRTIO_F_VERSION_1),
    true,
  );
  assert.equal(transport.negotiatedFeatures, (1n << 5n) | VIRTIO_F_VERSION_1);
  // Once FEATURES_OK is set the driver may not change its mind.
  driver.write(MMIO_DRIVER_FEATURES_SEL, 0);
  driver.write(MMIO_DRIVER_FEATURES, 0xffff_ffff);
  assert.equal(transport.negotiatedFeatures, (1n << 5n) | VIRTIO_F_VERSION_1);
});

test('status transitions: no skipping steps, no clearing bits, DRIVER_OK needs FEATURES_OK', () => {
  const { driver, device, transport } = setup();
  driver.write(MMIO_STATUS, STATUS_DRIVER);
  assert.equal(driver.status, 0, 'DRIVER before ACKNOWLEDGE');
  driver.write(MMIO_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
  assert.equal(driver.status, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
  driver.write(MMIO_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK);
  assert.equal(driver.status, STATUS_ACKNOWLEDGE | STATUS_DRIVER, 'DRIVER_OK without FEATURES_OK');
  assert.equal(device.activations.length, 0);
  driver.write(MMIO_STATUS, STATUS_ACKNOWLEDGE);
  assert.equal(driver.status, STATUS_ACKNOWLEDGE | STATUS_DRIVER, 'bits are cleared only by reset');
  driver.write(MMIO_STATUS, 0x1_0000 | STATUS_ACKNOWLEDGE | STATUS_DRIVER);
  assert.equal(driver.status, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
  driver.write(MMIO_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FAILED);
  assert.equal(driver.status & STATUS_FAILED, STATUS_FAILED);
  assert.equal(transport.activated, false);
});

test('queue set-up: QueueNumMax per queue, 0 for absent queues, QueueReady reads back', () => {
  const { driver, transport } = setup();
  driver.negotiate();
  driver.write(MMIO_QUEUE_SEL, 0);
  assert.equal(driver.read(MMIO_QUEUE_NUM_MAX), 16);
  driver.write(MMIO_QUEUE_SEL, 1);
  assert.equal(driver.read(MMIO_QUEUE_NUM_MAX), 8);
  driver.write(MMIO_QUEUE_SEL, 2);
  assert.equal(driver.read(MMIO_QUEUE_NUM_MAX), 0);
  driver.write(MMIO_QUEUE_READY, 1);
  assert.equal(driver.read(MMIO_QUEUE_READY), 0);
  driver.setupQueue(0, 0x1000);
  driver.write(MMIO_QUEUE_SEL, 0);
  assert.equal(driver.read(MMIO_QUEUE_READY), 1);
  assert.equal(transport.queue(0)?.size, 16);
  // Changing a live queue is ignored.
  driver.write(MMIO_QUEUE_NUM, 4);
  driver.write(MMIO_QUEUE_DESC_LOW, 0x9000);
  assert.equal(transport.queue(0)?.size, 16);
  assert.equal(transport.queue(0)?.descTable, 0x1000);
  // QueueReady=0 takes it down again (what Linux does on teardown).
  driver.write(MMIO_QUEUE_READY, 0);
  assert.equal(driver.read(MMIO_QUEUE_READY), 0);
});

test('QueueReady is refused for a non-power-of-two size, a size above max, or rings outside RAM', () => {
  const { driver, events } = setup();
  driver.negotiate();
  for (const size of [12, 32, 0]) {
    driver.setupQueue(0, 0x1000, size);
    assert.equal(driver.read(MMIO_QUEUE_READY), 0, `size ${size}`);
  }
  driver.write(MMIO_QUEUE_NUM, 16);
  driver.write(MMIO_QUEUE_DESC_LOW, RAM - 0x80);
  driver.write(MMIO_QUEUE_READY, 1);
  assert.equal(driver.read(MMIO_QUEUE_READY), 0, 'descriptor table past the end of RAM');
  driver.write(MMIO_QUEUE_DESC_LOW, 0x1000);
  driver.write(MMIO_QUEUE_DESC_LOW + 4, 0x10); // DescHigh: 64 GiB
  driver.write(MMIO_QUEUE_READY, 1);
  assert.equal(driver.read(MMIO_QUEUE_READY), 0, 'descriptor table above RAM');
  assert.ok(events.filter((e) => e.kind === 'refused' && e.message.includes('QueueReady')).length >= 5);
});

test('full bring-up, notify, used ring, level interrupt and acknowledge', () => {
  const { driver, irq, device, transport, memory } = setup();
  const [ring] = driver.bringUp([0x1000, 0x2000]);
  assert.equal(transport.activated, true);
  assert.equal(device.activations.length, 1);
  assert.equal(device.activations[0]!.memory, memory);
  assert.equal(device.activations[0]!.features, (1n << 0n) | (1n << 5n) | (1n << 50n) | VIRTIO_F_VERSION_1);
  const head = ring!.addChain([
    { addr: 0x8000, len: 10, writable: false },
    { addr: 0x9000, len: 100, writable: true },
  ]);
  assert.equal(irq.level, false);
  driver.notify(0);
  assert.deepEqual(device.processed, [0]);
  assert.equal(ring!.usedIdx, 1);
  assert.deepEqual(ring!.usedElem(0), { id: head, len: 100 });
  assert.equal(irq.level, true);
  assert.equal(driver.read(MMIO_INTERRUPT_STATUS), 1);
  assert.equal(driver.ackInterrupt(), 1);
  assert.equal(irq.level, false);
  assert.deepEqual(irq.history, [true, false]);
});

test('notifications before DRIVER_OK are ignored; buffers queued then are picked up at DRIVER_OK', () => {
  const { driver, device, irq } = setup();
  driver.negotiate();
  const ring = driver.setupQueue(0, 0x1000);
  ring.addChain([{ addr: 0x8000, len: 8, writable: true }]);
  driver.notify(0);
  assert.deepEqual(device.processed, []);
  assert.equal(ring.usedIdx, 0);
  assert.equal(irq.level, false);
  driver.driverOk();
  assert.deepEqual(device.processed, [0]);
  assert.equal(ring.usedIdx, 1);
  assert.equal(irq.level, true);
});

test('notifying an absent or unready queue is ignored; the VMM can notify from outside', () => {
  const { driver, device, transport } = setup();
  const [ring] = driver.bringUp([0x1000]);
  driver.notify(1); // queue 1 was never set up
  driver.notify(0xffff_ffff);
  assert.deepEqual(device.processed, []);
  ring!.addChain([{ addr: 0x8000, len: 8, writable: true }]);
  assert.equal(transport.notifyQueue(0), true);
  assert.deepEqual(device.processed, [0]);
  assert.equal(transport.notifyQueue(5), false);
});

test('only aligned 32-bit register accesses count; others read 0 and are ignored', () => {
  const { transport, driver } = setup();
  assert.equal(readN(transport, MMIO_MAGIC_VALUE, 1), 0n);
  assert.equal(readN(transport, MMIO_MAGIC_VALUE, 2), 0n);
  assert.equal(readN(transport, MMIO_MAGIC_VALUE, 8), 0n);
  assert.equal(readN(transport, MMIO_MAGIC_VALUE + 1, 4), 0n);
  assert.equal(readN(transport, 0x0fe, 4), 0n, 'straddles the config boundary');
  writeN(transport, MMIO_STATUS, 1, STATUS_ACKNOWLEDGE);
  writeN(transport, MMIO_STATUS, 2, STATUS_ACKNOWLEDGE);
  writeN(transport, MMIO_STATUS, 8, STATUS_ACKNOWLEDGE);
  assert.equal(driver.status, 0);
  write32(transport, -4, 1);
  write32(transport, 0x400, 1);
  assert.equal(readN(transport, 0x400, 4), 0n);
  assert.equal(driver.read(0x0f0), 0, 'unknown register');
});

test('config space is forwarded at 0x100 with any access width', () => {
  const { transport, device } = setup();
  assert.equal(readN(transport, MMIO_CONFIG, 1), 0xa0n);
  assert.equal(readN(transport, MMIO_CONFIG + 1, 2), 0xa2a1n);
  assert.equal(readN(transport, MMIO_CONFIG + 4, 4), 0xa7a6a5a4n);
  assert.equal(readN(transport, MMIO_CONFIG + 8, 8), 0x00000000abaaa9a8n, 'past the end reads 0');
  assert.equal(readN(transport, MMIO_CONFIG + 0xfc, 4), 0n);
  writeN(transport, MMIO_CONFIG + 3, 1, 0x55);
  assert.deepEqual(device.configWrites, [[3, [0x55]]]);
});

test('a config change bumps ConfigGeneration and raises bit 1 once the driver is up', () => {
  const { transport, driver, irq } = setup();
  const g0 = driver.read(MMIO_CONFIG_GENERATION);
  transport.signalConfigChange();
  assert.equal(driver.read(MMIO_CONFIG_GENERATION), g0 + 1);
  assert.equal(irq.level, false, 'no interrupt before DRIVER_OK');
  driver.bringUp([0x1000]);
  transport.signalConfigChange();
  assert.equal(driver.read(MMIO_INTERRUPT_STATUS), 2);
  assert.equal(irq.level, true);
  driver.ackInterrupt();
  assert.equal(irq.level, false);
});

test('no shared-memory regions: SHM length reads as all ones', () => {
  const { driver } = setup();
  driver.write(MMIO_SHM_SEL, 0);
  assert.equal(driver.read(MMIO_SHM_LEN_LOW), 0xffff_ffff);
  assert.equal(driver.read(MMIO_SHM_LEN_HIGH), 0xffff_ffff);
});

test('reset (status 0) resets device, queues, features and drops the interrupt line', () => {
  const { driver, device, irq, transport } = setup();
  const [ring] = driver.bringUp([0x1000]);
  ring!.addChain([{ addr: 0x8000, len: 8, writable: true }]);
  driver.notify(0);
  assert.equal(irq.level, true);
  const staleHost = device.activations[0]!.host;
  const resetsBefore = device.resets;
  driver.write(MMIO_STATUS, 0);
  assert.equal(device.resets, resetsBefore + 1);
  assert.equal(transport.activated, false);
  assert.equal(driver.status, 0);
  assert.equal(irq.level, false);
  assert.equal(driver.read(MMIO_INTERRUPT_STATUS), 0);
  driver.write(MMIO_QUEUE_SEL, 0);
  assert.equal(driver.read(MMIO_QUEUE_READY), 0);
  assert.equal(transport.negotiatedFeatures, 0n);
  // A device that kept its old host object cannot reach the reset transport.
  staleHost.signalUsed(0);
  staleHost.needsReset(new Error('late'));
  assert.equal(irq.level, false);
  assert.equal(driver.status & STATUS_DEVICE_NEEDS_RESET, 0);
  // And the driver can bring it up again.
  driver.bringUp([0x3000]);
  assert.equal(device.activations.length, 2);
  assert.equal(transport.activated, true);
});

test('a device failure sets DEVICE_NEEDS_RESET, raises a config interrupt and stops notifications', () => {
  const { driver, device, irq, transport, events } = setup();
  const [ring] = driver.bringUp([0x1000]);
  device.throwOnProcess = true;
  ring!.addChain([{ addr: 0x8000, len: 8, writable: true }]);
  assert.doesNotThrow(() => driver.notify(0));
  assert.equal(driver.status & STATUS_DEVICE_NEEDS_RESET, STATUS_DEVICE_NEEDS_RESET);
  assert.equal(driver.read(MMIO_INTERRUPT_STATUS), 2);
  assert.equal(irq.level, true);
  assert.equal(transport.activated, false);
  assert.equal(transport.lastError?.message, 'device bug');
  assert.ok(events.some((e) => e.kind === 'needs-reset'));
  driver.notify(0);
  assert.deepEqual(device.processed, [0], 'no more processing until reset');
  // Linux ORs bits into the status it read back; NEEDS_RESET stays ours.
  driver.write(MMIO_STATUS, driver.status | STATUS_FAILED);
  assert.equal(driver.status & STATUS_DEVICE_NEEDS_RESET, STATUS_DEVICE_NEEDS_RESET);
  driver.write(MMIO_STATUS, 0);
  assert.equal(driver.status, 0);
});

test('a malformed chain puts the device into DEVICE_NEEDS_RESET without throwing', () => {
  const { driver, memory, irq } = setup();
  const [ring] = driver.bringUp([0x1000]);
  ring!.writeDesc(0, 0x8000, 8, VIRTQ_DESC_F_NEXT, 0); // loops to itself
  ring!.putAvail(0);
  ring!.publish();
  const before = memory.read(0, RAM);
  assert.doesNotThrow(() => driver.notify(0));
  assert.equal(driver.status & STATUS_DEVICE_NEEDS_RESET, STATUS_DEVICE_NEEDS_RESET);
  assert.equal(irq.level, true);
  assert.deepEqual(memory.read(0, RAM), before, 'nothing written to the guest');
});

test('a device that refuses activation ends in DEVICE_NEEDS_RESET', () => {
  const device = new EchoDevice();
  device.activate = () => {
    throw new Error('queue 0 missing');
  };
  const { driver, transport } = setup(device);
  driver.negotiate();
  driver.driverOk();
  assert.equal(transport.activated, false);
  assert.equal(driver.status & (STATUS_DRIVER_OK | STATUS_DEVICE_NEEDS_RESET | STATUS_FEATURES_OK), 0x4c);
});

test('a throwing event hook does not escape into the VMM', () => {
  const memory = GuestMemory.allocate(RAM);
  const transport = new VirtioMmioTransport(new EchoDevice(), memory, new FakeIrq(), {
    onEvent: () => {
      throw new Error('logger broke');
    },
  });
  assert.doesNotThrow(() => transport.write(MMIO_QUEUE_NUM_MAX, Uint8Array.of(1, 2, 3, 4)));
  assert.doesNotThrow(() => transport.write(MMIO_STATUS, Uint8Array.of(1)));
});

test('random register writes in any order never throw', () => {
  const { transport } = setup();
  let seed = 12345;
  const rand = () => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed;
  };
  for (let i = 0; i < 20_000; i++) {
    const offset = (rand() % 0x220) & ~3;
    const value = rand() % 5 === 0 ? rand() % 16 : rand();
    const data = new Uint8Array(4);
    new DataView(data.buffer).setUint32(0, value, true);
    assert.doesNotThrow(() => transport.write(offset, data));
    assert.doesNotThrow(() => transport.read((rand() % 0x200) & ~3, new Uint8Array(4)));
  }
});
