/**
 * virtio-mmio transport, version 2 only (virtio 1.2, section 4.2).
 *
 * One instance is one 0x200-byte MMIO window: registers at 0x000–0x0ff and the
 * device's config space at 0x100–0x1ff. The guest reaches it through a `Bus`;
 * the transport turns register accesses into feature negotiation, queue set-up
 * and notifications for a `VirtioDevice`, and drives one level-triggered
 * interrupt line from InterruptStatus.
 *
 * Guest misbehaviour never throws out of `read`/`write`/`notifyQueue`:
 * invalid register accesses are ignored, invalid status transitions are
 * refused, and any device failure sets DEVICE_NEEDS_RESET and stops the
 * device until the driver resets it.
 */
import type { BusDevice, IrqLine } from '../bus.js';
import type { GuestMemory } from '../../memory/guest-memory.js';
import type { VirtioActivation, VirtioDevice, VirtioDeviceHost } from './device.js';
import { Virtqueue } from './queue.js';
import {
  BELLJAR_VENDOR_ID,
  INTERRUPT_CONFIG_CHANGE,
  INTERRUPT_USED_BUFFER,
  MMIO_CONFIG,
  MMIO_CONFIG_GENERATION,
  MMIO_DEVICE_FEATURES,
  MMIO_DEVICE_FEATURES_SEL,
  MMIO_DEVICE_ID,
  MMIO_DRIVER_FEATURES,
  MMIO_DRIVER_FEATURES_SEL,
  MMIO_INTERRUPT_ACK,
  MMIO_INTERRUPT_STATUS,
  MMIO_MAGIC,
  MMIO_MAGIC_VALUE,
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
  MMIO_SHM_BASE_HIGH,
  MMIO_SHM_BASE_LOW,
  MMIO_SHM_LEN_HIGH,
  MMIO_SHM_LEN_LOW,
  MMIO_SHM_SEL,
  MMIO_STATUS,
  MMIO_VENDOR_ID,
  MMIO_VERSION,
  MMIO_VERSION_2,
  MMIO_WINDOW_SIZE,
  STATUS_ACKNOWLEDGE,
  STATUS_DEVICE_NEEDS_RESET,
  STATUS_DRIVER,
  STATUS_DRIVER_OK,
  STATUS_FAILED,
  STATUS_FEATURES_OK,
  VIRTIO_F_VERSION_1,
} from './constants.js';

/**
 * Feature bits 24..49 are reserved for the transport and ring (virtio 1.2,
 * section 6). The only one we implement is VIRTIO_F_VERSION_1; a device cannot
 * offer the others (e.g. INDIRECT_DESC, EVENT_IDX) by accident.
 */
const RESERVED_FEATURES = ((1n << 50n) - 1n) ^ ((1n << 24n) - 1n);
const U64_MASK = (1n << 64n) - 1n;

/** Something the transport refused or a device failure; for logs and tests. */
export interface VirtioTransportEvent {
  readonly kind: 'refused' | 'needs-reset';
  readonly message: string;
  readonly error?: Error;
}

export interface VirtioMmioOptions {
  /** VendorID register. Default BELLJAR_VENDOR_ID ("BJAR"). */
  vendorId?: number;
  /** Called for every refused guest action and device failure (rate-limit in the caller). */
  onEvent?: (event: VirtioTransportEvent) => void;
}

/** Per-queue register state that is not part of the Virtqueue itself. */
interface QueueAddressRegs {
  descLow: number;
  descHigh: number;
  driverLow: number;
  driverHigh: number;
  deviceLow: number;
  deviceHigh: number;
}

const TWO_POW_32 = 0x1_0000_0000;

function address(low: number, high: number): number {
  // ≥ 2^53 cannot be a RAM address; Infinity makes every bounds check fail.
  const value = high * TWO_POW_32 + low;
  return Number.isSafeInteger(value) ? value : Infinity;
}

function u32(data: Uint8Array): number {
  return (data[0]! | (data[1]! << 8) | (data[2]! << 16) | (data[3]! << 24)) >>> 0;
}

function putU32(data: Uint8Array, value: number): void {
  data[0] = value & 0xff;
  data[1] = (value >>> 8) & 0xff;
  data[2] = (value >>> 16) & 0xff;
  data[3] = (value >>> 24) & 0xff;
}

export class VirtioMmioTransport implements BusDevice {
  /** Size of the MMIO window to map on the bus. */
  static readonly WINDOW_SIZE = MMIO_WINDOW_SIZE;

  private readonly queues: Virtqueue[];
  private readonly queueRegs: QueueAddressRegs[];
  private readonly offeredFeatures: bigint;
  private readonly vendorId: number;
  private readonly onEvent: ((event: VirtioTransportEvent) => void) | undefined;

  private deviceStatus = 0;
  private deviceFeaturesSel = 0;
  private driverFeaturesSel = 0;
  private driverFeatures = 0n;
  private queueSel = 0;
  private isr = 0;
  private irqLevel = false;
  private generation = 0;
  private isActive = false;
  /** Bumped on every reset so a device holding an old host object cannot reach us. */
  private epoch = 0;
  private lastFailure: Error | null = null;

  constructor(
    readonly device: VirtioDevice,
    private readonly memory: GuestMemory,
    private readonly irq: IrqLine,
    options: VirtioMmioOptions = {},
  ) {
    const chainOptions = device.maxChainBytes === undefined ? {} : { maxChainBytes: device.maxChainBytes };
    this.queues = device.queueMaxSizes.map((max, i) => new Virtqueue(memory, i, max, chainOptions));
    this.queueRegs = this.queues.map(() => ({
      descLow: 0,
      descHigh: 0,
      driverLow: 0,
      driverHigh: 0,
      deviceLow: 0,
      deviceHigh: 0,
    }));
    this.offeredFeatures = ((device.features & U64_MASK & ~RESERVED_FEATURES) | VIRTIO_F_VERSION_1) & U64_MASK;
    this.vendorId = (options.vendorId ?? BELLJAR_VENDOR_ID) >>> 0;
    this.onEvent = options.onEvent;
  }

  // ---------------------------------------------------------------- state

  /** True between a successful DRIVER_OK activation and the next reset. */
  get activated(): boolean {
    return this.isActive;
  }
  /** The Status register. */
  get status(): number {
    return this.deviceStatus;
  }
  /** The InterruptStatus register. */
  get interruptStatus(): number {
    return this.isr;
  }
  get configGeneration(): number {
    return this.generation;
  }
  /** Features the device offers (always incl. VIRTIO_F_VERSION_1). */
  get deviceFeatures(): bigint {
    return this.offeredFeatures;
  }
  /** Features the driver accepted (valid once FEATURES_OK is set). */
  get negotiatedFeatures(): bigint {
    return this.driverFeatures;
  }
  /** The reason the device was last put into DEVICE_NEEDS_RESET, if any. */
  get lastError(): Error | null {
    return this.lastFailure;
  }
  /** Queue `index` (for the VMM: e.g. to register an ioeventfd per queue). */
  queue(index: number): Virtqueue | undefined {
    return this.queues[index];
  }
  get queueCount(): number {
    return this.queues.length;
  }

  // ---------------------------------------------------------------- VMM side

  /**
   * "The driver notified queue `index`": the QueueNotify write path, callable
   * from outside (e.g. an ioeventfd on QueueNotify). Ignored unless the device
   * is active and healthy and the queue is ready. Returns whether the device
   * was asked to process the queue.
   */
  notifyQueue(index: number): boolean {
    if (!this.isActive || this.deviceStatus & (STATUS_DEVICE_NEEDS_RESET | STATUS_FAILED)) return false;
    const queue = this.queues[index];
    if (!queue || !queue.ready) return false;
    try {
      this.device.processQueue(index);
    } catch (e) {
      this.failDevice(e);
    }
    return true;
  }

  /** The host changed the device's config (e.g. a disk was resized). */
  signalConfigChange(): void {
    this.generation = (this.generation + 1) >>> 0;
    if (this.deviceStatus & STATUS_DRIVER_OK) this.raise(INTERRUPT_CONFIG_CHANGE);
  }

  // ---------------------------------------------------------------- BusDevice

  read(offset: number, data: Uint8Array): void {
    if (offset >= MMIO_CONFIG && offset + data.length <= MMIO_WINDOW_SIZE) {
      try {
        this.device.readConfig(offset - MMIO_CONFIG, data);
      } catch (e) {
        data.fill(0);
        this.failDevice(e);
      }
      return;
    }
    data.fill(0);
    if (data.length !== 4 || offset % 4 !== 0 || offset < 0 || offset >= MMIO_CONFIG) return;
    putU32(data, this.readRegister(offset));
  }

  write(offset: number, data: Uint8Array): void {
    if (offset >= MMIO_CONFIG && offset + data.length <= MMIO_WINDOW_SIZE) {
      try {
        this.device.writeConfig(offset - MMIO_CONFIG, data);
      } catch (e) {
        this.failDevice(e);
      }
      return;
    }
    if (data.length !== 4 || offset % 4 !== 0 || offset < 0 || offset >= MMIO_CONFIG) {
      this.refuse(`ignored ${data.length}-byte register write at 0x${offset.toString(16)}`);
      return;
    }
    this.writeRegister(offset, u32(data));
  }

  private readRegister(offset: number): number {
    const queue = this.queues[this.queueSel];
    switch (offset) {
      case MMIO_MAGIC_VALUE:
        return MMIO_MAGIC;
      case MMIO_VERSION:
        return MMIO_VERSION_2;
      case MMIO_DEVICE_ID:
        return this.device.deviceType;
      case MMIO_VENDOR_ID:
        return this.vendorId;
      case MMIO_DEVICE_FEATURES:
        if (this.deviceFeaturesSel > 1) return 0;
        return Number((this.offeredFeatures >> BigInt(32 * this.deviceFeaturesSel)) & 0xffff_ffffn);
      case MMIO_QUEUE_NUM_MAX:
        return queue ? queue.maxSize : 0;
      case MMIO_QUEUE_READY:
        return queue?.ready ? 1 : 0;
      case MMIO_INTERRUPT_STATUS:
        return this.isr;
      case MMIO_STATUS:
        return this.deviceStatus;
      case MMIO_CONFIG_GENERATION:
        return this.generation;
      // No shared memory regions: a length of all ones means "no such region".
      case MMIO_SHM_LEN_LOW:
      case MMIO_SHM_LEN_HIGH:
      case MMIO_SHM_BASE_LOW:
      case MMIO_SHM_BASE_HIGH:
        return 0xffff_ffff;
      default:
        // Write-only and unknown registers read as 0.
        return 0;
    }
  }

  private writeRegister(offset: number, value: number): void {
    switch (offset) {
      case MMIO_DEVICE_FEATURES_SEL:
        this.deviceFeaturesSel = value;
        return;
      case MMIO_DRIVER_FEATURES_SEL:
        this.driverFeaturesSel = value;
        return;
      case MMIO_DRIVER_FEATURES:
        this.writeDriverFeatures(value);
        return;
      case MMIO_QUEUE_SEL:
        this.queueSel = value;
        return;
      case MMIO_QUEUE_NUM:
      case MMIO_QUEUE_DESC_LOW:
      case MMIO_QUEUE_DESC_HIGH:
      case MMIO_QUEUE_DRIVER_LOW:
      case MMIO_QUEUE_DRIVER_HIGH:
      case MMIO_QUEUE_DEVICE_LOW:
      case MMIO_QUEUE_DEVICE_HIGH:
        this.writeQueueConfig(offset, value);
        return;
      case MMIO_QUEUE_READY:
        this.writeQueueReady(value);
        return;
      case MMIO_QUEUE_NOTIFY:
        // Without VIRTIO_F_NOTIFICATION_DATA the value is the queue index.
        if (!this.notifyQueue(value)) this.refuse(`ignored notify of queue ${value}`);
        return;
      case MMIO_INTERRUPT_ACK:
        this.isr &= ~value;
        this.updateIrq();
        return;
      case MMIO_STATUS:
        this.writeStatus(value);
        return;
      case MMIO_SHM_SEL:
        return;
      default:
        this.refuse(`ignored write to read-only or unknown register 0x${offset.toString(16)}`);
    }
  }

  private writeDriverFeatures(value: number): void {
    // Features may change only while negotiating: after DRIVER, before FEATURES_OK.
    if (!(this.deviceStatus & STATUS_DRIVER) || this.deviceStatus & STATUS_FEATURES_OK) {
      this.refuse('ignored DriverFeatures write outside feature negotiation');
      return;
    }
    if (this.driverFeaturesSel > 1) return;
    const shift = BigInt(32 * this.driverFeaturesSel);
    this.driverFeatures = (this.driverFeatures & ~(0xffff_ffffn << shift)) | (BigInt(value) << shift);
  }

  private writeQueueConfig(offset: number, value: number): void {
    const queue = this.queues[this.queueSel];
    const regs = this.queueRegs[this.queueSel];
    if (!queue || !regs) return this.refuse(`ignored queue register write for absent queue ${this.queueSel}`);
    if (queue.ready || this.deviceStatus & STATUS_DRIVER_OK) {
      return this.refuse(`ignored configuration write to live queue ${this.queueSel}`);
    }
    switch (offset) {
      case MMIO_QUEUE_NUM:
        queue.size = value;
        return;
      case MMIO_QUEUE_DESC_LOW:
        regs.descLow = value;
        return;
      case MMIO_QUEUE_DESC_HIGH:
        regs.descHigh = value;
        return;
      case MMIO_QUEUE_DRIVER_LOW:
        regs.driverLow = value;
        return;
      case MMIO_QUEUE_DRIVER_HIGH:
        regs.driverHigh = value;
        return;
      case MMIO_QUEUE_DEVICE_LOW:
        regs.deviceLow = value;
        return;
      case MMIO_QUEUE_DEVICE_HIGH:
        regs.deviceHigh = value;
        return;
    }
  }

  private writeQueueReady(value: number): void {
    const queue = this.queues[this.queueSel];
    const regs = this.queueRegs[this.queueSel];
    if (!queue || !regs) return this.refuse(`ignored QueueReady for absent queue ${this.queueSel}`);
    if (value === 0) {
      // Linux writes 0 when tearing queues down (normally after a reset).
      queue.disable();
      return;
    }
    if (value !== 1 || queue.ready) return;
    if (this.deviceStatus & STATUS_DRIVER_OK) {
      return this.refuse(`ignored QueueReady for queue ${this.queueSel} after DRIVER_OK`);
    }
    queue.descTable = address(regs.descLow, regs.descHigh);
    queue.availRing = address(regs.driverLow, regs.driverHigh);
    queue.usedRing = address(regs.deviceLow, regs.deviceHigh);
    const error = queue.enable();
    if (error) this.refuse(`refused QueueReady: ${error.message}`, error);
  }

  private writeStatus(value: number): void {
    if (value === 0) {
      this.reset();
      return;
    }
    if (value > 0xff) return this.refuse(`ignored status write 0x${value.toString(16)}`);
    const current = this.deviceStatus & ~STATUS_DEVICE_NEEDS_RESET;
    // DEVICE_NEEDS_RESET is ours; drivers echo it back when they OR in bits.
    const wanted = value & ~STATUS_DEVICE_NEEDS_RESET;
    if ((wanted & current) !== current) {
      return this.refuse(`ignored status write 0x${value.toString(16)}: only a reset may clear bits`);
    }
    const added = wanted & ~current;
    let next = current;
    if (added & STATUS_ACKNOWLEDGE) next |= STATUS_ACKNOWLEDGE;
    if (added & STATUS_DRIVER) {
      if (next & STATUS_ACKNOWLEDGE) next |= STATUS_DRIVER;
      else this.refuse('refused DRIVER before ACKNOWLEDGE');
    }
    if (added & STATUS_FEATURES_OK) {
      const problem = next & STATUS_DRIVER ? this.featureProblem() : 'FEATURES_OK before DRIVER';
      if (problem === null) next |= STATUS_FEATURES_OK;
      else this.refuse(`refused FEATURES_OK: ${problem}`);
    }
    if (added & STATUS_FAILED) next |= STATUS_FAILED;
    const activate = (added & STATUS_DRIVER_OK) !== 0;
    if (activate) {
      if (next & STATUS_FEATURES_OK && !(next & STATUS_FAILED)) next |= STATUS_DRIVER_OK;
      else this.refuse('refused DRIVER_OK without FEATURES_OK');
    }
    this.deviceStatus = next | (this.deviceStatus & STATUS_DEVICE_NEEDS_RESET);
    if (activate && next & STATUS_DRIVER_OK) this.activate();
  }

  private featureProblem(): string | null {
    const unoffered = this.driverFeatures & ~this.offeredFeatures;
    if (unoffered !== 0n) return `driver accepted features not offered: 0x${unoffered.toString(16)}`;
    if (!(this.driverFeatures & VIRTIO_F_VERSION_1)) return 'driver did not accept VIRTIO_F_VERSION_1';
    return null;
  }

  private activate(): void {
    if (this.deviceStatus & STATUS_DEVICE_NEEDS_RESET) return;
    const ctx: VirtioActivation = {
      memory: this.memory,
      queues: this.queues.map((q) => (q.ready ? q : undefined)),
      features: this.driverFeatures,
      host: this.hostFor(this.epoch),
    };
    try {
      this.device.activate(ctx);
    } catch (e) {
      this.failDevice(e);
      return;
    }
    if (this.deviceStatus & STATUS_DEVICE_NEEDS_RESET) return;
    this.isActive = true;
    // Kicks before DRIVER_OK were ignored: pick up anything already queued.
    this.queues.forEach((q, i) => {
      if (q.ready && q.pending() > 0) this.notifyQueue(i);
    });
  }

  private hostFor(epoch: number): VirtioDeviceHost {
    const live = (): boolean => epoch === this.epoch;
    return {
      signalUsed: (_queueIndex: number) => {
        if (live() && this.deviceStatus & STATUS_DRIVER_OK) this.raise(INTERRUPT_USED_BUFFER);
      },
      signalConfigChange: () => {
        if (live()) this.signalConfigChange();
      },
      needsReset: (reason: Error) => {
        if (live()) this.failDevice(reason);
      },
    };
  }

  /** Device reset (status write 0): everything back to power-on, bar ConfigGeneration. */
  private reset(): void {
    this.epoch++;
    try {
      this.device.reset();
    } catch (e) {
      this.lastFailure = e instanceof Error ? e : new Error(String(e));
    }
    for (const q of this.queues) q.reset();
    for (const r of this.queueRegs) {
      r.descLow = r.descHigh = r.driverLow = r.driverHigh = r.deviceLow = r.deviceHigh = 0;
    }
    this.deviceStatus = 0;
    this.deviceFeaturesSel = 0;
    this.driverFeaturesSel = 0;
    this.driverFeatures = 0n;
    this.queueSel = 0;
    this.isActive = false;
    this.isr = 0;
    this.updateIrq();
  }

  /** Enter DEVICE_NEEDS_RESET: stop the device, tell the driver (spec 2.1.2). */
  private failDevice(e: unknown): void {
    const error = e instanceof Error ? e : new Error(String(e));
    this.lastFailure = error;
    const first = !(this.deviceStatus & STATUS_DEVICE_NEEDS_RESET);
    this.deviceStatus |= STATUS_DEVICE_NEEDS_RESET;
    this.isActive = false;
    this.emit({ kind: 'needs-reset', message: error.message, error });
    if (first && this.deviceStatus & STATUS_DRIVER_OK) this.raise(INTERRUPT_CONFIG_CHANGE);
  }

  private refuse(message: string, error?: Error): void {
    this.emit(error ? { kind: 'refused', message, error } : { kind: 'refused', message });
  }

  private emit(event: VirtioTransportEvent): void {
    try {
      this.onEvent?.(event);
    } catch {
      // A logging hook must not turn a guest action into a VMM exception.
    }
  }

  private raise(bits: number): void {
    this.isr |= bits;
    this.updateIrq();
  }

  private updateIrq(): void {
    const level = this.isr !== 0;
    if (level === this.irqLevel) return;
    this.irqLevel = level;
    this.irq.setLevel(level);
  }
}
