/**
 * The device side of a split virtqueue (virtio 1.2, section 2.7).
 *
 * Everything in the rings is written by the guest and is untrusted. The queue
 * reads each ring field and each descriptor exactly once (no double fetch),
 * checks it, and hands the device a parsed chain of plain
 * `{addr, len, writable}` segments that are known to lie inside guest RAM.
 * Problems are returned as typed `VirtqueueError` values, never thrown.
 *
 * Not implemented (not offered as features): indirect descriptors, EVENT_IDX
 * notification suppression, packed rings. `needsNotification()` is where
 * EVENT_IDX will go.
 */
import { GuestMemoryError } from '../../memory/guest-memory.js';
import type { GuestMemory } from '../../memory/guest-memory.js';
import {
  VIRTQ_AVAIL_ALIGN,
  VIRTQ_DESC_ALIGN,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_DESC_SIZE,
  VIRTQ_MAX_SIZE,
  VIRTQ_USED_ALIGN,
} from './constants.js';

export type VirtqueueErrorKind =
  // Set-up (QueueReady) problems: the queue is refused and stays not ready.
  | 'invalid-size'
  | 'misaligned-ring'
  | 'ring-out-of-range'
  // Ring corruption: the queue is broken, nothing more can be trusted.
  | 'avail-index-jump'
  | 'head-out-of-range'
  | 'not-ready'
  // Malformed descriptor chain (the head is known).
  | 'next-out-of-range'
  | 'descriptor-loop'
  | 'indirect-descriptor'
  | 'readable-after-writable'
  | 'buffer-out-of-range'
  | 'chain-too-large'
  // A well-formed chain the device cannot use (e.g. a virtio-blk request with
  // no room for its header or status byte).
  | 'malformed-request'
  // A device-side request the queue refuses (bad head / length in pushUsed).
  | 'invalid-used'
  // Defence in depth: a guest-memory access failed where none should.
  | 'guest-memory';

/** A guest error found in a virtqueue. Returned, not thrown. */
export class VirtqueueError extends Error {
  constructor(
    readonly kind: VirtqueueErrorKind,
    message: string,
    /** Index of the queue within its device. */
    readonly queueIndex: number,
    /** Head descriptor of the offending chain, when known. */
    readonly head?: number,
  ) {
    super(`virtqueue ${queueIndex}: ${kind}: ${message}`);
    this.name = 'VirtqueueError';
  }
}

/** One descriptor of a parsed chain; always inside guest RAM. */
export interface Segment {
  readonly addr: number;
  readonly len: number;
  /** Device-writable (VIRTQ_DESC_F_WRITE). */
  readonly writable: boolean;
}

/**
 * A validated descriptor chain. `readable` (device reads, driver wrote) always
 * precede `writable` (device writes) in the chain; the split keeps that order.
 */
export class DescriptorChain {
  constructor(
    /** Head descriptor index: the id to return in the used ring. */
    readonly head: number,
    readonly readable: readonly Segment[],
    readonly writable: readonly Segment[],
  ) {}

  get readableBytes(): number {
    return totalLength(this.readable);
  }
  get writableBytes(): number {
    return totalLength(this.writable);
  }
}

export type PopResult =
  | { readonly kind: 'empty' }
  | { readonly kind: 'chain'; readonly chain: DescriptorChain }
  | { readonly kind: 'error'; readonly error: VirtqueueError };

export interface VirtqueueOptions {
  /**
   * Upper bound on the sum of all descriptor lengths in one chain. Descriptors
   * may overlap, so without a bound a 32768-entry chain could name far more
   * bytes than RAM holds. Default `DEFAULT_MAX_CHAIN_BYTES`.
   */
  maxChainBytes?: number;
}

/** 64 MiB: well above Linux's default request cap (1280 KiB per block request). */
export const DEFAULT_MAX_CHAIN_BYTES = 64 * 1024 * 1024;

const EMPTY: PopResult = { kind: 'empty' };

export function isPowerOfTwo(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

export function totalLength(segments: readonly Segment[]): number {
  let n = 0;
  for (const s of segments) n += s.len;
  return n;
}

/**
 * Zero-copy views of bytes [offset, offset+length) of the concatenation of
 * `segments`. Used to read file data straight into guest buffers (and out of
 * them). Throws RangeError if the range is not inside the segments: that is a
 * device-model bug, not a guest error.
 */
export function segmentViews(
  memory: GuestMemory,
  segments: readonly Segment[],
  offset: number,
  length: number,
): Uint8Array[] {
  const views: Uint8Array[] = [];
  let skip = offset;
  let left = length;
  for (const s of segments) {
    if (left === 0) break;
    if (skip >= s.len) {
      skip -= s.len;
      continue;
    }
    const n = Math.min(s.len - skip, left);
    views.push(memory.slice(s.addr + skip, n));
    left -= n;
    skip = 0;
  }
  if (left !== 0 || skip !== 0) throw new RangeError(`segment range [${offset}, +${length}) out of chain`);
  return views;
}

/** Copy bytes [offset, offset+into.length) of the segments into `into`. */
export function readSegments(
  memory: GuestMemory,
  segments: readonly Segment[],
  offset: number,
  into: Uint8Array,
): void {
  let at = 0;
  for (const view of segmentViews(memory, segments, offset, into.length)) {
    into.set(view, at);
    at += view.length;
  }
}

/** Copy `from` into the segments starting at byte `offset`. */
export function writeSegments(
  memory: GuestMemory,
  segments: readonly Segment[],
  offset: number,
  from: Uint8Array,
): void {
  let at = 0;
  for (const view of segmentViews(memory, segments, offset, from.length)) {
    view.set(from.subarray(at, at + view.length));
    at += view.length;
  }
}

/**
 * One split virtqueue: the driver-programmed configuration (size and the three
 * ring addresses, set through the transport before QueueReady) and the
 * device's run-time state (next available index to consume, next used index).
 */
export class Virtqueue {
  /** Queue size programmed by the driver (QueueNum). Defaults to maxSize. */
  size: number;
  /** Guest-physical addresses of the descriptor table, avail ring, used ring. */
  descTable = 0;
  availRing = 0;
  usedRing = 0;

  private isReady = false;
  private nextAvail = 0;
  private nextUsed = 0;
  private brokenBy: VirtqueueError | null = null;
  private readonly maxChainBytes: number;

  constructor(
    private readonly memory: GuestMemory,
    /** Index of this queue within its device (for messages). */
    readonly index: number,
    /** Largest size the device accepts (QueueNumMax); a power of two ≤ 32768. */
    readonly maxSize: number,
    options: VirtqueueOptions = {},
  ) {
    if (!isPowerOfTwo(maxSize) || maxSize > VIRTQ_MAX_SIZE) {
      throw new RangeError(`virtqueue ${index}: max size ${maxSize} is not a power of two ≤ ${VIRTQ_MAX_SIZE}`);
    }
    this.size = maxSize;
    this.maxChainBytes = options.maxChainBytes ?? DEFAULT_MAX_CHAIN_BYTES;
  }

  get ready(): boolean {
    return this.isReady;
  }

  /** The error that broke this queue, if any. A broken queue yields nothing. */
  get broken(): VirtqueueError | null {
    return this.brokenBy;
  }

  /** Index of the next avail ring entry the device will consume (wraps at 2^16). */
  get lastAvailIndex(): number {
    return this.nextAvail;
  }

  /** Index the device will write next into the used ring (wraps at 2^16). */
  get usedIndex(): number {
    return this.nextUsed;
  }

  /** Back to the power-on state (device reset). */
  reset(): void {
    this.size = this.maxSize;
    this.descTable = 0;
    this.availRing = 0;
    this.usedRing = 0;
    this.isReady = false;
    this.nextAvail = 0;
    this.nextUsed = 0;
    this.brokenBy = null;
  }

  /**
   * QueueReady=1: check the driver's configuration. On success the queue is
   * ready and its indices start at 0. On failure it stays not ready and the
   * error says why.
   */
  enable(): VirtqueueError | null {
    const error = this.checkLayout();
    if (error) return error;
    this.isReady = true;
    this.nextAvail = 0;
    this.nextUsed = 0;
    this.brokenBy = null;
    return null;
  }

  /** QueueReady=0. */
  disable(): void {
    this.isReady = false;
  }

  private checkLayout(): VirtqueueError | null {
    const n = this.size;
    if (!isPowerOfTwo(n) || n > this.maxSize) {
      return this.error('invalid-size', `size ${n} is not a power of two in 1..${this.maxSize}`);
    }
    // Sizes without the EVENT_IDX trailers (used_event / avail_event): we do
    // not offer EVENT_IDX, so the device never touches them.
    const areas: [string, number, number, number][] = [
      ['descriptor table', this.descTable, VIRTQ_DESC_SIZE * n, VIRTQ_DESC_ALIGN],
      ['available ring', this.availRing, 4 + 2 * n, VIRTQ_AVAIL_ALIGN],
      ['used ring', this.usedRing, 4 + 8 * n, VIRTQ_USED_ALIGN],
    ];
    for (const [name, addr, length, align] of areas) {
      if (!this.memory.contains(addr, length)) {
        return this.error('ring-out-of-range', `${name} at 0x${addr.toString(16)} (+${length}) is outside RAM`);
      }
      if (addr % align !== 0) {
        return this.error('misaligned-ring', `${name} at 0x${addr.toString(16)} is not ${align}-byte aligned`);
      }
    }
    return null;
  }

  /** Number of chains the driver has made available and we have not popped. */
  pending(): number {
    if (!this.isReady || this.brokenBy) return 0;
    try {
      return (this.memory.readU16(this.availRing + 2) - this.nextAvail) & 0xffff;
    } catch {
      return 0;
    }
  }

  /**
   * Take the next available chain. A chain error consumes the avail entry and
   * reports the head; ring-level corruption (avail index jump, head index out
   * of range) also marks the queue broken.
   */
  pop(): PopResult {
    if (this.brokenBy) return { kind: 'error', error: this.brokenBy };
    if (!this.isReady) return { kind: 'error', error: this.error('not-ready', 'queue is not ready') };
    try {
      const availIdx = this.memory.readU16(this.availRing + 2);
      const pending = (availIdx - this.nextAvail) & 0xffff;
      if (pending === 0) return EMPTY;
      if (pending > this.size) {
        return this.breakWith(
          this.error(
            'avail-index-jump',
            `avail.idx ${availIdx} is ${pending} ahead of ${this.nextAvail} (size ${this.size})`,
          ),
        );
      }
      const slot = this.nextAvail % this.size;
      const head = this.memory.readU16(this.availRing + 4 + 2 * slot);
      this.nextAvail = (this.nextAvail + 1) & 0xffff;
      if (head >= this.size) {
        return this.breakWith(this.error('head-out-of-range', `avail.ring[${slot}] = ${head} ≥ size ${this.size}`));
      }
      return this.walk(head);
    } catch (e) {
      return this.breakWith(this.fromMemoryError(e));
    }
  }

  private walk(head: number): PopResult {
    const readable: Segment[] = [];
    const writable: Segment[] = [];
    let index = head;
    let total = 0;
    for (let count = 1; ; count++) {
      if (count > this.size) {
        return this.chainError(
          'descriptor-loop',
          `chain from ${head} is longer than the queue size ${this.size}`,
          head,
        );
      }
      // Each descriptor field is fetched once; later guest writes cannot change
      // what we validated.
      const at = this.descTable + VIRTQ_DESC_SIZE * index;
      const addr = this.memory.readU64(at); // Infinity when ≥ 2^53
      const len = this.memory.readU32(at + 8);
      const flags = this.memory.readU16(at + 12);
      const next = this.memory.readU16(at + 14);
      if (flags & VIRTQ_DESC_F_INDIRECT) {
        return this.chainError('indirect-descriptor', `descriptor ${index} is INDIRECT (not negotiated)`, head);
      }
      if (!this.memory.contains(addr, len)) {
        const shown = Number.isFinite(addr) ? `0x${addr.toString(16)}` : '≥2^53';
        return this.chainError('buffer-out-of-range', `descriptor ${index}: ${shown} (+${len}) is outside RAM`, head);
      }
      const isWritable = (flags & VIRTQ_DESC_F_WRITE) !== 0;
      if (!isWritable && writable.length > 0) {
        return this.chainError('readable-after-writable', `descriptor ${index} is readable after a writable one`, head);
      }
      total += len;
      if (total > this.maxChainBytes) {
        return this.chainError('chain-too-large', `chain from ${head} exceeds ${this.maxChainBytes} bytes`, head);
      }
      (isWritable ? writable : readable).push({ addr, len, writable: isWritable });
      if ((flags & VIRTQ_DESC_F_NEXT) === 0) break;
      if (next >= this.size) {
        return this.chainError('next-out-of-range', `descriptor ${index}: next ${next} ≥ size ${this.size}`, head);
      }
      index = next;
    }
    return { kind: 'chain', chain: new DescriptorChain(head, readable, writable) };
  }

  /**
   * Return a chain to the driver: used.ring[used.idx % size] = {head, len},
   * then publish used.idx + 1. `len` is the number of bytes the device wrote
   * into the chain's writable buffers.
   */
  pushUsed(head: number, len: number): VirtqueueError | null {
    if (this.brokenBy) return this.brokenBy;
    if (!this.isReady) return this.error('not-ready', 'queue is not ready');
    if (!Number.isInteger(head) || head < 0 || head >= this.size) {
      return this.error('invalid-used', `head ${head} out of range`);
    }
    if (!Number.isInteger(len) || len < 0 || len > 0xffff_ffff) {
      return this.error('invalid-used', `used length ${len} out of range`);
    }
    try {
      const slot = this.nextUsed % this.size;
      const at = this.usedRing + 4 + 8 * slot;
      this.memory.writeU32(at, head);
      this.memory.writeU32(at + 4, len);
      // The element is written before the index that publishes it.
      this.nextUsed = (this.nextUsed + 1) & 0xffff;
      this.memory.writeU16(this.usedRing + 2, this.nextUsed);
      return null;
    } catch (e) {
      return this.breakWith(this.fromMemoryError(e)).error;
    }
  }

  /**
   * Whether the device should interrupt the driver after adding used buffers.
   * Without EVENT_IDX the answer is always yes (we deliberately ignore
   * VIRTQ_AVAIL_F_NO_INTERRUPT: an extra interrupt is harmless, a missed one
   * hangs the guest). EVENT_IDX's used_event check goes here.
   */
  needsNotification(): boolean {
    return true;
  }

  private error(kind: VirtqueueErrorKind, message: string, head?: number): VirtqueueError {
    return new VirtqueueError(kind, message, this.index, head);
  }

  private chainError(kind: VirtqueueErrorKind, message: string, head: number): PopResult {
    return { kind: 'error', error: this.error(kind, message, head) };
  }

  private breakWith(error: VirtqueueError): { kind: 'error'; error: VirtqueueError } {
    this.brokenBy = error;
    return { kind: 'error', error };
  }

  private fromMemoryError(e: unknown): VirtqueueError {
    if (e instanceof GuestMemoryError) return this.error('guest-memory', e.message);
    return this.error('guest-memory', `unexpected: ${e instanceof Error ? e.message : String(e)}`);
  }
}
