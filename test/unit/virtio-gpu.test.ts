/**
 * virtio-gpu driven through the virtio-mmio transport the way Linux's
 * virtio_gpu driver does it: GET_EDID / GET_DISPLAY_INFO at probe, dumb
 * buffers (create 2D, attach backing, set scanout, transfer, flush), the
 * cursor queue, fences, the display-change event — and hostile guests.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory } from '../../vmm/memory/guest-memory.js';
import { VirtioMmioTransport } from '../../vmm/devices/virtio/mmio-transport.js';
import {
  MMIO_CONFIG,
  MMIO_DEVICE_ID,
  STATUS_DEVICE_NEEDS_RESET,
  VIRTIO_F_VERSION_1,
} from '../../vmm/devices/virtio/constants.js';
import { VirtioGpu } from '../../vmm/devices/virtio/gpu/gpu.js';
import type { VirtioGpuOptions } from '../../vmm/devices/virtio/gpu/gpu.js';
import type { DisplayFrame } from '../../vmm/devices/virtio/gpu/frame-export.js';
import { edidChecksum } from '../../vmm/devices/virtio/gpu/edid.js';
import {
  FORMATS,
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
  VIRTIO_GPU_F_EDID,
  VIRTIO_GPU_FLAG_FENCE,
  VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM,
  VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM,
  VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM,
  VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
  VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID,
  VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID,
  VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY,
  VIRTIO_GPU_RESP_ERR_UNSPEC,
  VIRTIO_GPU_RESP_OK_DISPLAY_INFO,
  VIRTIO_GPU_RESP_OK_EDID,
  VIRTIO_GPU_RESP_OK_NODATA,
} from '../../vmm/devices/virtio/gpu/protocol.js';
import type { GuestBuffer, GuestRing } from './virtio-harness.js';
import { assertChangedOnlyIn, FakeIrq, GuestDriver, read32, snapshot, write32 } from './virtio-harness.js';

const RAM = 0x80_0000; // 8 MiB
const CTRL_RING = 0x1000;
const CURSOR_RING = 0x3000;
const CMD = 0x4000;
const RESP = 0x5000;
const RESP_AREA = 0x800;
const ENTRIES = 0x1_0000;
const FB = 0x10_0000;
const CURSOR_FB = 0x70_0000;
const PAGE = 4096;

type Field = number | bigint;

/** A command: header (type, flags, fence_id, ctx_id, ring_idx) then u32 (number) and u64 (bigint) fields. */
function command(type: number, fields: readonly Field[] = [], fence?: { id: bigint; ctx: number }): Uint8Array {
  let size = 24;
  for (const f of fields) size += typeof f === 'bigint' ? 8 : 4;
  const bytes = new Uint8Array(size);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, type >>> 0, true);
  if (fence) {
    view.setUint32(4, VIRTIO_GPU_FLAG_FENCE, true);
    view.setBigUint64(8, fence.id, true);
    view.setUint32(16, fence.ctx, true);
  }
  let at = 24;
  for (const f of fields) {
    if (typeof f === 'bigint') {
      view.setBigUint64(at, f, true);
      at += 8;
    } else {
      view.setUint32(at, f >>> 0, true);
      at += 4;
    }
  }
  return bytes;
}

function memEntries(entries: readonly { addr: bigint | number; len: number }[]): Uint8Array {
  return command(
    0,
    entries.flatMap((e) => [BigInt(e.addr), e.len, 0]),
  ).subarray(24);
}

interface Response {
  readonly type: number;
  readonly flags: number;
  readonly fenceId: bigint;
  readonly ctxId: number;
  readonly usedLen: number;
  /** The bytes the device wrote (usedLen of them). */
  readonly bytes: Uint8Array;
}

interface SendOptions {
  /** Device-readable bytes after the command (ATTACH_BACKING's entries). */
  readonly extra?: Uint8Array;
  /** Writable response buffer size. Default 0x800. */
  readonly respLen?: number;
  /** Cut the command to this many readable bytes. */
  readonly cmdLen?: number;
}

class Guest {
  readonly memory: GuestMemory;
  readonly irq = new FakeIrq();
  readonly gpu: VirtioGpu;
  readonly transport: VirtioMmioTransport;
  readonly driver: GuestDriver;
  readonly ctrl: GuestRing;
  readonly cursor: GuestRing;

  constructor(options: VirtioGpuOptions = {}, accept?: (offered: bigint) => bigint) {
    this.memory = GuestMemory.allocate(RAM);
    this.gpu = new VirtioGpu(options);
    this.transport = new VirtioMmioTransport(this.gpu, this.memory, this.irq);
    this.driver = new GuestDriver(this.transport, this.memory);
    assert.ok(this.driver.negotiate(accept));
    this.ctrl = this.driver.setupQueue(0, CTRL_RING);
    this.cursor = this.driver.setupQueue(1, CURSOR_RING);
    this.driver.driverOk();
  }

  get needsReset(): boolean {
    return (this.driver.status & STATUS_DEVICE_NEEDS_RESET) !== 0;
  }

  /** Ranges the device may write during a command: the response buffer and both rings. */
  get deviceAreas(): [number, number][] {
    return [
      [RESP, RESP_AREA],
      [this.ctrl.base, this.ctrl.byteLength],
      [this.cursor.base, this.cursor.byteLength],
    ];
  }

  /** Submit a chain on `queue` and run it; returns the used element. */
  submit(queue: 0 | 1, buffers: GuestBuffer[]): { id: number; len: number } {
    const ring = queue === 0 ? this.ctrl : this.cursor;
    const before = ring.usedIdx;
    const head = ring.addChain(buffers);
    this.driver.notify(queue); // the harness asserts that nothing throws
    assert.equal(ring.usedIdx, (before + 1) & 0xffff, 'the chain was used');
    const used = ring.usedElem(before);
    assert.equal(used.id, head);
    return used;
  }

  /** Send a control command (header | payload | entries → response) and return the response. */
  send(cmd: Uint8Array, options: SendOptions = {}): Response {
    const respLen = options.respLen ?? RESP_AREA;
    const cmdLen = options.cmdLen ?? cmd.length;
    this.memory.write(CMD, cmd.subarray(0, cmdLen));
    this.memory.fill(RESP, RESP_AREA, 0xee);
    const buffers: GuestBuffer[] = [];
    if (cmdLen > 0) buffers.push({ addr: CMD, len: cmdLen, writable: false });
    if (options.extra) {
      this.memory.write(ENTRIES, options.extra);
      buffers.push({ addr: ENTRIES, len: options.extra.length, writable: false });
    }
    if (respLen > 0) buffers.push({ addr: RESP, len: respLen, writable: true });
    const used = this.submit(0, buffers);
    assert.equal(
      this.needsReset,
      false,
      `device healthy after command 0x${new DataView(cmd.buffer).getUint32(0, true).toString(16)}`,
    );
    const bytes = this.memory.read(RESP, used.len);
    assert.ok(
      this.memory.read(RESP + used.len, RESP_AREA - used.len).every((b) => b === 0xee),
      'nothing written past the used length',
    );
    const view = new DataView(bytes.buffer);
    return {
      type: used.len >= 4 ? view.getUint32(0, true) : -1,
      flags: used.len >= 8 ? view.getUint32(4, true) : -1,
      fenceId: used.len >= 16 ? view.getBigUint64(8, true) : -1n,
      ctxId: used.len >= 20 ? view.getUint32(16, true) : -1,
      usedLen: used.len,
      bytes,
    };
  }

  /** Send and expect response type `type` (a plain header). */
  expect(cmd: Uint8Array, type: number, options?: SendOptions): Response {
    const r = this.send(cmd, options);
    assert.equal(
      r.type,
      type,
      `command 0x${new DataView(cmd.buffer).getUint32(0, true).toString(16)}: response 0x${r.type.toString(16)} (${this.gpu.stats.lastError})`,
    );
    return r;
  }

  ok(cmd: Uint8Array, options?: SendOptions): Response {
    return this.expect(cmd, VIRTIO_GPU_RESP_OK_NODATA, options);
  }

  /** A cursor-queue command the Linux way: one readable buffer, no response. */
  cursorCommand(cmd: Uint8Array): void {
    this.memory.write(CMD, cmd);
    const used = this.submit(1, [{ addr: CMD, len: cmd.length, writable: false }]);
    assert.equal(used.len, 0);
  }
}

/** The test pattern in B8G8R8X8: B = x, G = y, R = 3(x + y), X = 0x5a (must not reach the export). */
function patternPixel(x: number, y: number): [number, number, number, number] {
  return [x & 0xff, y & 0xff, (3 * (x + y)) & 0xff, 0x5a];
}

/** A linear framebuffer in guest RAM made of pages in reverse order, like a fragmented shmem object. */
class GuestFramebuffer {
  readonly pages: number;
  constructor(
    readonly guest: Guest,
    readonly width: number,
    readonly height: number,
    readonly base = FB,
  ) {
    this.pages = Math.ceil((width * height * 4) / PAGE);
  }
  /** Guest-physical address of linear byte `offset`. */
  addr(offset: number): number {
    const page = Math.floor(offset / PAGE);
    return this.base + (this.pages - 1 - page) * PAGE + (offset % PAGE);
  }
  entries(): Uint8Array {
    return memEntries(Array.from({ length: this.pages }, (_, i) => ({ addr: this.addr(i * PAGE), len: PAGE })));
  }
  put(x: number, y: number, px: readonly number[]): void {
    const offset = (y * this.width + x) * 4;
    for (let i = 0; i < 4; i++) this.guest.memory.writeU8(this.addr(offset + i), px[i]!);
  }
  fill(
    pixel: (x: number, y: number) => readonly number[],
    rect = { x: 0, y: 0, width: this.width, height: this.height },
  ): void {
    for (let y = rect.y; y < rect.y + rect.height; y++) {
      for (let x = rect.x; x < rect.x + rect.width; x++) this.put(x, y, pixel(x, y));
    }
  }
}

/** The full mode-set path: create, attach backing, fill, set scanout, transfer all, flush all. */
function modeset(guest: Guest, width: number, height: number, id = 1, format = VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM) {
  const fb = new GuestFramebuffer(guest, width, height);
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [id, format, width, height]));
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, [id, fb.pages]), { extra: fb.entries() });
  fb.fill(patternPixel);
  guest.ok(command(VIRTIO_GPU_CMD_SET_SCANOUT, [0, 0, width, height, 0, id]));
  guest.ok(command(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, [0, 0, width, height, 0n, id, 0]));
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_FLUSH, [0, 0, width, height, id, 0]));
  return fb;
}

function transferAndFlush(
  guest: Guest,
  id: number,
  width: number,
  r: { x: number; y: number; width: number; height: number },
) {
  const offset = BigInt((r.y * width + r.x) * 4);
  guest.ok(command(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, [r.x, r.y, r.width, r.height, offset, id, 0]));
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_FLUSH, [r.x, r.y, r.width, r.height, id, 0]));
}

/** Assert that a frame rectangle holds `expected(x, y)` as RGBA. */
function assertRectPixels(
  rect: DisplayFrame['rects'][number],
  expected: (x: number, y: number) => readonly number[],
  message = '',
): void {
  assert.equal(rect.pixels.length, rect.width * rect.height * 4);
  for (let y = 0; y < rect.height; y++) {
    for (let x = 0; x < rect.width; x++) {
      const at = (y * rect.width + x) * 4;
      const got = [...rect.pixels.subarray(at, at + 4)];
      const want = [...expected(rect.x + x, rect.y + y)];
      if (got.join() !== want.join()) {
        assert.deepEqual(got, want, `${message} pixel (${rect.x + x}, ${rect.y + y})`);
      }
    }
  }
}

function rgbaOfPattern(x: number, y: number): number[] {
  const [b, g, r] = patternPixel(x, y);
  return [r, g, b, 255];
}

const rectOf = (r: { x: number; y: number; width: number; height: number }) => ({
  x: r.x,
  y: r.y,
  width: r.width,
  height: r.height,
});

// ---------------------------------------------------------------------------- identity and probe

test('virtio-gpu identifies itself: device 16, EDID feature, one scanout, two queues', () => {
  const guest = new Guest();
  assert.equal(guest.driver.read(MMIO_DEVICE_ID), 16);
  assert.equal(guest.transport.deviceFeatures, VIRTIO_F_VERSION_1 | VIRTIO_GPU_F_EDID);
  assert.equal(read32(guest.transport, MMIO_CONFIG + 0), 0, 'events_read');
  assert.equal(read32(guest.transport, MMIO_CONFIG + 4), 0, 'events_clear');
  assert.equal(read32(guest.transport, MMIO_CONFIG + 8), 1, 'num_scanouts');
  assert.equal(read32(guest.transport, MMIO_CONFIG + 12), 0, 'num_capsets');
  assert.deepEqual(guest.gpu.queueMaxSizes, [256, 16]);
});

test('GET_DISPLAY_INFO reports one enabled 1280x800 scanout and 15 disabled ones', () => {
  const guest = new Guest();
  const before = snapshot(guest.memory);
  const r = guest.send(command(VIRTIO_GPU_CMD_GET_DISPLAY_INFO));
  assert.equal(r.type, VIRTIO_GPU_RESP_OK_DISPLAY_INFO);
  assert.equal(r.usedLen, 24 + 16 * 24);
  const view = new DataView(r.bytes.buffer);
  assert.deepEqual(
    [0, 4, 8, 12, 16, 20].map((o) => view.getUint32(24 + o, true)),
    [0, 0, 1280, 800, 1, 0],
  );
  for (let i = 1; i < 16; i++) assert.equal(view.getUint32(24 + i * 24 + 16, true), 0, `scanout ${i} disabled`);
  assert.equal(r.flags, 0);
  assertChangedOnlyIn(guest.memory, before, [[CMD, 64], ...guest.deviceAreas]);
});

test('GET_EDID returns a valid EDID for the current mode', () => {
  const guest = new Guest({ width: 1024, height: 768 });
  const r = guest.send(command(VIRTIO_GPU_CMD_GET_EDID, [0, 0]));
  assert.equal(r.type, VIRTIO_GPU_RESP_OK_EDID);
  assert.equal(r.usedLen, 32 + 1024);
  const view = new DataView(r.bytes.buffer);
  assert.equal(view.getUint32(24, true), 128, 'size');
  const edid = r.bytes.subarray(32, 32 + 128);
  assert.deepEqual([...edid.subarray(0, 8)], [0, 255, 255, 255, 255, 255, 255, 0]);
  assert.equal(edid.reduce((a, b) => a + b, 0) % 256, 0, 'checksum');
  assert.equal(edidChecksum(edid), edid[127]);
  const dtd = edid.subarray(54, 72);
  assert.equal(dtd[2]! | ((dtd[4]! >> 4) << 8), 1024);
  assert.equal(dtd[5]! | ((dtd[7]! >> 4) << 8), 768);
  assert.ok(
    r.bytes.subarray(32 + 128).every((b) => b === 0),
    'the rest of the 1024-byte area is zero',
  );
});

test('GET_EDID for a missing scanout or without the negotiated feature is an error', () => {
  const guest = new Guest();
  guest.expect(command(VIRTIO_GPU_CMD_GET_EDID, [1, 0]), VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);
  guest.expect(command(VIRTIO_GPU_CMD_GET_EDID, [0xffffffff, 0]), VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);
  const noEdid = new Guest({}, (offered) => offered & ~VIRTIO_GPU_F_EDID);
  noEdid.expect(command(VIRTIO_GPU_CMD_GET_EDID, [0, 0]), VIRTIO_GPU_RESP_ERR_UNSPEC);
});

// ---------------------------------------------------------------------------- the mode-set path

test('mode set: create, attach scattered backing, set scanout, transfer, flush → a full frame of the right pixels', () => {
  const guest = new Guest();
  const frames = guest.gpu.frames;
  assert.equal(frames.takeFrame()?.enabled, false, 'before a scanout: a blank full frame');
  const before = snapshot(guest.memory);
  modeset(guest, 320, 200);
  // The guest wrote its framebuffer and commands; the device wrote only responses and rings.
  const touched = snapshot(guest.memory);
  for (let i = FB; i < FB + 320 * 200 * 4 + PAGE; i++) before[i] = touched[i]!;
  assertChangedOnlyIn(guest.memory, before, [[CMD, 64], [ENTRIES, 0x1000], ...guest.deviceAreas]);

  assert.equal(guest.gpu.resourceCount, 1);
  assert.equal(guest.gpu.hostBytes, 320 * 200 * 4);
  const frame = frames.takeFrame();
  assert.ok(frame);
  assert.equal(frame.enabled, true);
  assert.equal(frame.full, true);
  assert.deepEqual([frame.width, frame.height], [320, 200]);
  assert.equal(frame.rects.length, 1);
  assert.deepEqual(rectOf(frame.rects[0]!), { x: 0, y: 0, width: 320, height: 200 });
  assertRectPixels(frame.rects[0]!, rgbaOfPattern);
  frame.release();
  assert.equal(frames.takeFrame(), null, 'nothing new');
  assert.equal(guest.gpu.stats.errors, 0);
});

test('a partial transfer + flush exports exactly the damaged rectangle', () => {
  const guest = new Guest();
  const fb = modeset(guest, 256, 128);
  guest.gpu.frames.takeFrame()?.release();
  const red = (): number[] => [0, 0, 255, 0];
  fb.fill(red, { x: 10, y: 20, width: 30, height: 5 });
  transferAndFlush(guest, 1, 256, { x: 10, y: 20, width: 30, height: 5 });
  const frame = guest.gpu.frames.takeFrame();
  assert.ok(frame);
  assert.equal(frame.full, false);
  assert.deepEqual(frame.rects.map(rectOf), [{ x: 10, y: 20, width: 30, height: 5 }]);
  assertRectPixels(frame.rects[0]!, () => [255, 0, 0, 255]);
  frame.release();
  // A transfer without flush is not damage by itself.
  fb.fill(red, { x: 0, y: 0, width: 4, height: 4 });
  guest.ok(command(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, [0, 0, 4, 4, 0n, 1, 0]));
  assert.equal(guest.gpu.frames.takeFrame(), null);
  // The snapshot sees the host copy.
  const shot = guest.gpu.frames.snapshot();
  assert.ok(shot);
  assert.deepEqual([...shot.pixels.subarray(0, 4)], [255, 0, 0, 255]);
});

test('damage coalesces while the consumer is slow; memory stays bounded', () => {
  const guest = new Guest();
  const fb = modeset(guest, 320, 200);
  const frames = guest.gpu.frames;
  const held = [frames.takeFrame(), null] as (DisplayFrame | null)[];
  fb.fill(() => [1, 2, 3, 0], { x: 0, y: 0, width: 8, height: 8 });
  transferAndFlush(guest, 1, 320, { x: 0, y: 0, width: 8, height: 8 });
  held[1] = frames.takeFrame();
  assert.ok(held[0] && held[1]);
  assert.equal(frames.framesInFlight, 2);
  // Two frames are unreleased (the default limit): the consumer is "slow".
  for (let i = 0; i < 500; i++) {
    const x = (i * 37) % 300;
    const y = (i * 11) % 190;
    transferAndFlush(guest, 1, 320, { x, y, width: 4, height: 4 });
  }
  assert.equal(frames.takeFrame(), null, 'no third frame while two are in flight');
  held[0].release();
  const next = frames.takeFrame();
  assert.ok(next);
  assert.ok(next.rects.length >= 1 && next.rects.length <= 16, `${next.rects.length} rectangles`);
  let area = 0;
  for (const r of next.rects) area += r.width * r.height;
  assert.ok(area <= 320 * 200, 'never more than one screen of pixels');
  for (const r of next.rects) assertRectPixels(r, (x, y) => (x < 8 && y < 8 ? [3, 2, 1, 255] : rgbaOfPattern(x, y)));
  next.release();
  held[1].release();
});

test('overlapping flushes merge; distant ones stay separate', () => {
  const guest = new Guest();
  modeset(guest, 400, 300);
  const frames = guest.gpu.frames;
  frames.takeFrame()?.release();
  transferAndFlush(guest, 1, 400, { x: 10, y: 10, width: 20, height: 20 });
  transferAndFlush(guest, 1, 400, { x: 20, y: 20, width: 20, height: 20 });
  transferAndFlush(guest, 1, 400, { x: 300, y: 200, width: 10, height: 10 });
  const frame = frames.takeFrame();
  assert.ok(frame);
  assert.deepEqual(frame.rects.map(rectOf), [
    { x: 10, y: 10, width: 30, height: 30 },
    { x: 300, y: 200, width: 10, height: 10 },
  ]);
  for (const r of frame.rects) assertRectPixels(r, rgbaOfPattern);
  frame.release();
});

test('a scanout of part of a larger resource exports that part, in screen coordinates', () => {
  const guest = new Guest();
  const fb = new GuestFramebuffer(guest, 200, 100);
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [7, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 200, 100]));
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, [7, fb.pages]), { extra: fb.entries() });
  fb.fill(patternPixel);
  guest.ok(command(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, [0, 0, 200, 100, 0n, 7, 0]));
  guest.ok(command(VIRTIO_GPU_CMD_SET_SCANOUT, [50, 20, 100, 60, 0, 7]));
  const first = guest.gpu.frames.takeFrame();
  assert.ok(first);
  assert.deepEqual([first.width, first.height, first.full], [100, 60, true]);
  assertRectPixels(first.rects[0]!, (x, y) => rgbaOfPattern(x + 50, y + 20));
  first.release();
  // A flush partly outside the scanout is clipped to it.
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_FLUSH, [0, 0, 60, 30, 7, 0]));
  const frame = guest.gpu.frames.takeFrame();
  assert.ok(frame);
  assert.deepEqual(frame.rects.map(rectOf), [{ x: 0, y: 0, width: 10, height: 10 }]);
  frame.release();
  // A flush entirely outside it is no damage.
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_FLUSH, [0, 0, 40, 100, 7, 0]));
  assert.equal(guest.gpu.frames.takeFrame(), null);
});

test('page flip between two resources repaints the whole screen; unref of the shown one blanks it', () => {
  const guest = new Guest();
  modeset(guest, 64, 32, 1);
  guest.gpu.frames.takeFrame()?.release();
  const fb2 = new GuestFramebuffer(guest, 64, 32, 0x60_0000);
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [2, VIRTIO_GPU_FORMAT_B8G8R8X8_UNORM, 64, 32]));
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, [2, fb2.pages]), { extra: fb2.entries() });
  fb2.fill(() => [9, 8, 7, 0]);
  guest.ok(command(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, [0, 0, 64, 32, 0n, 2, 0]));
  guest.ok(command(VIRTIO_GPU_CMD_SET_SCANOUT, [0, 0, 64, 32, 0, 2]));
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_FLUSH, [0, 0, 64, 32, 2, 0]));
  const flipped = guest.gpu.frames.takeFrame();
  assert.ok(flipped);
  assert.equal(flipped.full, true);
  assertRectPixels(flipped.rects[0]!, () => [7, 8, 9, 255]);
  flipped.release();
  // Setting the same scanout again changes nothing.
  guest.ok(command(VIRTIO_GPU_CMD_SET_SCANOUT, [0, 0, 64, 32, 0, 2]));
  assert.equal(guest.gpu.frames.takeFrame(), null);
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_UNREF, [2, 0]));
  const blank = guest.gpu.frames.takeFrame();
  assert.ok(blank);
  assert.deepEqual([blank.enabled, blank.width, blank.height, blank.rects.length], [false, 0, 0, 0]);
  blank.release();
  assert.equal(guest.gpu.resourceCount, 1);
  assert.equal(guest.gpu.hostBytes, 64 * 32 * 4);
  // Disabling explicitly (resource 0) is fine too.
  guest.ok(command(VIRTIO_GPU_CMD_SET_SCANOUT, [0, 0, 0, 0, 0, 0]));
});

test('every supported format exports the same RGBA colour', () => {
  const colour = { r: 0x12, g: 0x34, b: 0x56 };
  for (const [format, layout] of FORMATS) {
    const guest = new Guest();
    const fb = new GuestFramebuffer(guest, 8, 4);
    guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [1, format, 8, 4]));
    guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, [1, fb.pages]), { extra: fb.entries() });
    const px = [0, 0, 0, 0];
    px[layout.r] = colour.r;
    px[layout.g] = colour.g;
    px[layout.b] = colour.b;
    px[layout.a] = 0x80; // alpha or padding: either way the screen is opaque
    fb.fill(() => px);
    guest.ok(command(VIRTIO_GPU_CMD_SET_SCANOUT, [0, 0, 8, 4, 0, 1]));
    guest.ok(command(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, [0, 0, 8, 4, 0n, 1, 0]));
    const frame = guest.gpu.frames.takeFrame();
    assert.ok(frame);
    assertRectPixels(frame.rects[0]!, () => [0x12, 0x34, 0x56, 255], layout.name);
    frame.release();
  }
});

test('transfers honour the offset and the backing layout, across scatter entries', () => {
  const guest = new Guest();
  const fb = modeset(guest, 100, 50);
  guest.gpu.frames.takeFrame()?.release();
  // Linux's offset for (x, y) is y × stride + x × 4; rows continue at + stride.
  fb.fill(() => [200, 100, 50, 0], { x: 90, y: 40, width: 10, height: 10 });
  transferAndFlush(guest, 1, 100, { x: 90, y: 40, width: 10, height: 10 });
  const frame = guest.gpu.frames.takeFrame();
  assert.ok(frame);
  assertRectPixels(frame.rects[0]!, () => [50, 100, 200, 255]);
  frame.release();
  assert.equal(guest.gpu.stats.transferBytes, 100 * 50 * 4 + 10 * 10 * 4);
});

// ---------------------------------------------------------------------------- resize, cursor, fences

test('setDisplaySize raises VIRTIO_GPU_EVENT_DISPLAY with a config interrupt; the guest sees the new mode', () => {
  const guest = new Guest();
  const generation = guest.transport.configGeneration;
  assert.deepEqual(guest.gpu.setDisplaySize(1024, 768), { width: 1024, height: 768 });
  assert.equal(guest.transport.configGeneration, generation + 1);
  assert.equal(guest.transport.interruptStatus & 2, 2, 'config-change interrupt');
  assert.equal(guest.irq.level, true);
  assert.equal(read32(guest.transport, MMIO_CONFIG), 1, 'events_read has EVENT_DISPLAY');
  guest.driver.ackInterrupt();
  // What Linux's config_changed work does: EDID, display info, then events_clear.
  const edid = guest.send(command(VIRTIO_GPU_CMD_GET_EDID, [0, 0])).bytes.subarray(32, 160);
  assert.equal(edid[56]! | ((edid[58]! >> 4) << 8), 1024);
  const info = new DataView(guest.send(command(VIRTIO_GPU_CMD_GET_DISPLAY_INFO)).bytes.buffer);
  assert.deepEqual([info.getUint32(32, true), info.getUint32(36, true)], [1024, 768]);
  write32(guest.transport, MMIO_CONFIG + 4, 1);
  assert.equal(read32(guest.transport, MMIO_CONFIG), 0, 'events_read cleared');
  // The same size again is no event.
  guest.gpu.setDisplaySize(1024, 768);
  assert.equal(read32(guest.transport, MMIO_CONFIG), 0);
  assert.equal(guest.transport.configGeneration, generation + 1);
});

test('setDisplaySize rounds and clamps to the supported range and refuses non-numbers', () => {
  const guest = new Guest();
  assert.deepEqual(guest.gpu.setDisplaySize(10, 10.4), { width: 64, height: 64 });
  assert.deepEqual(guest.gpu.setDisplaySize(5000, 1000), { width: 3840, height: 1000 });
  const big = guest.gpu.setDisplaySize(3840, 3840);
  assert.ok(big.width * big.height <= 3840 * 2400, JSON.stringify(big));
  assert.ok(
    big.width % 8 === 0 && big.height - big.width < 8,
    `about square, width in 8-pixel cells: ${JSON.stringify(big)}`,
  );
  assert.throws(() => guest.gpu.setDisplaySize(Number.NaN, 100), RangeError);
  assert.throws(() => guest.gpu.setDisplaySize(100, Number.POSITIVE_INFINITY), RangeError);
  assert.deepEqual(guest.gpu.displaySize, big);
  assert.deepEqual(guest.gpu.setDisplaySize(1021.6, 700), { width: 1016, height: 700 });
});

test('a size change before DRIVER_OK is just reported at probe time', () => {
  const gpu = new VirtioGpu();
  assert.doesNotThrow(() => gpu.setDisplaySize(800, 600));
  const memory = GuestMemory.allocate(RAM);
  const transport = new VirtioMmioTransport(gpu, memory, new FakeIrq());
  const driver = new GuestDriver(transport, memory);
  driver.bringUp([CTRL_RING, CURSOR_RING]);
  assert.equal(transport.interruptStatus, 0);
  assert.equal(gpu.displaySize.width, 800);
});

test('cursor queue: UPDATE_CURSOR defines image and hot spot, MOVE_CURSOR moves, resource 0 hides', () => {
  const guest = new Guest();
  modeset(guest, 64, 64);
  guest.gpu.frames.takeFrame()?.release();
  // Linux: a 64x64 ARGB8888 (B8G8R8A8) dumb buffer, transferred with a fence, then UPDATE_CURSOR.
  const cur = new GuestFramebuffer(guest, 64, 64, CURSOR_FB);
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [5, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, 64, 64]));
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, [5, cur.pages]), { extra: cur.entries() });
  // Premultiplied: opaque white top-left, half-transparent red (128, 0, 0, 128) elsewhere.
  cur.fill((x, y) => (x < 2 && y < 2 ? [255, 255, 255, 255] : [0, 0, 128, 128]));
  const fenced = guest.ok(command(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, [0, 0, 64, 64, 0n, 5, 0], { id: 77n, ctx: 0 }));
  assert.equal(fenced.fenceId, 77n);
  guest.cursorCommand(command(VIRTIO_GPU_CMD_UPDATE_CURSOR, [0, 100, 50, 0, 5, 3, 4, 0]));
  let frame = guest.gpu.frames.takeFrame();
  assert.ok(frame?.cursor);
  assert.deepEqual(frame.rects, []);
  const c = frame.cursor;
  assert.deepEqual([c.visible, c.x, c.y, c.hotX, c.hotY], [true, 100, 50, 3, 4]);
  assert.ok(c.image);
  assert.deepEqual([c.image.width, c.image.height], [64, 64]);
  assert.deepEqual([...c.image.pixels.subarray(0, 4)], [255, 255, 255, 255]);
  assert.deepEqual([...c.image.pixels.subarray(4 * 64 * 10, 4 * 64 * 10 + 4)], [255, 0, 0, 128], 'straight alpha');
  const serial = c.imageSerial;
  frame.release();

  // Linux sends negative positions as u32.
  guest.cursorCommand(command(VIRTIO_GPU_CMD_MOVE_CURSOR, [0, -3 >>> 0, 7, 0, 0, 0, 0, 0]));
  frame = guest.gpu.frames.takeFrame();
  assert.ok(frame?.cursor);
  assert.deepEqual([frame.cursor.visible, frame.cursor.x, frame.cursor.y], [true, -3, 7]);
  assert.equal(frame.cursor.image, null, 'a move does not resend the image');
  assert.equal(frame.cursor.imageSerial, serial);
  frame.release();

  guest.cursorCommand(command(VIRTIO_GPU_CMD_UPDATE_CURSOR, [0, 5, 5, 0, 0, 0, 0, 0]));
  frame = guest.gpu.frames.takeFrame();
  assert.equal(frame?.cursor?.visible, false);
  frame?.release();

  // Bad cursor commands are ignored (no response buffer, nothing changes).
  const errors = guest.gpu.stats.errors;
  guest.cursorCommand(command(VIRTIO_GPU_CMD_UPDATE_CURSOR, [0, 1, 1, 0, 99, 0, 0, 0])); // no such resource
  guest.cursorCommand(command(VIRTIO_GPU_CMD_UPDATE_CURSOR, [1, 1, 1, 0, 5, 0, 0, 0])); // scanout 1
  guest.cursorCommand(command(VIRTIO_GPU_CMD_UPDATE_CURSOR, [0, 1, 1, 0, 1, 0, 0, 0]).subarray(0, 40)); // short
  guest.cursorCommand(command(VIRTIO_GPU_CMD_GET_DISPLAY_INFO, [0, 0, 0, 0, 0, 0, 0, 0])); // wrong queue
  assert.equal(guest.gpu.stats.errors, errors + 4);
  assert.equal(guest.gpu.frames.takeFrame(), null);
  // A cursor resource larger than 256x256 is refused.
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [6, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, 257, 1]));
  guest.cursorCommand(command(VIRTIO_GPU_CMD_UPDATE_CURSOR, [0, 1, 1, 0, 6, 0, 0, 0]));
  assert.equal(guest.gpu.frames.takeFrame(), null);
  assert.equal(guest.needsReset, false);
});

test('cursor commands with a response buffer are answered, fences echoed', () => {
  const guest = new Guest();
  guest.memory.write(CMD, command(VIRTIO_GPU_CMD_MOVE_CURSOR, [0, 10, 10, 0, 0, 0, 0, 0], { id: 5n, ctx: 2 }));
  guest.memory.fill(RESP, 64, 0xee);
  const used = guest.submit(1, [
    { addr: CMD, len: 56, writable: false },
    { addr: RESP, len: 64, writable: true },
  ]);
  assert.equal(used.len, 24);
  const view = new DataView(guest.memory.read(RESP, 24).buffer);
  assert.equal(view.getUint32(0, true), VIRTIO_GPU_RESP_OK_NODATA);
  assert.equal(view.getUint32(4, true), VIRTIO_GPU_FLAG_FENCE);
  assert.equal(view.getBigUint64(8, true), 5n);
  assert.equal(view.getUint32(16, true), 2);
});

test('fences: flag, fence_id (full 64 bits) and ctx_id are echoed on success and on errors', () => {
  const guest = new Guest();
  const ids = [1n, 0xffff_ffff_ffff_ffffn, 1n << 53n];
  for (const id of ids) {
    const ok = guest.ok(
      command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [Number(id & 0xffffn) + 1, 2, 4, 4], { id, ctx: 9 }),
    );
    assert.deepEqual([ok.flags, ok.fenceId, ok.ctxId], [VIRTIO_GPU_FLAG_FENCE, id, 9]);
  }
  const error = guest.expect(
    command(VIRTIO_GPU_CMD_RESOURCE_FLUSH, [0, 0, 1, 1, 999, 0], { id: 42n, ctx: 0 }),
    VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID,
  );
  assert.deepEqual([error.flags, error.fenceId], [VIRTIO_GPU_FLAG_FENCE, 42n]);
  const info = guest.send(command(VIRTIO_GPU_CMD_GET_DISPLAY_INFO, [], { id: 43n, ctx: 0 }));
  assert.deepEqual([info.type, info.flags, info.fenceId], [VIRTIO_GPU_RESP_OK_DISPLAY_INFO, 1, 43n]);
  const plain = guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_UNREF, [2, 0]));
  assert.deepEqual([plain.flags, plain.fenceId, plain.ctxId], [0, 0n, 0]);
});

test('the frame listener is called after guest processing, once per release', async () => {
  const guest = new Guest();
  const got: DisplayFrame[] = [];
  const stop = guest.gpu.frames.subscribe((frame) => got.push(frame));
  modeset(guest, 32, 16);
  assert.equal(got.length, 0, 'never inside command processing');
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(got.length, 1);
  assert.equal(got[0]!.full, true);
  transferAndFlush(guest, 1, 32, { x: 0, y: 0, width: 2, height: 2 });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(got.length, 2, 'two frames may be in flight');
  transferAndFlush(guest, 1, 32, { x: 4, y: 4, width: 2, height: 2 });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(got.length, 2, 'the third waits for a release');
  got[0]!.release();
  got[0]!.release(); // idempotent
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(got.length, 3);
  assert.deepEqual(got[2]!.rects.map(rectOf), [{ x: 4, y: 4, width: 2, height: 2 }]);
  stop();
  got[1]!.release();
  got[2]!.release();
  transferAndFlush(guest, 1, 32, { x: 0, y: 0, width: 2, height: 2 });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(got.length, 3, 'no calls after unsubscribing');
});

test('snapshotPng encodes the screen; blank before a scanout', () => {
  const guest = new Guest({ width: 640, height: 480 });
  const blank = guest.gpu.snapshotPng();
  assert.deepEqual([blank.readUInt32BE(16), blank.readUInt32BE(20)], [640, 480]);
  modeset(guest, 48, 24);
  const png = guest.gpu.snapshotPng();
  assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47]);
  assert.deepEqual([png.readUInt32BE(16), png.readUInt32BE(20)], [48, 24]);
});

test('device reset frees every resource and blanks the screen; the device works again after', () => {
  const guest = new Guest();
  modeset(guest, 64, 64);
  guest.gpu.frames.takeFrame()?.release();
  guest.driver.write(0x070, 0); // status 0: reset
  assert.equal(guest.gpu.resourceCount, 0);
  assert.equal(guest.gpu.hostBytes, 0);
  const blank = guest.gpu.frames.takeFrame();
  assert.equal(blank?.enabled, false);
  blank?.release();
  const again = new GuestDriver(guest.transport, guest.memory);
  const [ctrl] = again.bringUp([CTRL_RING, CURSOR_RING]);
  assert.ok(ctrl);
  assert.equal(guest.transport.activated, true);
});

// ---------------------------------------------------------------------------- hostile guests

test('unknown resource ids are ERR_INVALID_RESOURCE_ID for every command', () => {
  const guest = new Guest();
  const before = snapshot(guest.memory);
  for (const id of [0, 1, 0xffffffff]) {
    for (const cmd of [
      command(VIRTIO_GPU_CMD_RESOURCE_UNREF, [id, 0]),
      command(VIRTIO_GPU_CMD_SET_SCANOUT, [0, 0, 1, 1, 0, id === 0 ? 5 : id]),
      command(VIRTIO_GPU_CMD_RESOURCE_FLUSH, [0, 0, 1, 1, id, 0]),
      command(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, [0, 0, 1, 1, 0n, id, 0]),
      command(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, [id, 1]),
      command(VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING, [id, 0]),
    ]) {
      guest.expect(cmd, VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID, { extra: memEntries([{ addr: FB, len: 16 }]) });
    }
  }
  assertChangedOnlyIn(guest.memory, before, [[CMD, 64], [ENTRIES, 16], ...guest.deviceAreas]);
});

test('RESOURCE_CREATE_2D refuses id 0, duplicate ids, bad formats and sizes', () => {
  const guest = new Guest();
  guest.expect(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [0, 2, 4, 4]), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [1, 2, 4, 4]));
  guest.expect(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [1, 2, 4, 4]), VIRTIO_GPU_RESP_ERR_INVALID_RESOURCE_ID);
  for (const format of [0, 5, 66, 100, 0xffffffff]) {
    guest.expect(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [2, format, 4, 4]), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
  }
  for (const [w, h] of [
    [0, 4],
    [4, 0],
    [16385, 1],
    [1, 0xffffffff],
    [0xffffffff, 0xffffffff],
  ]) {
    guest.expect(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [2, 2, w!, h!]), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
  }
  assert.equal(guest.gpu.resourceCount, 1);
});

test('the host-memory budget and the resource count are enforced; unref gives memory back', () => {
  const guest = new Guest({ maxHostBytes: 1024 * 1024, maxResources: 8 });
  guest.expect(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [1, 2, 16384, 16384]), VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [1, 2, 256, 512])); // 512 KiB
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [2, 2, 256, 256])); // 256 KiB
  guest.expect(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [3, 2, 256, 257]), VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [3, 2, 256, 256]));
  assert.equal(guest.gpu.hostBytes, 1024 * 1024);
  guest.expect(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [4, 2, 1, 1]), VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_UNREF, [1, 0]));
  for (let id = 10; id < 15; id++) guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [id, 2, 1, 1]));
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [15, 2, 1, 1]));
  assert.equal(guest.gpu.resourceCount, 8);
  guest.expect(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [16, 2, 1, 1]), VIRTIO_GPU_RESP_ERR_OUT_OF_MEMORY);
  assert.ok(guest.gpu.hostBytes <= guest.gpu.maxHostBytes);
});

test('rectangles outside the resource are ERR_INVALID_PARAMETER, including u32 overflow', () => {
  const guest = new Guest();
  modeset(guest, 64, 32);
  guest.gpu.frames.takeFrame()?.release();
  const max = 0xffffffff;
  const bad: [number, number, number, number][] = [
    [0, 0, 65, 1],
    [0, 0, 1, 33],
    [64, 0, 1, 1],
    [63, 31, 2, 1],
    [max, 0, 2, 1], // x + width wraps a u32
    [0, max, 1, 2],
    [1, 1, max, max],
    [max, max, max, max],
  ];
  for (const [x, y, w, h] of bad) {
    guest.expect(command(VIRTIO_GPU_CMD_RESOURCE_FLUSH, [x, y, w, h, 1, 0]), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
    guest.expect(
      command(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, [x, y, w, h, 0n, 1, 0]),
      VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
    );
    guest.expect(command(VIRTIO_GPU_CMD_SET_SCANOUT, [x, y, w, h, 0, 1]), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
  }
  // An empty scanout rectangle for a real resource is refused too; empty flush/transfer are no-ops.
  guest.expect(command(VIRTIO_GPU_CMD_SET_SCANOUT, [0, 0, 0, 0, 0, 1]), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER);
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_FLUSH, [64, 32, 0, 0, 1, 0]));
  guest.ok(command(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, [0, 0, 0, 5, 0n, 1, 0]));
  assert.equal(guest.gpu.frames.takeFrame(), null, 'nothing was damaged');
  // The scanout is still the original one.
  assert.deepEqual([guest.gpu.frames.snapshot()?.width, guest.gpu.frames.snapshot()?.height], [64, 32]);
});

test('SET_SCANOUT with a bad scanout id is ERR_INVALID_SCANOUT_ID', () => {
  const guest = new Guest();
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [1, 2, 8, 8]));
  for (const id of [1, 15, 16, 0xffffffff]) {
    guest.expect(command(VIRTIO_GPU_CMD_SET_SCANOUT, [0, 0, 8, 8, id, 1]), VIRTIO_GPU_RESP_ERR_INVALID_SCANOUT_ID);
  }
});

test('transfer offsets beyond the backing (near 2^32, 2^53, 2^64) are ERR_INVALID_PARAMETER', () => {
  const guest = new Guest();
  modeset(guest, 64, 32);
  const before = snapshot(guest.memory);
  const hostBefore = guest.gpu.frames.snapshot()?.pixels;
  for (const offset of [
    64n * 32n * 4n - 3n, // the first row runs off the end
    64n * 4n * 31n + 4n, // the last row of a full-height transfer runs off the end
    0xffff_ffffn,
    0x1_0000_0000n,
    (1n << 53n) - 1n,
    1n << 53n,
    0xffff_ffff_ffff_fff0n,
    0xffff_ffff_ffff_ffffn,
  ]) {
    guest.expect(
      command(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, [0, 0, 64, offset === 64n * 4n * 31n + 4n ? 32 : 1, offset, 1, 0]),
      VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER,
    );
  }
  assertChangedOnlyIn(guest.memory, before, [[CMD, 64], ...guest.deviceAreas]);
  assert.deepEqual(guest.gpu.frames.snapshot()?.pixels, hostBefore, 'host copy unchanged');
  // The exact end is fine.
  guest.ok(command(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, [0, 31, 64, 1, 64n * 4n * 31n, 1, 0]));
});

test('backing entries outside guest RAM are refused and leave the resource without backing', () => {
  const guest = new Guest();
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [1, 2, 64, 64]));
  const bad = [
    { addr: RAM - 100, len: 4096 }, // runs past the end
    { addr: RAM, len: 1 },
    { addr: 0xffff_ffffn, len: 16 },
    { addr: 0x1_0000_0000n, len: 16 },
    { addr: (1n << 53n) - 8n, len: 16 },
    { addr: 0xffff_ffff_ffff_f000n, len: 0x2000 }, // wraps 2^64
    { addr: 0xffff_ffff_ffff_ffffn, len: 0 },
  ];
  for (const entry of bad) {
    guest.expect(command(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, [1, 2]), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, {
      extra: memEntries([{ addr: FB, len: 4096 }, entry]),
    });
  }
  // Still no backing: a transfer is refused, and a good attach now works.
  guest.expect(command(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, [0, 0, 1, 1, 0n, 1, 0]), VIRTIO_GPU_RESP_ERR_UNSPEC);
  guest.expect(command(VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING, [1, 0]), VIRTIO_GPU_RESP_ERR_UNSPEC);
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, [1, 1]), { extra: memEntries([{ addr: FB, len: 16384 }]) });
  guest.expect(command(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, [1, 1]), VIRTIO_GPU_RESP_ERR_UNSPEC, {
    extra: memEntries([{ addr: FB, len: 16384 }]),
  });
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING, [1, 0]));
  guest.expect(command(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, [0, 0, 1, 1, 0n, 1, 0]), VIRTIO_GPU_RESP_ERR_UNSPEC);
});

test('entry counts and backing sizes are bounded', () => {
  const guest = new Guest();
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [1, 2, 64, 64])); // 16 KiB
  const oneEntry = memEntries([{ addr: FB, len: 16 }]);
  // Zero entries, more than 16384, and absurd counts.
  for (const n of [0, 16385, 0xffffffff]) {
    guest.expect(command(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, [1, n]), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, {
      extra: oneEntry,
    });
  }
  // The count promises more entries than the chain holds.
  guest.expect(command(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, [1, 1000]), VIRTIO_GPU_RESP_ERR_UNSPEC, {
    extra: oneEntry,
  });
  guest.expect(command(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, [1, 1]), VIRTIO_GPU_RESP_ERR_UNSPEC);
  // More backing than the resource (rounded up to 64 KiB) can use: 16384 entries of one page.
  const many = memEntries(Array.from({ length: 16384 }, () => ({ addr: FB, len: 4096 })));
  guest.expect(command(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, [1, 16384]), VIRTIO_GPU_RESP_ERR_INVALID_PARAMETER, {
    extra: many,
  });
  // 16384 small entries within the limit are fine (and the transfer gathers across all of them).
  const tiny = memEntries(Array.from({ length: 16384 }, (_, i) => ({ addr: FB + i * 8, len: 1 })));
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, [1, 16384]), { extra: tiny });
  guest.ok(command(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, [0, 0, 64, 64, 0n, 1, 0]));
  assert.equal(guest.needsReset, false);
});

test('short commands: the response is still written when there is room', () => {
  const guest = new Guest();
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [1, 2, 8, 8]));
  const before = snapshot(guest.memory);
  const cases: [Uint8Array, number][] = [
    [command(VIRTIO_GPU_CMD_GET_DISPLAY_INFO), 10], // not even a header
    [command(VIRTIO_GPU_CMD_GET_DISPLAY_INFO), 1],
    [command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [2, 2, 8, 8]), 39],
    [command(VIRTIO_GPU_CMD_SET_SCANOUT, [0, 0, 8, 8, 0, 1]), 24],
    [command(VIRTIO_GPU_CMD_RESOURCE_FLUSH, [0, 0, 8, 8, 1, 0]), 47],
    [command(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, [0, 0, 8, 8, 0n, 1, 0]), 48],
    [command(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, [1, 1]), 28],
    [command(VIRTIO_GPU_CMD_RESOURCE_DETACH_BACKING, [1, 0]), 25],
    [command(VIRTIO_GPU_CMD_RESOURCE_UNREF, [1, 0]), 30],
    [command(VIRTIO_GPU_CMD_GET_EDID, [0, 0]), 28],
  ];
  for (const [cmd, length] of cases) {
    const r = guest.send(cmd, { cmdLen: length });
    assert.deepEqual([r.type, r.usedLen], [VIRTIO_GPU_RESP_ERR_UNSPEC, 24], `cut to ${length} bytes`);
  }
  // No readable part at all.
  assert.equal(guest.send(command(0), { cmdLen: 0 }).type, VIRTIO_GPU_RESP_ERR_UNSPEC);
  // A response buffer too small for the full answer gets an error header.
  const small = guest.send(command(VIRTIO_GPU_CMD_GET_DISPLAY_INFO), { respLen: 100 });
  assert.deepEqual([small.type, small.usedLen], [VIRTIO_GPU_RESP_ERR_UNSPEC, 24]);
  const smallEdid = guest.send(command(VIRTIO_GPU_CMD_GET_EDID, [0, 0]), { respLen: 1055 });
  assert.equal(smallEdid.type, VIRTIO_GPU_RESP_ERR_UNSPEC);
  assert.equal(guest.gpu.resourceCount, 1, 'nothing was created or destroyed');
  assertChangedOnlyIn(guest.memory, before, [[CMD, 64], ...guest.deviceAreas]);
});

test('a control command without room for a response header puts the device into NEEDS_RESET', () => {
  for (const resp of [0, 23]) {
    const guest = new Guest();
    guest.memory.write(CMD, command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [1, 2, 8, 8]));
    const buffers: GuestBuffer[] = [{ addr: CMD, len: 40, writable: false }];
    if (resp > 0) buffers.push({ addr: RESP, len: resp, writable: true });
    guest.ctrl.addChain(buffers);
    const before = snapshot(guest.memory);
    guest.driver.notify(0);
    assert.equal(guest.needsReset, true);
    assert.equal(guest.gpu.resourceCount, 0, 'the command was not executed');
    assertChangedOnlyIn(guest.memory, before, []);
  }
});

test('unknown and unsupported commands are ERR_UNSPEC', () => {
  const guest = new Guest();
  for (const type of [0, 0x0108, 0x0109, 0x010b, 0x010c, 0x010d, 0x0200, 0x0207, 0x0300, 0x0301, 0x1100, 0xdeadbeef]) {
    guest.expect(command(type, [0, 0, 0, 0, 0, 0, 0, 0]), VIRTIO_GPU_RESP_ERR_UNSPEC);
  }
  assert.equal(guest.gpu.stats.commands, 12);
  assert.equal(guest.gpu.stats.errors, 12);
});

test('a flood of random commands never throws, never breaks the device, and writes only responses', () => {
  const guest = new Guest({ maxHostBytes: 4 * 1024 * 1024 });
  modeset(guest, 64, 64);
  let seed = 12345;
  const rand = (): number => {
    // xorshift32
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  /** Mostly small values (valid ids, formats, rectangles), some medium, some anything. */
  const field = (): number => {
    const kind = rand() % 16;
    return kind === 0 ? rand() : kind < 4 ? rand() % 70 : rand() % 4;
  };
  const before = snapshot(guest.memory);
  const succeeded = new Set<number>();
  const types = [
    0x100,
    0x101,
    0x101,
    0x102,
    0x103,
    0x104,
    0x105,
    0x105,
    0x105,
    0x106,
    0x106,
    0x107,
    0x10a,
    0x300,
    rand(),
  ];
  for (let i = 0; i < 2000; i++) {
    const type = rand() % 20 === 0 ? rand() : types[rand() % types.length]!;
    const fields = Array.from({ length: 8 }, field);
    // Steer some commands towards their success paths.
    const steer = rand() % 2 === 0;
    if (type === 0x106 && steer) fields[1] = 1; // one entry, which follows
    if (type === 0x105 && steer) fields[4] = fields[5] = 0; // offset 0
    const entry =
      type === 0x106 && steer
        ? { addr: FB, len: 0x400 }
        : { addr: rand() % 2 ? FB : BigInt(rand()) << 20n, len: rand() % 0x20000 };
    const extra = memEntries([entry]);
    const r = guest.send(command(type, fields), { extra, cmdLen: rand() % 8 === 0 ? rand() % 57 : undefined });
    assert.ok(r.usedLen >= 24);
    if (r.type < VIRTIO_GPU_RESP_ERR_UNSPEC) succeeded.add(type);
    if (i % 100 === 0) guest.gpu.frames.takeFrame()?.release();
  }
  assert.ok(
    succeeded.size >= 9,
    `the flood also hit the success paths: ${[...succeeded].map((t) => t.toString(16)).join(' ')}`,
  );
  assertChangedOnlyIn(guest.memory, before, [[CMD, 64], [ENTRIES, 16], ...guest.deviceAreas]);
  assert.ok(guest.gpu.hostBytes <= 4 * 1024 * 1024);
  assert.equal(guest.needsReset, false);
});

test('A8R8G8B8 and other alpha formats are still exported opaque', () => {
  const guest = new Guest();
  const fb = new GuestFramebuffer(guest, 4, 4);
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_CREATE_2D, [1, VIRTIO_GPU_FORMAT_A8R8G8B8_UNORM, 4, 4]));
  guest.ok(command(VIRTIO_GPU_CMD_RESOURCE_ATTACH_BACKING, [1, fb.pages]), { extra: fb.entries() });
  fb.fill(() => [0, 10, 20, 30]); // A=0, R=10, G=20, B=30
  guest.ok(command(VIRTIO_GPU_CMD_TRANSFER_TO_HOST_2D, [0, 0, 4, 4, 0n, 1, 0]));
  guest.ok(command(VIRTIO_GPU_CMD_SET_SCANOUT, [0, 0, 4, 4, 0, 1]));
  const frame = guest.gpu.frames.takeFrame();
  assert.ok(frame);
  assertRectPixels(frame.rects[0]!, () => [10, 20, 30, 255]);
  frame.release();
});
