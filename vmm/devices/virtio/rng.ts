/**
 * virtio-rng / entropy device (virtio 1.2, section 5.4): one request queue of
 * device-writable buffers, filled from the host CSPRNG (node:crypto).
 *
 * At most `maxBytesPerRequest` (default 64 KiB) are filled per chain; the used
 * length says how many. A chain with device-readable descriptors is not a
 * valid entropy request: it is returned with used length 0 (nothing written)
 * and counted in `badRequests`. Malformed chains (loops, out-of-RAM buffers…)
 * put the device into DEVICE_NEEDS_RESET like any other device.
 */
import { randomFillSync } from 'node:crypto';
import type { GuestMemory } from '../../memory/guest-memory.js';
import { drainQueue, readConfigBytes } from './device.js';
import type { VirtioActivation, VirtioDevice, VirtioDeviceHost } from './device.js';
import { isPowerOfTwo, segmentViews } from './queue.js';
import type { DescriptorChain, Virtqueue } from './queue.js';
import { VIRTIO_ID_RNG } from './constants.js';

export interface VirtioRngOptions {
  /** Bytes filled per chain at most. Default 64 KiB. */
  maxBytesPerRequest?: number;
  /** QueueNumMax. Default 64. */
  queueSize?: number;
  /** Source of randomness (tests may substitute). Default crypto.randomFillSync. */
  fill?: (into: Uint8Array) => void;
}

const NO_CONFIG = new Uint8Array(0);

export class VirtioRng implements VirtioDevice {
  readonly deviceType = VIRTIO_ID_RNG;
  readonly features = 0n;
  readonly queueMaxSizes: readonly number[];
  readonly maxBytesPerRequest: number;
  /** Chains refused because they held device-readable buffers. */
  badRequests = 0;

  private readonly fill: (into: Uint8Array) => void;
  private memory: GuestMemory | undefined;
  private queue: Virtqueue | undefined;
  private host: VirtioDeviceHost | undefined;

  constructor(options: VirtioRngOptions = {}) {
    const queueSize = options.queueSize ?? 64;
    if (!isPowerOfTwo(queueSize) || queueSize > 32768) {
      throw new RangeError(`virtio-rng: queue size ${queueSize} must be a power of two ≤ 32768`);
    }
    const max = options.maxBytesPerRequest ?? 64 * 1024;
    if (!Number.isSafeInteger(max) || max <= 0) throw new RangeError(`virtio-rng: bad maxBytesPerRequest ${max}`);
    this.queueMaxSizes = [queueSize];
    this.maxBytesPerRequest = max;
    this.fill = options.fill ?? ((into) => randomFillSync(into));
  }

  readConfig(offset: number, data: Uint8Array): void {
    readConfigBytes(NO_CONFIG, offset, data);
  }

  writeConfig(_offset: number, _data: Uint8Array): void {}

  activate(ctx: VirtioActivation): void {
    const queue = ctx.queues[0];
    if (!queue) throw new Error('virtio-rng: the request queue was not set up');
    this.memory = ctx.memory;
    this.queue = queue;
    this.host = ctx.host;
  }

  processQueue(index: number): void {
    const { queue, host } = this;
    if (index !== 0 || !queue || !host) return;
    drainQueue(queue, 0, host, (chain) => this.handle(chain));
  }

  reset(): void {
    this.memory = undefined;
    this.queue = undefined;
    this.host = undefined;
  }

  private handle(chain: DescriptorChain): number {
    const memory = this.memory;
    if (!memory || chain.readable.length > 0) {
      this.badRequests++;
      return 0;
    }
    const length = Math.min(chain.writableBytes, this.maxBytesPerRequest);
    for (const view of segmentViews(memory, chain.writable, 0, length)) this.fill(view);
    return length;
  }
}
