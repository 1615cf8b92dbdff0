/**
 * The contract between a virtio transport (today only virtio-mmio) and a
 * device model (blk, rng; later gpu, input, vsock).
 *
 * The transport owns everything the spec puts in the "basic facilities":
 * status, feature negotiation, queue set-up, interrupts, config generation.
 * The device owns its feature bits, its config space and what it does with
 * the buffers in its queues. A device never sees MMIO registers and never
 * touches an IrqLine; it talks back only through `VirtioDeviceHost`.
 *
 * Life cycle, driven by the transport:
 *   constructor ─► activate(ctx)   (driver set DRIVER_OK)
 *                   processQueue(i) (driver notified queue i, or the VMM asked)
 *                   …
 *                  reset()          (driver wrote status 0; back to constructor state)
 *                  activate(ctx)    (again, after the driver re-initialises)
 *
 * Device methods may throw; the transport catches everything, sets
 * DEVICE_NEEDS_RESET and stops calling the device until the driver resets it.
 * Guest errors should still be reported through `host.needsReset()` rather
 * than thrown, so they carry a typed reason.
 */
import type { GuestMemory } from '../../memory/guest-memory.js';
import { VirtqueueError } from './queue.js';
import type { DescriptorChain, Virtqueue } from './queue.js';

/** What a device may ask of its transport. */
export interface VirtioDeviceHost {
  /** Used buffers were added to queue `queueIndex`: raise the used-buffer interrupt. */
  signalUsed(queueIndex: number): void;
  /** The config space changed: bump ConfigGeneration, raise the config interrupt. */
  signalConfigChange(): void;
  /**
   * The device met a guest error it cannot answer in-band (malformed chain,
   * broken ring). The transport sets DEVICE_NEEDS_RESET, raises a config-change
   * interrupt and stops processing until the driver resets the device.
   */
  needsReset(reason: VirtqueueError | Error): void;
}

/** Handed to `activate()` when the driver sets DRIVER_OK. */
export interface VirtioActivation {
  readonly memory: GuestMemory;
  /**
   * One entry per queue the device declared (`queueMaxSizes`): the ready
   * queue, or undefined when the driver did not set that queue up.
   */
  readonly queues: readonly (Virtqueue | undefined)[];
  /** Features the driver accepted (a subset of `features`, incl. VIRTIO_F_VERSION_1). */
  readonly features: bigint;
  readonly host: VirtioDeviceHost;
}

export interface VirtioDevice {
  /** VIRTIO_ID_* (DeviceID register). */
  readonly deviceType: number;
  /**
   * Device feature bits offered to the driver. The transport always adds
   * VIRTIO_F_VERSION_1 and never offers ring features the queue lacks.
   */
  readonly features: bigint;
  /** QueueNumMax for each queue, a power of two ≤ 32768. Its length is the queue count. */
  readonly queueMaxSizes: readonly number[];
  /** Upper bound on the bytes of one descriptor chain (see VirtqueueOptions). */
  readonly maxChainBytes?: number;

  /**
   * Read `data.length` bytes of device config space at `offset` (relative to
   * the config area) into `data`. Bytes beyond the config structure read 0.
   */
  readConfig(offset: number, data: Uint8Array): void;
  /** The driver wrote config space. Most devices ignore writes. */
  writeConfig(offset: number, data: Uint8Array): void;

  /**
   * The driver set DRIVER_OK. Throw (or call host.needsReset) to refuse, e.g.
   * when a required queue was not set up.
   */
  activate(ctx: VirtioActivation): void;
  /**
   * Process available buffers of queue `index`. Called only while active and
   * only for a ready queue. Should handle a bounded amount of work (at most
   * one ring's worth) per call: every later driver notification calls again.
   */
  processQueue(index: number): void;
  /** Device reset: drop activation state, keep host-side configuration (disk, serial). */
  reset(): void;
}

/**
 * Helper for config space reads: copy from a device's config bytes, reading
 * zeros outside them.
 */
export function readConfigBytes(config: Uint8Array, offset: number, data: Uint8Array): void {
  data.fill(0);
  if (offset < 0 || offset >= config.length) return;
  const n = Math.min(data.length, config.length - offset);
  data.set(config.subarray(offset, offset + n));
}

/**
 * The usual request loop: pop up to one ring's worth of chains from `queue`,
 * answer each with `handle` (which returns the used length, or an error for a
 * chain it cannot answer in-band), push them to the used ring and interrupt
 * once. A chain or ring error stops the loop and puts the device into
 * DEVICE_NEEDS_RESET. Returns the number of chains completed.
 */
export function drainQueue(
  queue: Virtqueue,
  queueIndex: number,
  host: VirtioDeviceHost,
  handle: (chain: DescriptorChain) => number | VirtqueueError,
): number {
  let completed = 0;
  let failure: VirtqueueError | null = null;
  // Bounded: chains the guest adds while we work are picked up by the next
  // notification, which the guest sends after adding them.
  for (let i = 0; i < queue.size; i++) {
    const popped = queue.pop();
    if (popped.kind === 'empty') break;
    if (popped.kind === 'error') {
      failure = popped.error;
      break;
    }
    const answer = handle(popped.chain);
    if (answer instanceof VirtqueueError) {
      failure = answer;
      break;
    }
    const pushError = queue.pushUsed(popped.chain.head, answer);
    if (pushError) {
      failure = pushError;
      break;
    }
    completed++;
  }
  if (completed > 0 && queue.needsNotification()) host.signalUsed(queueIndex);
  if (failure) host.needsReset(failure);
  return completed;
}
