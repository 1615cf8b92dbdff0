/**
 * virtio-blk (virtio 1.2, section 5.2): one request queue, backed by a
 * `BlockBackend` (a host file, or memory in tests).
 *
 * Request = header (type u32, reserved u32, sector u64; device-readable),
 * data (readable for OUT, writable for IN/GET_ID), status byte (the last
 * device-writable byte). The header may be split over descriptors in any way;
 * data moves between the backend and guest RAM through zero-copy views.
 *
 * Guest errors inside a well-formed request (beyond the disk, write to a
 * read-only disk, odd length, unknown type) are answered in-band with
 * VIRTIO_BLK_S_IOERR / VIRTIO_BLK_S_UNSUPP. A chain with no room for the
 * header or the status byte cannot be answered and puts the device into
 * DEVICE_NEEDS_RESET.
 *
 * The disk is `floor(size / 512)` sectors: a trailing partial sector of the
 * backing file is not visible to the guest.
 */
import { closeSync, fstatSync, fsyncSync, openSync, readSync, writeSync } from 'node:fs';
import type { GuestMemory } from '../../memory/guest-memory.js';
import { drainQueue, readConfigBytes } from './device.js';
import type { VirtioActivation, VirtioDevice, VirtioDeviceHost } from './device.js';
import { isPowerOfTwo, readSegments, segmentViews, VirtqueueError, writeSegments } from './queue.js';
import type { DescriptorChain, Virtqueue } from './queue.js';
import {
  VIRTIO_BLK_F_BLK_SIZE,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_SEG_MAX,
  VIRTIO_BLK_ID_BYTES,
  VIRTIO_BLK_OUTHDR_SIZE,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_SECTOR_SIZE,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_ID_BLOCK,
} from './constants.js';

/** Storage behind a virtio-blk device. Positions and sizes are in bytes. */
export interface BlockBackend {
  /** Size in bytes (fixed for the backend's lifetime). */
  readonly size: number;
  /** Fill all of `into` from `position`, or throw. */
  read(position: number, into: Uint8Array): void;
  /** Write all of `from` at `position`, or throw. */
  write(position: number, from: Uint8Array): void;
  /** Make completed writes durable, or throw. */
  flush(): void;
}

/** A backend over a host file descriptor, with synchronous positioned I/O. */
export class FileBlockBackend implements BlockBackend {
  readonly size: number;
  private closed = false;

  /**
   * `fd` must be a regular file (its size comes from fstat). The backend does
   * not close a descriptor it was given unless `ownsFd` is set.
   */
  constructor(
    readonly fd: number,
    private readonly ownsFd = false,
  ) {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw new Error(`block backend fd ${fd} is not a regular file`);
    this.size = stat.size;
  }

  /** Open `path` (read-only: O_RDONLY, so even a device bug cannot write it). */
  static open(path: string, readOnly: boolean): FileBlockBackend {
    const fd = openSync(path, readOnly ? 'r' : 'r+');
    try {
      return new FileBlockBackend(fd, true);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  read(position: number, into: Uint8Array): void {
    let done = 0;
    while (done < into.length) {
      const n = readSync(this.fd, into, done, into.length - done, position + done);
      if (n === 0) throw new Error(`short read at ${position + done}: end of file`);
      done += n;
    }
  }

  write(position: number, from: Uint8Array): void {
    let done = 0;
    while (done < from.length) {
      done += writeSync(this.fd, from, done, from.length - done, position + done);
    }
  }

  flush(): void {
    fsyncSync(this.fd);
  }

  close(): void {
    if (this.closed || !this.ownsFd) return;
    this.closed = true;
    closeSync(this.fd);
  }
}

/** A backend over a byte array (tests, scratch disks). */
export class MemoryBlockBackend implements BlockBackend {
  constructor(readonly bytes: Uint8Array) {}

  get size(): number {
    return this.bytes.length;
  }

  read(position: number, into: Uint8Array): void {
    this.check(position, into.length);
    into.set(this.bytes.subarray(position, position + into.length));
  }

  write(position: number, from: Uint8Array): void {
    this.check(position, from.length);
    this.bytes.set(from, position);
  }

  flush(): void {}

  private check(position: number, length: number): void {
    if (position < 0 || position + length > this.bytes.length) {
      throw new RangeError(`memory disk access [${position}, +${length}) out of range`);
    }
  }
}

export interface VirtioBlockOptions {
  /** Offer VIRTIO_BLK_F_RO and refuse every write. */
  readOnly: boolean;
  /** GET_ID answer: printable ASCII, at most 20 bytes. Default empty. */
  serial?: string;
  /** QueueNumMax of the request queue; a power of two ≥ 4. Default 256. */
  queueSize?: number;
}

/** Config space: capacity u64, size_max u32, seg_max u32, geometry (4), blk_size u32. */
const CONFIG_SIZE = 24;
const DEFAULT_QUEUE_SIZE = 256;

export class VirtioBlock implements VirtioDevice {
  readonly deviceType = VIRTIO_ID_BLOCK;
  readonly features: bigint;
  readonly queueMaxSizes: readonly number[];
  /** Capacity in 512-byte sectors. */
  readonly capacity: number;
  readonly readOnly: boolean;

  private readonly config = new Uint8Array(CONFIG_SIZE);
  private readonly id = new Uint8Array(VIRTIO_BLK_ID_BYTES);
  private memory: GuestMemory | undefined;
  private queue: Virtqueue | undefined;
  private host: VirtioDeviceHost | undefined;
  private writeThrough = true;

  constructor(
    private readonly backend: BlockBackend,
    options: VirtioBlockOptions,
  ) {
    const queueSize = options.queueSize ?? DEFAULT_QUEUE_SIZE;
    if (!isPowerOfTwo(queueSize) || queueSize < 4 || queueSize > 32768) {
      throw new RangeError(`virtio-blk: queue size ${queueSize} must be a power of two in 4..32768`);
    }
    const serial = options.serial ?? '';
    if (serial.length > VIRTIO_BLK_ID_BYTES || !/^[\x20-\x7e]*$/.test(serial)) {
      throw new RangeError(`virtio-blk: serial must be at most ${VIRTIO_BLK_ID_BYTES} printable ASCII characters`);
    }
    for (let i = 0; i < serial.length; i++) this.id[i] = serial.charCodeAt(i);

    this.readOnly = options.readOnly;
    this.queueMaxSizes = [queueSize];
    this.capacity = Math.floor(backend.size / VIRTIO_BLK_SECTOR_SIZE);
    this.features =
      VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH | (this.readOnly ? VIRTIO_BLK_F_RO : 0n);

    const view = new DataView(this.config.buffer);
    view.setBigUint64(0, BigInt(this.capacity), true);
    // Without indirect descriptors a request needs header + data + status
    // descriptors in the ring itself.
    view.setUint32(12, queueSize - 2, true);
    view.setUint32(20, VIRTIO_BLK_SECTOR_SIZE, true);
  }

  readConfig(offset: number, data: Uint8Array): void {
    readConfigBytes(this.config, offset, data);
  }

  writeConfig(_offset: number, _data: Uint8Array): void {
    // No writable fields: VIRTIO_BLK_F_CONFIG_WCE is not offered.
  }

  activate(ctx: VirtioActivation): void {
    const queue = ctx.queues[0];
    if (!queue) throw new Error('virtio-blk: the request queue was not set up');
    this.memory = ctx.memory;
    this.queue = queue;
    this.host = ctx.host;
    // Without a negotiated FLUSH the driver assumes a write-through cache.
    this.writeThrough = (ctx.features & VIRTIO_BLK_F_FLUSH) === 0n;
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
    this.writeThrough = true;
  }

  /** Answer one request; returns the used length (bytes written incl. status). */
  private handle(chain: DescriptorChain): number | VirtqueueError {
    const memory = this.memory;
    if (!memory) return new VirtqueueError('not-ready', 'virtio-blk is not active', 0, chain.head);
    const readableBytes = chain.readableBytes;
    const writableBytes = chain.writableBytes;
    if (readableBytes < VIRTIO_BLK_OUTHDR_SIZE) {
      return malformed(chain, `request header needs ${VIRTIO_BLK_OUTHDR_SIZE} readable bytes, got ${readableBytes}`);
    }
    if (writableBytes < 1) return malformed(chain, 'request has no writable status byte');

    // Copy the header once: the guest may change it while we work.
    const header = new Uint8Array(VIRTIO_BLK_OUTHDR_SIZE);
    readSegments(memory, chain.readable, 0, header);
    const view = new DataView(header.buffer);
    const type = view.getUint32(0, true);
    const sector = view.getBigUint64(8, true);

    const dataOut = readableBytes - VIRTIO_BLK_OUTHDR_SIZE; // bytes after the header
    const dataIn = writableBytes - 1; // bytes before the status byte
    let status: number;
    let written = 0;
    switch (type) {
      case VIRTIO_BLK_T_IN:
        status = dataOut === 0 ? this.transfer(memory, chain, sector, dataIn, 'in') : VIRTIO_BLK_S_IOERR;
        if (status === VIRTIO_BLK_S_OK) written = dataIn;
        break;
      case VIRTIO_BLK_T_OUT:
        status =
          dataIn === 0 && !this.readOnly ? this.transfer(memory, chain, sector, dataOut, 'out') : VIRTIO_BLK_S_IOERR;
        break;
      case VIRTIO_BLK_T_FLUSH:
        status = dataIn === 0 && dataOut === 0 ? this.flush() : VIRTIO_BLK_S_IOERR;
        break;
      case VIRTIO_BLK_T_GET_ID: {
        if (dataOut !== 0) {
          status = VIRTIO_BLK_S_IOERR;
          break;
        }
        written = Math.min(dataIn, VIRTIO_BLK_ID_BYTES);
        writeSegments(memory, chain.writable, 0, this.id.subarray(0, written));
        status = VIRTIO_BLK_S_OK;
        break;
      }
      default:
        status = VIRTIO_BLK_S_UNSUPP;
    }
    writeSegments(memory, chain.writable, dataIn, Uint8Array.of(status));
    return written + 1;
  }

  /** Move `length` bytes between sector `sector` and the chain's data area. */
  private transfer(
    memory: GuestMemory,
    chain: DescriptorChain,
    sector: bigint,
    length: number,
    direction: 'in' | 'out',
  ): number {
    if (length % VIRTIO_BLK_SECTOR_SIZE !== 0) return VIRTIO_BLK_S_IOERR;
    const sectors = BigInt(length / VIRTIO_BLK_SECTOR_SIZE);
    const capacity = BigInt(this.capacity);
    if (sector > capacity || sectors > capacity - sector) return VIRTIO_BLK_S_IOERR;
    let position = Number(sector) * VIRTIO_BLK_SECTOR_SIZE;
    try {
      if (direction === 'in') {
        for (const view of segmentViews(memory, chain.writable, 0, length)) {
          this.backend.read(position, view);
          position += view.length;
        }
      } else {
        for (const view of segmentViews(memory, chain.readable, VIRTIO_BLK_OUTHDR_SIZE, length)) {
          this.backend.write(position, view);
          position += view.length;
        }
        if (this.writeThrough && length > 0) this.backend.flush();
      }
    } catch {
      return VIRTIO_BLK_S_IOERR;
    }
    return VIRTIO_BLK_S_OK;
  }

  private flush(): number {
    if (this.readOnly) return VIRTIO_BLK_S_OK;
    try {
      this.backend.flush();
      return VIRTIO_BLK_S_OK;
    } catch {
      return VIRTIO_BLK_S_IOERR;
    }
  }
}

function malformed(chain: DescriptorChain, message: string): VirtqueueError {
  return new VirtqueueError('malformed-request', `virtio-blk: ${message}`, 0, chain.head);
}
