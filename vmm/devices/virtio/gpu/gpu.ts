/**
 * virtio-gpu, 2D only (virtio 1.2, section 5.7): what Linux's virtio_gpu DRM
 * driver needs for a KMS framebuffer console and a Wayland compositor using
 * dumb buffers, and nothing of 3D (no virgl, blobs, contexts or capsets).
 *
 * Two queues. The control queue carries commands with a device-readable
 * request (a virtio_gpu_ctrl_hdr and its struct; ATTACH_BACKING's entry list
 * follows in the readable area) and a device-writable response (at least a
 * header). The cursor queue carries UPDATE_CURSOR / MOVE_CURSOR, normally
 * without a response buffer.
 *
 * Resources live in host memory: RESOURCE_CREATE_2D allocates width × height
 * × 4 bytes, within a per-device budget (`maxHostBytes`); TRANSFER_TO_HOST_2D
 * copies a rectangle from the resource's backing (a scatter list of guest RAM
 * ranges, each checked when attached) into it; RESOURCE_FLUSH marks what
 * changed on the scanout, and the frame exporter (`frames`, frame-export.ts)
 * reads the host copy when its consumer asks for a frame. The guest never
 * shares memory with the consumer.
 *
 * Commands are executed synchronously and in order, so a fenced command's
 * response (which echoes VIRTIO_GPU_FLAG_FENCE, fence_id and ctx_id) is also
 * its fence completion.
 *
 * Guest errors are answered in-band with VIRTIO_GPU_RESP_ERR_*; only a
 * control chain without room for a response header puts the device into
 * DEVICE_NEEDS_RESET. The cursor queue is fire-and-forget: bad cursor commands
 * are ignored (and answered when the guest gave a response buffer).
 */
import type { GuestMemory } from '../../../memory/guest-memory.js';
import { drainQueue, readConfigBytes } from '../device.js';
import type { VirtioActivation, VirtioDevice, VirtioDeviceHost } from '../device.js';
import { isPowerOfTwo, readSegments, VirtqueueError, writeSegments } from '../queue.js';
import type { DescriptorChain, Virtqueue } from '../queue.js';
import { VIRTIO_ID_GPU } from '../constants.js';
import { generateEdid } from './edid.js';
import { FrameExport } from './frame-export.js';
import type { FrameExportOptions } from './frame-export.js';
import type { PngOptions } from './png.js';
import {
  ATTACH_NR_ENTRIES,
  ATTACH_RESOURCE_ID,
  BYTES_PER_PIXEL,
  CMD_ATTACH_SIZE,
  CMD_CREATE_2D_SIZE,
  CMD_CURSOR_SIZE,
  CMD_FLUSH_SIZE,
  CMD_GET_EDID_SIZE,
  CMD_RESOURCE_ONLY_SIZE,
  CMD_SET_SCANOUT_SIZE,
  CMD_TRANSFER_SIZE,
  CMD_GET_EDID_SCANOUT,
  CREATE_2D_FORMAT,
  CREATE_2D_HEIGHT,
  CREATE_2D_RESOURCE_ID,
  CREATE_2D_WIDTH,
  CTRL_HDR_SIZE,
  CURSOR_HOT_X,
  CURSOR_HOT_Y,
  CURSOR_RESOURCE_ID,
  CURSOR_SCANOUT_ID,
  CURSOR_X,
  CURSOR_Y,
  FLUSH_RECT,
  FLUSH_RESOURCE_ID,
  FORMATS,
  GPU_CONFIG_EVENTS_CLEAR,
  GPU_CONFIG_EVENTS_READ,
  GPU_CONFIG_NUM_SCANOUTS,
  GPU_CONFIG_SIZE,
  GPU_CONTROL_QUEUE,
  GPU_CURSOR_QUEUE,
  HDR_CTX_ID,
  HDR_FENCE_ID,
  HDR_FLAGS,
  HDR_TYPE,
  MAX_FIXED_COMMAND_SIZE,
  MEM_ENTRY_SIZE,
  RESOURCE_ONLY_ID,
  RESP_DISPLAY_INFO_SIZE,
  RESP_EDID_DATA,
  RESP_EDID_SIZE,
  RESP_EDID_SIZE_FIELD,
  SET_SCANOUT_RECT,
  SET_SCANOUT_RESOURCE_ID,
  SET_SCANOUT_SCANOUT_ID,
  TRANSFER_OFFSET,
  TRANSFER_RECT,
  TRANSFER_RESOURCE_ID,
  VIRTIO_GPU_CMD_GET_DISPLAY_INFO,
  VIRTIO_GPU_CMD_GET_EDID,
  VIRTIO_GPU_CMD_MOVE_CURSOR,
  VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING,
  VIRTIO_GPU_CMD_RESOURCE_CREATE_2D,
  VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING,
  VIRTIO_GPU_CMD_RESOURCE_FLUSH,
  VIRTIO_GPU_CMD_RESOURCE_UNREF,
  VIRTIO_GPU_CMD_SET_SCANOUT,
  VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D,
  VIRTIO_GPU_CMD_UPDATE_CURSOR,
  VIRTIO_GPU_EVENT_DISPLAY,
  VIRTIO_GPU_F_EDID,
  VIRTIO_GPU_FLAG_FENCE,
  VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
  VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID,
  VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID,
  VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY,
  VIRTIO_GPU_RESP_ERR_UNSPEC,
  VIRTIO_GPU_RESP_OK_DISPLAY_INFO,
  VIRTIO_GPU_RESP_OK_EDID,
  VIRTIO_GPU_RESP_OK_NODATA,
} from './protocol.js';
import type { FormatLayout, Rect } from './protocol.js';

/** Display size limits for `setDisplaySize` (and the initial size). */
export const DISPLAY_MIN_SIDE = 64;
export const DISPLAY_MAX_SIDE = 3840;
/**
 * Offered widths are whole multiples of this: a guest compositor that makes a
 * mode for a size (CVT, as wlroots does) rounds the width down to 8-pixel
 * character cells, and the offered size should be one it can show exactly.
 */
export const DISPLAY_WIDTH_STEP = 8;
/** At most 3840 × 2400 pixels (about 35 MiB per frame). */
export const DISPLAY_MAX_PIXELS = 3840 * 2400;
export const DEFAULT_DISPLAY = { width: 1280, height: 800 } as const;

/** Default host-memory budget for resources: four frames at the largest display size, plus cursors. */
export const DEFAULT_MAX_HOST_BYTES = 160 * 1024 * 1024;
export const DEFAULT_MAX_RESOURCES = 1024;
/** A resource side may not exceed this (it also bounds per-row loops). */
export const MAX_RESOURCE_SIDE = 16384;
/** A scanout shows at most this many pixels (bounds the export buffers). */
export const MAX_SCANOUT_PIXELS = DISPLAY_MAX_PIXELS;
/** ATTACH_BACKING accepts at most this many entries (QEMU's limit too). */
export const MAX_BACKING_ENTRIES = 16384;
/** Backing may exceed the resource's bytes by page rounding: up to the next multiple of this. */
export const BACKING_ROUNDING = 64 * 1024;
/** Cursor images up to this many pixels per side (Linux uses 64 × 64). */
export const MAX_CURSOR_SIDE = 256;

const DEFAULT_CONTROL_QUEUE_SIZE = 256;
const DEFAULT_CURSOR_QUEUE_SIZE = 16;
/** Longest chain: an ATTACH_BACKING with 16384 entries is 256 KiB; responses are ≤ 1056 bytes. */
const MAX_CHAIN_BYTES = 1024 * 1024;
const NUM_SCANOUTS = 1;

export interface VirtioGpuOptions {
  /** Initial display size (clamped like `setDisplaySize`). Default 1280 × 800. */
  readonly width?: number;
  readonly height?: number;
  /** Budget for all resources' host copies, in bytes. Default 160 MiB. */
  readonly maxHostBytes?: number;
  /** Resources alive at once, at most. Default 1024. */
  readonly maxResources?: number;
  /** QueueNumMax of the control queue. Default 256. */
  readonly controlQueueSize?: number;
  /** QueueNumMax of the cursor queue. Default 16. */
  readonly cursorQueueSize?: number;
  /** Monitor name in the EDID. Default "Belljar". */
  readonly edidName?: string;
  readonly export?: FrameExportOptions;
}

export interface GpuStats {
  /** Control-queue commands answered (including errors). */
  commands: number;
  /** Commands refused with an error (answered, or on the cursor queue ignored when there is no response buffer). */
  errors: number;
  cursorCommands: number;
  transfers: number;
  /** Bytes copied from guest backing into host resources. */
  transferBytes: number;
  flushes: number;
  /** The last error response, for diagnostics. */
  lastError: string | null;
}

interface Backing {
  /** Guest-physical address and length of each entry; `starts` are the prefix sums. */
  readonly addrs: Float64Array;
  readonly lengths: Float64Array;
  readonly starts: Float64Array;
  readonly total: number;
}

interface Resource {
  readonly id: number;
  readonly format: number;
  readonly layout: FormatLayout;
  readonly width: number;
  readonly height: number;
  readonly stride: number;
  readonly pixels: Uint8Array;
  backing: Backing | null;
}

interface Scanout {
  readonly resource: Resource;
  readonly rect: Rect;
}

/** An error response: the type and a message for `stats.lastError`. */
class GpuError {
  constructor(
    readonly type: number,
    readonly message: string,
  ) {}
}

type Answer = number | Uint8Array | GpuError;

const TWO_POW_32 = 0x1_0000_0000;

export class VirtioGpu implements VirtioDevice {
  readonly deviceType = VIRTIO_ID_GPU;
  readonly features = VIRTIO_GPU_F_EDID;
  readonly queueMaxSizes: readonly number[];
  readonly maxChainBytes = MAX_CHAIN_BYTES;
  /** The frame export API for the app (see frame-export.ts). */
  readonly frames: FrameExport;
  readonly maxHostBytes: number;
  readonly maxResources: number;
  readonly stats: GpuStats = {
    commands: 0,
    errors: 0,
    cursorCommands: 0,
    transfers: 0,
    transferBytes: 0,
    flushes: 0,
    lastError: null,
  };

  private width: number;
  private height: number;
  private edid: Uint8Array;
  private readonly edidName: string | undefined;
  private eventsRead = 0;
  private readonly resources = new Map<number, Resource>();
  private usedBytes = 0;
  private scanout: Scanout | null = null;

  private memory: GuestMemory | undefined;
  private controlQueue: Virtqueue | undefined;
  private cursorQueue: Virtqueue | undefined;
  private host: VirtioDeviceHost | undefined;
  private edidNegotiated = false;
  /** The fixed part of each command is copied here once (no double fetch). */
  private readonly command = new Uint8Array(MAX_FIXED_COMMAND_SIZE);
  private readonly commandView = new DataView(this.command.buffer);

  constructor(options: VirtioGpuOptions = {}) {
    const controlSize = options.controlQueueSize ?? DEFAULT_CONTROL_QUEUE_SIZE;
    const cursorSize = options.cursorQueueSize ?? DEFAULT_CURSOR_QUEUE_SIZE;
    for (const [name, size] of [
      ['control', controlSize],
      ['cursor', cursorSize],
    ] as const) {
      if (!isPowerOfTwo(size) || size < 2 || size > 32768) {
        throw new RangeError(`virtio-gpu: ${name} queue size ${size} must be a power of two in 2..32768`);
      }
    }
    this.queueMaxSizes = [controlSize, cursorSize];
    this.maxHostBytes = options.maxHostBytes ?? DEFAULT_MAX_HOST_BYTES;
    if (!Number.isSafeInteger(this.maxHostBytes) || this.maxHostBytes < 0) {
      throw new RangeError(`virtio-gpu: bad maxHostBytes ${this.maxHostBytes}`);
    }
    this.maxResources = options.maxResources ?? DEFAULT_MAX_RESOURCES;
    if (!Number.isSafeInteger(this.maxResources) || this.maxResources < 1) {
      throw new RangeError(`virtio-gpu: bad maxResources ${this.maxResources}`);
    }
    this.edidName = options.edidName;
    const size = clampDisplaySize(options.width ?? DEFAULT_DISPLAY.width, options.height ?? DEFAULT_DISPLAY.height);
    this.width = size.width;
    this.height = size.height;
    this.edid = this.makeEdid();
    this.frames = new FrameExport(options.export);
  }

  // ---------------------------------------------------------------- host API

  /** The display size the guest is offered (GET_DISPLAY_INFO, EDID). */
  get displaySize(): { width: number; height: number } {
    return { width: this.width, height: this.height };
  }

  /**
   * The host window changed size: offer the guest a `width` × `height` mode.
   * Sizes are rounded and clamped to 64..3840 per side and at most 3840 × 2400
   * pixels (scaled down keeping the aspect ratio), the width down to a
   * multiple of 8. If the size changed, sets
   * VIRTIO_GPU_EVENT_DISPLAY and raises a config-change interrupt; the guest
   * driver then re-reads the display info and EDID, and the compositor
   * switches mode. Returns the size actually offered.
   */
  setDisplaySize(width: number, height: number): { width: number; height: number } {
    const size = clampDisplaySize(width, height);
    if (size.width === this.width && size.height === this.height) return size;
    this.width = size.width;
    this.height = size.height;
    this.edid = this.makeEdid();
    this.eventsRead |= VIRTIO_GPU_EVENT_DISPLAY;
    this.host?.signalConfigChange();
    return size;
  }

  /** Bytes of host memory held by resources now. */
  get hostBytes(): number {
    return this.usedBytes;
  }

  get resourceCount(): number {
    return this.resources.size;
  }

  /** The current screen as a PNG (black at the display size when the guest shows nothing). */
  snapshotPng(options?: PngOptions): Buffer {
    return this.frames.snapshotPng(this.displaySize, options);
  }

  // ---------------------------------------------------------------- VirtioDevice

  readConfig(offset: number, data: Uint8Array): void {
    const config = new Uint8Array(GPU_CONFIG_SIZE);
    const view = new DataView(config.buffer);
    view.setUint32(GPU_CONFIG_EVENTS_READ, this.eventsRead, true);
    view.setUint32(GPU_CONFIG_NUM_SCANOUTS, NUM_SCANOUTS, true);
    // events_clear reads as 0; num_capsets is 0 (no virgl).
    readConfigBytes(config, offset, data);
  }

  writeConfig(offset: number, data: Uint8Array): void {
    // Only events_clear is writable: each 1 bit written clears that bit of events_read.
    let clear = 0;
    for (let i = 0; i < data.length; i++) {
      const at = offset + i - GPU_CONFIG_EVENTS_CLEAR;
      if (at >= 0 && at < 4) clear |= data[i]! << (8 * at);
    }
    this.eventsRead &= ~clear;
  }

  activate(ctx: VirtioActivation): void {
    const control = ctx.queues[GPU_CONTROL_QUEUE];
    if (!control) throw new Error('virtio-gpu: the control queue was not set up');
    this.memory = ctx.memory;
    this.controlQueue = control;
    // Linux always sets up the cursor queue; without it cursor commands are simply not possible.
    this.cursorQueue = ctx.queues[GPU_CURSOR_QUEUE];
    this.host = ctx.host;
    this.edidNegotiated = (ctx.features & VIRTIO_GPU_F_EDID) !== 0n;
  }

  processQueue(index: number): void {
    const host = this.host;
    if (!host) return;
    if (index === GPU_CONTROL_QUEUE && this.controlQueue) {
      drainQueue(this.controlQueue, index, host, (chain) => this.handleControl(chain));
    } else if (index === GPU_CURSOR_QUEUE && this.cursorQueue) {
      drainQueue(this.cursorQueue, index, host, (chain) => this.handleCursor(chain));
    }
  }

  /** Device reset: every resource is freed and the screen goes blank. The display size stays. */
  reset(): void {
    this.memory = undefined;
    this.controlQueue = undefined;
    this.cursorQueue = undefined;
    this.host = undefined;
    this.edidNegotiated = false;
    this.resources.clear();
    this.usedBytes = 0;
    this.scanout = null;
    this.eventsRead = 0;
    this.frames.reset();
  }

  // ---------------------------------------------------------------- control queue

  private handleControl(chain: DescriptorChain): number | VirtqueueError {
    const memory = this.memory;
    if (!memory) return new VirtqueueError('not-ready', 'virtio-gpu is not active', GPU_CONTROL_QUEUE, chain.head);
    const writable = chain.writableBytes;
    if (writable < CTRL_HDR_SIZE) {
      return new VirtqueueError(
        'malformed-request',
        `virtio-gpu: control command has ${writable} writable bytes, a response needs ${CTRL_HDR_SIZE}`,
        GPU_CONTROL_QUEUE,
        chain.head,
      );
    }
    this.stats.commands++;
    const readable = chain.readableBytes;
    const length = Math.min(readable, MAX_FIXED_COMMAND_SIZE);
    const command = this.command;
    command.fill(0);
    readSegments(memory, chain.readable, 0, command.subarray(0, length));

    let answer: Answer;
    let fenced = false;
    if (readable < CTRL_HDR_SIZE) {
      answer = new GpuError(VIRTIO_GPU_RESP_ERR_UNSPEC, `command of ${readable} bytes has no complete header`);
    } else {
      fenced = (this.commandView.getUint32(HDR_FLAGS, true) & VIRTIO_GPU_FLAG_FENCE) !== 0;
      answer = this.execute(memory, chain, readable);
    }
    return this.respond(memory, chain, answer, fenced);
  }

  /** Run one control command whose header is in `this.command`. */
  private execute(memory: GuestMemory, chain: DescriptorChain, readable: number): Answer {
    const view = this.commandView;
    const type = view.getUint32(HDR_TYPE, true);
    const needs = (size: number): GpuError | null =>
      readable < size
        ? new GpuError(VIRTIO_GPU_RESP_ERR_UNSPEC, `command 0x${hex(type)} needs ${size} bytes, got ${readable}`)
        : null;
    switch (type) {
      case VIRTIO_GPU_CMD_GET_DISPLAY_INFO:
        return this.displayInfo();
      case VIRTIO_GPU_CMD_GET_EDID:
        return needs(CMD_GET_EDID_SIZE) ?? this.getEdid(view.getUint32(CMD_GET_EDID_SCANOUT, true));
      case VIRTIO_GPU_CMD_RESOURCE_CREATE_2D:
        return (
          needs(CMD_CREATE_2D_SIZE) ??
          this.create2d(
            view.getUint32(CREATE_2D_RESOURCE_ID, true),
            view.getUint32(CREATE_2D_FORMAT, true),
            view.getUint32(CREATE_2D_WIDTH, true),
            view.getUint32(CREATE_2D_HEIGHT, true),
          )
        );
      case VIRTIO_GPU_CMD_RESOURCE_UNREF:
        return needs(CMD_RESOURCE_ONLY_SIZE) ?? this.unref(view.getUint32(RESOURCE_ONLY_ID, true));
      case VIRTIO_GPU_CMD_SET_SCANOUT:
        return (
          needs(CMD_SET_SCANOUT_SIZE) ??
          this.setScanout(
            view.getUint32(SET_SCANOUT_SCANOUT_ID, true),
            view.getUint32(SET_SCANOUT_RESOURCE_ID, true),
            readRect(view, SET_SCANOUT_RECT),
          )
        );
      case VIRTIO_GPU_CMD_RESOURCE_FLUSH:
        return needs(CMD_FLUSH_SIZE) ?? this.flush(view.getUint32(FLUSH_RESOURCE_ID, true), readRect(view, FLUSH_RECT));
      case VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D:
        return (
          needs(CMD_TRANSFER_SIZE) ??
          this.transfer(
            memory,
            view.getUint32(TRANSFER_RESOURCE_ID, true),
            readRect(view, TRANSFER_RECT),
            view.getBigUint64(TRANSFER_OFFSET, true),
          )
        );
      case VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING:
        return (
          needs(CMD_ATTACH_SIZE) ??
          this.attachBacking(
            memory,
            chain,
            readable,
            view.getUint32(ATTACH_RESOURCE_ID, true),
            view.getUint32(ATTACH_NR_ENTRIES, true),
          )
        );
      case VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING:
        return needs(CMD_RESOURCE_ONLY_SIZE) ?? this.detachBacking(view.getUint32(RESOURCE_ONLY_ID, true));
      default:
        // Cursor commands on the control queue, 3D, blob, UUID and capset commands, garbage.
        return new GpuError(VIRTIO_GPU_RESP_ERR_UNSPEC, `unsupported command 0x${hex(type)}`);
    }
  }

  /**
   * Write the response: `answer` is a response type (header only), a full
   * response (its header's type already set) or an error. A response that does
   * not fit the writable buffers is replaced by an ERR_UNSPEC header (which
   * always fits: the caller checked for 24 bytes). Returns the used length.
   */
  private respond(memory: GuestMemory, chain: DescriptorChain, answer: Answer, fenced: boolean): number {
    let response: Uint8Array;
    if (answer instanceof GpuError) {
      response = this.errorHeader(answer);
    } else if (typeof answer === 'number') {
      response = new Uint8Array(CTRL_HDR_SIZE);
      new DataView(response.buffer).setUint32(HDR_TYPE, answer, true);
    } else {
      response = answer;
    }
    if (response.length > chain.writableBytes) {
      response = this.errorHeader(
        new GpuError(
          VIRTIO_GPU_RESP_ERR_UNSPEC,
          `response of ${response.length} bytes does not fit ${chain.writableBytes} writable bytes`,
        ),
      );
    }
    if (fenced) {
      // Fence completion: the command is done by the time its response is used.
      const out = new DataView(response.buffer, response.byteOffset, response.byteLength);
      out.setUint32(HDR_FLAGS, VIRTIO_GPU_FLAG_FENCE, true);
      out.setBigUint64(HDR_FENCE_ID, this.commandView.getBigUint64(HDR_FENCE_ID, true), true);
      out.setUint32(HDR_CTX_ID, this.commandView.getUint32(HDR_CTX_ID, true), true);
    }
    writeSegments(memory, chain.writable, 0, response);
    return response.length;
  }

  private recordError(error: GpuError): void {
    this.stats.errors++;
    this.stats.lastError = error.message;
  }

  private errorHeader(error: GpuError): Uint8Array {
    this.recordError(error);
    const header = new Uint8Array(CTRL_HDR_SIZE);
    new DataView(header.buffer).setUint32(HDR_TYPE, error.type, true);
    return header;
  }

  // ---------------------------------------------------------------- commands

  private displayInfo(): Uint8Array {
    const response = new Uint8Array(RESP_DISPLAY_INFO_SIZE);
    const view = new DataView(response.buffer);
    view.setUint32(HDR_TYPE, VIRTIO_GPU_RESP_OK_DISPLAY_INFO, true);
    // pmodes[0]: r = {0, 0, width, height}, enabled = 1, flags = 0; the other 15 stay zero (disabled).
    const at = CTRL_HDR_SIZE;
    view.setUint32(at + 8, this.width, true);
    view.setUint32(at + 12, this.height, true);
    view.setUint32(at + 16, 1, true);
    return response;
  }

  private getEdid(scanout: number): Answer {
    if (!this.edidNegotiated) return new GpuError(VIRTIO_GPU_RESP_ERR_UNSPEC, 'GET_EDID without VIRTIO_GPU_F_EDID');
    if (scanout >= NUM_SCANOUTS) {
      return new GpuError(VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID, `GET_EDID: no scanout ${scanout}`);
    }
    const response = new Uint8Array(RESP_EDID_SIZE);
    const view = new DataView(response.buffer);
    view.setUint32(HDR_TYPE, VIRTIO_GPU_RESP_OK_EDID, true);
    view.setUint32(RESP_EDID_SIZE_FIELD, this.edid.length, true);
    response.set(this.edid, RESP_EDID_DATA);
    return response;
  }

  private create2d(id: number, format: number, width: number, height: number): Answer {
    if (id === 0 || this.resources.has(id)) {
      return new GpuError(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, `CREATE_2D: resource id ${id} is 0 or in use`);
    }
    const layout = FORMATS.get(format);
    if (!layout) return new GpuError(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, `CREATE_2D: unsupported format ${format}`);
    if (width < 1 || height < 1 || width > MAX_RESOURCE_SIDE || height > MAX_RESOURCE_SIDE) {
      return new GpuError(VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, `CREATE_2D: bad size ${width}x${height}`);
    }
    const bytes = width * height * BYTES_PER_PIXEL;
    if (this.resources.size >= this.maxResources || bytes > this.maxHostBytes - this.usedBytes) {
      return new GpuError(
        VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY,
        `CREATE_2D: ${bytes} bytes for resource ${id} exceed the budget (${this.usedBytes} of ${this.maxHostBytes} used, ${this.resources.size} resources)`,
      );
    }
    let pixels: Uint8Array;
    try {
      pixels = new Uint8Array(bytes);
    } catch {
      return new GpuError(VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY, `CREATE_2D: host allocation of ${bytes} bytes failed`);
    }
    this.resources.set(id, {
      id,
      format,
      layout,
      width,
      height,
      stride: width * BYTES_PER_PIXEL,
      pixels,
      backing: null,
    });
    this.usedBytes += bytes;
    return VIRTIO_GPU_RESP_OK_NODATA;
  }

  private unref(id: number): Answer {
    const resource = this.resources.get(id);
    if (!resource) return noResource('RESOURCE_UNREF', id);
    if (this.scanout?.resource === resource) this.disableScanout();
    this.resources.delete(id);
    this.usedBytes -= resource.pixels.length;
    return VIRTIO_GPU_RESP_OK_NODATA;
  }

  private setScanout(scanoutId: number, resourceId: number, rect: Rect): Answer {
    if (scanoutId >= NUM_SCANOUTS) {
      return new GpuError(VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID, `SET_SCANOUT: no scanout ${scanoutId}`);
    }
    if (resourceId === 0) {
      this.disableScanout();
      return VIRTIO_GPU_RESP_OK_NODATA;
    }
    const resource = this.resources.get(resourceId);
    if (!resource) return noResource('SET_SCANOUT', resourceId);
    if (
      rect.width < 1 ||
      rect.height < 1 ||
      !insideResource(rect, resource) ||
      rect.width * rect.height > MAX_SCANOUT_PIXELS
    ) {
      return badRect('SET_SCANOUT', rect, resource);
    }
    this.scanout = { resource, rect };
    this.frames.setSource({
      resourceId: resource.id,
      pixels: resource.pixels,
      stride: resource.stride,
      layout: resource.layout,
      rect,
    });
    return VIRTIO_GPU_RESP_OK_NODATA;
  }

  private disableScanout(): void {
    this.scanout = null;
    this.frames.setSource(null);
  }

  private flush(resourceId: number, rect: Rect): Answer {
    const resource = this.resources.get(resourceId);
    if (!resource) return noResource('RESOURCE_FLUSH', resourceId);
    if (!insideResource(rect, resource)) return badRect('RESOURCE_FLUSH', rect, resource);
    this.stats.flushes++;
    const scanout = this.scanout;
    if (scanout?.resource === resource) {
      // The flushed rectangle in screen coordinates (the scanout shows scanout.rect of the resource).
      const s = scanout.rect;
      const x0 = Math.max(rect.x, s.x);
      const y0 = Math.max(rect.y, s.y);
      const x1 = Math.min(rect.x + rect.width, s.x + s.width);
      const y1 = Math.min(rect.y + rect.height, s.y + s.height);
      if (x0 < x1 && y0 < y1) this.frames.addDamage({ x: x0 - s.x, y: y0 - s.y, width: x1 - x0, height: y1 - y0 });
    }
    return VIRTIO_GPU_RESP_OK_NODATA;
  }

  private transfer(memory: GuestMemory, resourceId: number, rect: Rect, offset: bigint): Answer {
    const resource = this.resources.get(resourceId);
    if (!resource) return noResource('TRANSFER_TO_HOST_2D', resourceId);
    const backing = resource.backing;
    if (!backing) {
      return new GpuError(VIRTIO_GPU_RESP_ERR_UNSPEC, `TRANSFER_TO_HOST_2D: resource ${resourceId} has no backing`);
    }
    if (!insideResource(rect, resource)) return badRect('TRANSFER_TO_HOST_2D', rect, resource);
    this.stats.transfers++;
    if (rect.width === 0 || rect.height === 0) return VIRTIO_GPU_RESP_OK_NODATA;
    // Row r of the rectangle is at backing[offset + r × stride, + width × 4): the
    // backing has the resource's layout, starting `offset` bytes in.
    const stride = resource.stride;
    const rowBytes = rect.width * BYTES_PER_PIXEL;
    const span = stride * (rect.height - 1) + rowBytes;
    if (offset > BigInt(backing.total) || Number(offset) + span > backing.total) {
      return new GpuError(
        VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
        `TRANSFER_TO_HOST_2D: offset ${offset} + ${span} bytes exceeds the ${backing.total}-byte backing`,
      );
    }
    const start = Number(offset);
    const destination = rect.y * stride + rect.x * BYTES_PER_PIXEL;
    if (rowBytes === stride) {
      copyFromBacking(memory, backing, start, resource.pixels, destination, span);
    } else {
      for (let row = 0; row < rect.height; row++) {
        copyFromBacking(memory, backing, start + row * stride, resource.pixels, destination + row * stride, rowBytes);
      }
    }
    this.stats.transferBytes += rowBytes * rect.height;
    return VIRTIO_GPU_RESP_OK_NODATA;
  }

  private attachBacking(
    memory: GuestMemory,
    chain: DescriptorChain,
    readable: number,
    resourceId: number,
    count: number,
  ): Answer {
    const resource = this.resources.get(resourceId);
    if (!resource) return noResource('RESOURCE_ATTACH_BACKING', resourceId);
    if (resource.backing) {
      return new GpuError(VIRTIO_GPU_RESP_ERR_UNSPEC, `ATTACH_BACKING: resource ${resourceId} already has backing`);
    }
    if (count < 1 || count > MAX_BACKING_ENTRIES) {
      return new GpuError(
        VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
        `ATTACH_BACKING: ${count} entries (1..${MAX_BACKING_ENTRIES} allowed)`,
      );
    }
    const bytes = count * MEM_ENTRY_SIZE;
    if (readable - CMD_ATTACH_SIZE < bytes) {
      return new GpuError(
        VIRTIO_GPU_RESP_ERR_UNSPEC,
        `ATTACH_BACKING: ${count} entries need ${bytes} bytes after the command, got ${readable - CMD_ATTACH_SIZE}`,
      );
    }
    const entries = new Uint8Array(bytes);
    readSegments(memory, chain.readable, CMD_ATTACH_SIZE, entries);
    const view = new DataView(entries.buffer);
    const limit = Math.ceil(resource.pixels.length / BACKING_ROUNDING) * BACKING_ROUNDING;
    const addrs = new Float64Array(count);
    const lengths = new Float64Array(count);
    const starts = new Float64Array(count);
    let total = 0;
    for (let i = 0; i < count; i++) {
      const at = i * MEM_ENTRY_SIZE;
      const high = view.getUint32(at + 4, true);
      const addr = high * TWO_POW_32 + view.getUint32(at, true); // inexact ≥ 2^53: contains() refuses it
      const length = view.getUint32(at + 8, true);
      if (!Number.isSafeInteger(addr) || !memory.contains(addr, length)) {
        return new GpuError(
          VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
          `ATTACH_BACKING: entry ${i} (0x${high.toString(16)}${hex(view.getUint32(at, true)).padStart(8, '0')} +${length}) is outside guest RAM`,
        );
      }
      addrs[i] = addr;
      lengths[i] = length;
      starts[i] = total;
      total += length;
      if (total > limit) {
        return new GpuError(
          VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
          `ATTACH_BACKING: entries exceed ${limit} bytes (resource ${resourceId} is ${resource.pixels.length} bytes)`,
        );
      }
    }
    resource.backing = { addrs, lengths, starts, total };
    return VIRTIO_GPU_RESP_OK_NODATA;
  }

  private detachBacking(resourceId: number): Answer {
    const resource = this.resources.get(resourceId);
    if (!resource) return noResource('RESOURCE_DETACH_BACKING', resourceId);
    if (!resource.backing) {
      return new GpuError(VIRTIO_GPU_RESP_ERR_UNSPEC, `DETACH_BACKING: resource ${resourceId} has no backing`);
    }
    resource.backing = null;
    return VIRTIO_GPU_RESP_OK_NODATA;
  }

  // ---------------------------------------------------------------- cursor queue

  private handleCursor(chain: DescriptorChain): number {
    const memory = this.memory;
    if (!memory) return 0;
    this.stats.cursorCommands++;
    const readable = chain.readableBytes;
    const command = this.command;
    command.fill(0);
    readSegments(memory, chain.readable, 0, command.subarray(0, Math.min(readable, CMD_CURSOR_SIZE)));
    const view = this.commandView;
    let answer: Answer;
    if (readable < CMD_CURSOR_SIZE) {
      answer = new GpuError(
        VIRTIO_GPU_RESP_ERR_UNSPEC,
        `cursor command of ${readable} bytes (needs ${CMD_CURSOR_SIZE})`,
      );
    } else {
      answer = this.cursorCommand(view);
    }
    const fenced = readable >= CTRL_HDR_SIZE && (view.getUint32(HDR_FLAGS, true) & VIRTIO_GPU_FLAG_FENCE) !== 0;
    // Linux sends cursor commands without a response buffer; answer only when there is room.
    if (chain.writableBytes < CTRL_HDR_SIZE) {
      if (answer instanceof GpuError) this.recordError(answer);
      return 0;
    }
    return this.respond(memory, chain, answer, fenced);
  }

  private cursorCommand(view: DataView): Answer {
    const type = view.getUint32(HDR_TYPE, true);
    if (type !== VIRTIO_GPU_CMD_UPDATE_CURSOR && type !== VIRTIO_GPU_CMD_MOVE_CURSOR) {
      return new GpuError(VIRTIO_GPU_RESP_ERR_UNSPEC, `unsupported cursor command 0x${hex(type)}`);
    }
    const scanoutId = view.getUint32(CURSOR_SCANOUT_ID, true);
    if (scanoutId >= NUM_SCANOUTS) {
      return new GpuError(VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID, `cursor command for scanout ${scanoutId}`);
    }
    // Positions are the image's top-left corner; Linux sends negative values as u32.
    const x = view.getInt32(CURSOR_X, true);
    const y = view.getInt32(CURSOR_Y, true);
    if (type === VIRTIO_GPU_CMD_MOVE_CURSOR) {
      this.frames.moveCursor(x, y);
      return VIRTIO_GPU_RESP_OK_NODATA;
    }
    const resourceId = view.getUint32(CURSOR_RESOURCE_ID, true);
    if (resourceId === 0) {
      this.frames.hideCursor(x, y);
      return VIRTIO_GPU_RESP_OK_NODATA;
    }
    const resource = this.resources.get(resourceId);
    if (!resource) return noResource('UPDATE_CURSOR', resourceId);
    if (resource.width > MAX_CURSOR_SIDE || resource.height > MAX_CURSOR_SIDE) {
      return new GpuError(
        VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
        `UPDATE_CURSOR: resource ${resourceId} is ${resource.width}x${resource.height}, cursors are at most ${MAX_CURSOR_SIDE}x${MAX_CURSOR_SIDE}`,
      );
    }
    const hotX = Math.min(view.getUint32(CURSOR_HOT_X, true), resource.width - 1);
    const hotY = Math.min(view.getUint32(CURSOR_HOT_Y, true), resource.height - 1);
    this.frames.defineCursor(
      resource.pixels,
      resource.stride,
      resource.width,
      resource.height,
      resource.layout,
      hotX,
      hotY,
      x,
      y,
    );
    return VIRTIO_GPU_RESP_OK_NODATA;
  }

  private makeEdid(): Uint8Array {
    return generateEdid(this.width, this.height, this.edidName === undefined ? {} : { name: this.edidName });
  }
}

/**
 * Round and clamp a requested display size to 64..3840 per side and at most
 * DISPLAY_MAX_PIXELS (scaled down, keeping the aspect ratio). Throws only for
 * values that are not finite numbers.
 */
export function clampDisplaySize(width: number, height: number): { width: number; height: number } {
  if (!Number.isFinite(width) || !Number.isFinite(height)) {
    throw new RangeError(`virtio-gpu: display size ${width}x${height} is not finite`);
  }
  const clamp = (v: number): number => Math.min(DISPLAY_MAX_SIDE, Math.max(DISPLAY_MIN_SIDE, Math.round(v)));
  let w = clamp(width);
  let h = clamp(height);
  if (w * h > DISPLAY_MAX_PIXELS) {
    const scale = Math.sqrt(DISPLAY_MAX_PIXELS / (w * h));
    w = Math.max(DISPLAY_MIN_SIDE, Math.floor(w * scale));
    h = Math.max(DISPLAY_MIN_SIDE, Math.floor(h * scale));
  }
  return { width: w - (w % DISPLAY_WIDTH_STEP), height: h };
}

function readRect(view: DataView, at: number): Rect {
  return {
    x: view.getUint32(at, true),
    y: view.getUint32(at + 4, true),
    width: view.getUint32(at + 8, true),
    height: view.getUint32(at + 12, true),
  };
}

/** The rectangle lies inside the resource (u32 fields: the sums are exact in doubles). */
function insideResource(rect: Rect, resource: Resource): boolean {
  return rect.x + rect.width <= resource.width && rect.y + rect.height <= resource.height;
}

function noResource(command: string, id: number): GpuError {
  return new GpuError(VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, `${command}: no resource ${id}`);
}

function badRect(command: string, rect: Rect, resource: Resource): GpuError {
  return new GpuError(
    VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
    `${command}: rectangle ${rect.width}x${rect.height}+${rect.x}+${rect.y} does not fit resource ${resource.id} (${resource.width}x${resource.height})`,
  );
}

function hex(value: number): string {
  return value.toString(16);
}

/**
 * Copy `length` bytes starting `offset` bytes into the backing into `into` at
 * `at`. The caller checked offset + length ≤ backing.total; every entry was
 * checked against guest RAM when attached, and `slice` checks again.
 */
function copyFromBacking(
  memory: GuestMemory,
  backing: Backing,
  offset: number,
  into: Uint8Array,
  at: number,
  length: number,
): void {
  const { addrs, lengths, starts } = backing;
  // Last entry starting at or before `offset`.
  let lo = 0;
  let hi = starts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (starts[mid]! <= offset) lo = mid;
    else hi = mid - 1;
  }
  let left = length;
  for (let i = lo; left > 0 && i < addrs.length; i++) {
    const skip = offset - starts[i]!;
    const available = lengths[i]! - skip;
    if (available <= 0) continue; // zero-length entries
    const n = Math.min(available, left);
    into.set(memory.slice(addrs[i]! + skip, n), at);
    at += n;
    offset += n;
    left -= n;
  }
  if (left !== 0) throw new RangeError(`virtio-gpu: backing copy ran out of entries (${left} bytes left)`);
}
