/**
 * Test support for the virtio unit tests (not a test file itself): a fake
 * interrupt line, and a guest-side driver that programs a virtio-mmio
 * transport through its BusDevice interface and builds split rings in guest
 * memory the way Linux's virtio_mmio.c / virtio_ring.c do.
 *
 * Every bus access asserts that the VMM side did not throw.
 */
import assert from 'node:assert/strict';
import type { BusDevice, IrqLine } from '../../vmm/devices/bus.js';
import type { GuestMemory } from '../../vmm/memory/guest-memory.js';
import {
  MMIO_CONFIG,
  MMIO_DEVICE_FEATURES,
  MMIO_DEVICE_FEATURES_SEL,
  MMIO_DRIVER_FEATURES,
  MMIO_DRIVER_FEATURES_SEL,
  MMIO_INTERRUPT_ACK,
  MMIO_INTERRUPT_STATUS,
  MMIO_QUEUE_DESC_HIGH,
  MMIO_QUEUE_DESC_LOW,
  MMIO_QUEUE_DEVICE_HIGH,
  MMIO_QUEUE_DEVICE_LOW,
  MMIO_QUEUE_DRIVER_HIGH,
  MMIO_QUEUE_DRIVER_LOW,
  MMIO_QUEUE_NOTIFY,
  MMIO_QUEUE_NUM,
  MMIO_QUEUE_NUM_MAX,
  MMIO_QUEUE_READY,
  MMIO_QUEUE_SEL,
  MMIO_STATUS,
  STATUS_ACKNOWLEDGE,
  STATUS_DRIVER,
  STATUS_DRIVER_OK,
  STATUS_FEATURES_OK,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
} from '../../vmm/devices/virtio/constants.js';

export class FakeIrq implements IrqLine {
  level = false;
  /** Every setLevel call, in order. */
  readonly history: boolean[] = [];
  pulses = 0;
  setLevel(level: boolean): void {
    this.level = level;
    this.history.push(level);
  }
  pulse(): void {
    this.pulses++;
  }
}

export function read32(dev: BusDevice, offset: number): number {
  const data = new Uint8Array(4);
  assert.doesNotThrow(() => dev.read(offset, data));
  return new DataView(data.buffer).getUint32(0, true);
}

export function write32(dev: BusDevice, offset: number, value: number): void {
  const data = new Uint8Array(4);
  new DataView(data.buffer).setUint32(0, value >>> 0, true);
  assert.doesNotThrow(() => dev.write(offset, data));
}

/** Read `size` bytes (1, 2, 4 or 8) at `offset` as an unsigned bigint. */
export function readN(dev: BusDevice, offset: number, size: number): bigint {
  const data = new Uint8Array(size);
  assert.doesNotThrow(() => dev.read(offset, data));
  let v = 0n;
  for (let i = size - 1; i >= 0; i--) v = (v << 8n) | BigInt(data[i]!);
  return v;
}

export function writeN(dev: BusDevice, offset: number, size: number, value: number): void {
  const data = new Uint8Array(size);
  for (let i = 0; i < size; i++) data[i] = Math.floor(value / 2 ** (8 * i)) & 0xff;
  assert.doesNotThrow(() => dev.write(offset, data));
}

/** A 64-bit config field read the Linux way: two 32-bit reads. */
export function readConfig64(dev: BusDevice, offset: number): bigint {
  const low = BigInt(read32(dev, MMIO_CONFIG + offset));
  const high = BigInt(read32(dev, MMIO_CONFIG + offset + 4));
  return (high << 32n) | low;
}

export interface GuestBuffer {
  addr: number;
  len: number;
  writable: boolean;
}

/**
 * The driver's view of one split ring laid out at `base`: descriptor table,
 * then the avail ring, then the used ring (4-byte aligned).
 */
export class GuestRing {
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  private nextDesc = 0;
  private availIdx = 0;

  constructor(
    readonly memory: GuestMemory,
    readonly base: number,
    readonly size: number,
  ) {
    this.desc = base;
    this.avail = base + 16 * size;
    this.used = (this.avail + 6 + 2 * size + 3) & ~3;
  }

  /** Bytes the ring occupies (including the EVENT_IDX trailers). */
  get byteLength(): number {
    return this.used + 6 + 8 * this.size - this.base;
  }

  writeDesc(index: number, addr: number | bigint, len: number, flags: number, next: number): void {
    const at = this.desc + 16 * index;
    this.memory.writeU64(at, BigInt(addr));
    this.memory.writeU32(at + 8, len >>> 0);
    this.memory.writeU16(at + 12, flags);
    this.memory.writeU16(at + 14, next);
  }

  /** Place `head` in the next avail slot without publishing it. */
  putAvail(head: number): void {
    this.memory.writeU16(this.avail + 4 + 2 * (this.availIdx % this.size), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
  }

  /** Write avail.idx (normally our own count; tests may lie). */
  publish(idx = this.availIdx): void {
    this.memory.writeU16(this.avail + 2, idx);
  }

  /** Build a chain from free descriptors (round-robin), make it available, return its head. */
  addChain(buffers: readonly GuestBuffer[]): number {
    assert.ok(buffers.length > 0 && buffers.length <= this.size);
    const indices = buffers.map((_, i) => (this.nextDesc + i) % this.size);
    this.nextDesc = (this.nextDesc + buffers.length) % this.size;
    buffers.forEach((b, i) => {
      const last = i === buffers.length - 1;
      const flags = (b.writable ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT);
      this.writeDesc(indices[i]!, b.addr, b.len, flags, last ? 0 : indices[i + 1]!);
    });
    const head = indices[0]!;
    this.putAvail(head);
    this.publish();
    return head;
  }

  get usedIdx(): number {
    return this.memory.readU16(this.used + 2);
  }

  usedElem(n: number): { id: number; len: number } {
    const at = this.used + 4 + 8 * (n % this.size);
    return { id: this.memory.readU32(at), len: this.memory.readU32(at + 4) };
  }
}

/** A virtio-mmio driver, following the initialisation sequence of spec 3.1.1. */
export class GuestDriver {
  readonly rings = new Map<number, GuestRing>();

  constructor(
    readonly dev: BusDevice,
    readonly memory: GuestMemory,
  ) {}

  read(offset: number): number {
    return read32(this.dev, offset);
  }
  write(offset: number, value: number): void {
    write32(this.dev, offset, value);
  }

  get status(): number {
    return this.read(MMIO_STATUS);
  }

  deviceFeatures(): bigint {
    this.write(MMIO_DEVICE_FEATURES_SEL, 1);
    const high = BigInt(this.read(MMIO_DEVICE_FEATURES));
    this.write(MMIO_DEVICE_FEATURES_SEL, 0);
    return (high << 32n) | BigInt(this.read(MMIO_DEVICE_FEATURES));
  }

  /** ACKNOWLEDGE, DRIVER, accept `accept(offered)`, FEATURES_OK. Returns whether FEATURES_OK stuck. */
  negotiate(accept: (offered: bigint) => bigint = (offered) => offered): boolean {
    this.write(MMIO_STATUS, 0);
    this.write(MMIO_STATUS, STATUS_ACKNOWLEDGE);
    this.write(MMIO_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER);
    const features = accept(this.deviceFeatures());
    this.write(MMIO_DRIVER_FEATURES_SEL, 1);
    this.write(MMIO_DRIVER_FEATURES, Number(features >> 32n) >>> 0);
    this.write(MMIO_DRIVER_FEATURES_SEL, 0);
    this.write(MMIO_DRIVER_FEATURES, Number(features & 0xffff_ffffn) >>> 0);
    this.write(MMIO_STATUS, this.status | STATUS_FEATURES_OK);
    return (this.status & STATUS_FEATURES_OK) !== 0;
  }

  /** Program queue `index` with a ring at `base`; returns the ring (QueueReady may still be refused). */
  setupQueue(index: number, base: number, size?: number): GuestRing {
    this.write(MMIO_QUEUE_SEL, index);
    assert.equal(this.read(MMIO_QUEUE_READY), 0, 'queue must not be live already');
    const max = this.read(MMIO_QUEUE_NUM_MAX);
    const ring = new GuestRing(this.memory, base, size ?? max);
    this.write(MMIO_QUEUE_NUM, ring.size);
    this.write(MMIO_QUEUE_DESC_LOW, ring.desc);
    this.write(MMIO_QUEUE_DESC_HIGH, 0);
    this.write(MMIO_QUEUE_DRIVER_LOW, ring.avail);
    this.write(MMIO_QUEUE_DRIVER_HIGH, 0);
    this.write(MMIO_QUEUE_DEVICE_LOW, ring.used);
    this.write(MMIO_QUEUE_DEVICE_HIGH, 0);
    this.write(MMIO_QUEUE_READY, 1);
    this.rings.set(index, ring);
    return ring;
  }

  driverOk(): void {
    this.write(MMIO_STATUS, this.status | STATUS_DRIVER_OK);
  }

  /** The full bring-up: negotiate all offered features, set up queues, DRIVER_OK. */
  bringUp(queueBases: readonly number[]): GuestRing[] {
    assert.ok(this.negotiate(), 'FEATURES_OK refused');
    const rings = queueBases.map((base, i) => this.setupQueue(i, base));
    this.driverOk();
    assert.ok(this.status & STATUS_DRIVER_OK, 'DRIVER_OK refused');
    return rings;
  }

  notify(queue: number): void {
    this.write(MMIO_QUEUE_NOTIFY, queue);
  }

  /** The interrupt handler: read InterruptStatus and acknowledge it. */
  ackInterrupt(): number {
    const isr = this.read(MMIO_INTERRUPT_STATUS);
    this.write(MMIO_INTERRUPT_ACK, isr);
    return isr;
  }
}

/** A copy of all guest RAM, to prove which bytes a device touched. */
export function snapshot(memory: GuestMemory): Uint8Array {
  return memory.read(0, memory.size);
}

/**
 * Assert that every byte that differs from `before` lies in one of the
 * `allowed` [start, start+length) ranges.
 */
export function assertChangedOnlyIn(
  memory: GuestMemory,
  before: Uint8Array,
  allowed: readonly (readonly [number, number])[],
): void {
  const now = memory.slice(0, memory.size);
  const stray: number[] = [];
  for (let i = 0; i < now.length; i++) {
    if (now[i] === before[i]) continue;
    if (allowed.some(([start, length]) => i >= start && i < start + length)) continue;
    stray.push(i);
    if (stray.length >= 8) break;
  }
  assert.deepEqual(
    stray.map((a) => `0x${a.toString(16)}`),
    [],
    'guest memory changed outside the intended buffers',
  );
}
