import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GuestMemory } from '../../vmm/memory/guest-memory.js';
import { FileBlockBackend, MemoryBlockBackend, VirtioBlock } from '../../vmm/devices/virtio/blk.js';
import type { BlockBackend, VirtioBlockOptions } from '../../vmm/devices/virtio/blk.js';
import { VirtioMmioTransport } from '../../vmm/devices/virtio/mmio-transport.js';
import {
  MMIO_CONFIG,
  MMIO_DEVICE_ID,
  STATUS_DEVICE_NEEDS_RESET,
  VIRTIO_BLK_F_BLK_SIZE,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_SEG_MAX,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_F_VERSION_1,
} from '../../vmm/devices/virtio/constants.js';
import type { GuestBuffer, GuestRing } from './virtio-harness.js';
import { assertChangedOnlyIn, FakeIrq, GuestDriver, read32, readConfig64, snapshot } from './virtio-harness.js';

const RAM = 0x20_0000; // 2 MiB
const RING = 0x1000;
const HDR = 0x10_0000;
const DATA = 0x11_0000;
const STATUS = 0x1f_0000;
const SECTOR = 512;

/** A disk whose byte i is (i * 7 + (i >> 9)) & 0xff, so every sector differs. */
function patternDisk(bytes: number): Uint8Array {
  return Uint8Array.from({ length: bytes }, (_, i) => (i * 7 + (i >> 9)) & 0xff);
}

/** A backend that counts calls, over memory. */
class CountingBackend extends MemoryBlockBackend {
  flushes = 0;
  writes = 0;
  override write(position: number, from: Uint8Array): void {
    this.writes++;
    super.write(position, from);
  }
  override flush(): void {
    this.flushes++;
  }
}

function setup(backend: BlockBackend, options: VirtioBlockOptions = { readOnly: false }, accept?: bigint) {
  const memory = GuestMemory.allocate(RAM);
  const irq = new FakeIrq();
  const device = new VirtioBlock(backend, options);
  const transport = new VirtioMmioTransport(device, memory, irq);
  const driver = new GuestDriver(transport, memory);
  assert.ok(driver.negotiate(accept === undefined ? undefined : () => accept));
  const ring = driver.setupQueue(0, RING);
  driver.driverOk();
  return { memory, irq, device, transport, driver, ring };
}

function writeHeader(memory: GuestMemory, type: number, sector: bigint | number): void {
  memory.writeU32(HDR, type);
  memory.writeU32(HDR + 4, 0);
  memory.writeU64(HDR + 8, BigInt(sector));
}

interface Done {
  status: number;
  usedLen: number;
}

/** Submit one request the way Linux does (header | data | status) and run it. */
function submit(
  ctx: { memory: GuestMemory; driver: GuestDriver; ring: GuestRing },
  type: number,
  sector: bigint | number,
  data: GuestBuffer[] = [],
): Done {
  writeHeader(ctx.memory, type, sector);
  ctx.memory.writeU8(STATUS, 0xee);
  const head = ctx.ring.addChain([
    { addr: HDR, len: 16, writable: false },
    ...data,
    { addr: STATUS, len: 1, writable: true },
  ]);
  const usedBefore = ctx.ring.usedIdx;
  assert.doesNotThrow(() => ctx.driver.notify(0));
  assert.equal(ctx.ring.usedIdx, (usedBefore + 1) & 0xffff, 'request completed');
  const used = ctx.ring.usedElem(usedBefore);
  assert.equal(used.id, head);
  return { status: ctx.memory.readU8(STATUS), usedLen: used.len };
}

test('virtio-blk identifies itself and reports capacity, seg_max and blk_size', () => {
  const { driver, transport } = setup(new MemoryBlockBackend(new Uint8Array(10 * SECTOR + 100)), {
    readOnly: true,
    queueSize: 128,
  });
  assert.equal(driver.read(MMIO_DEVICE_ID), 2);
  assert.equal(
    transport.deviceFeatures,
    VIRTIO_F_VERSION_1 | VIRTIO_BLK_F_SEG_MAX | VIRTIO_BLK_F_BLK_SIZE | VIRTIO_BLK_F_FLUSH | VIRTIO_BLK_F_RO,
  );
  assert.equal(readConfig64(transport, 0), 10n, 'trailing partial sector is not visible');
  assert.equal(read32(transport, MMIO_CONFIG + 12), 126, 'seg_max = queue size - 2');
  assert.equal(read32(transport, MMIO_CONFIG + 20), 512);
  assert.equal(read32(transport, MMIO_CONFIG + 40), 0);
});

test('a read-write disk does not offer VIRTIO_BLK_F_RO', () => {
  const { transport } = setup(new MemoryBlockBackend(new Uint8Array(SECTOR)));
  assert.equal(transport.deviceFeatures & VIRTIO_BLK_F_RO, 0n);
});

test('IN reads sectors into scattered guest buffers, touching nothing else', () => {
  const disk = patternDisk(64 * SECTOR);
  const ctx = setup(new MemoryBlockBackend(disk));
  const before = snapshot(ctx.memory);
  const done = submit(ctx, VIRTIO_BLK_T_IN, 3, [
    { addr: DATA, len: 512, writable: true },
    { addr: DATA + 0x1000, len: 1024, writable: true },
  ]);
  assert.deepEqual(done, { status: VIRTIO_BLK_S_OK, usedLen: 1537 });
  assert.deepEqual(ctx.memory.read(DATA, 512), disk.subarray(3 * SECTOR, 4 * SECTOR));
  assert.deepEqual(ctx.memory.read(DATA + 0x1000, 1024), disk.subarray(4 * SECTOR, 6 * SECTOR));
  assertChangedOnlyIn(ctx.memory, before, [
    [DATA, 512],
    [DATA + 0x1000, 1024],
    [STATUS, 1],
    [HDR, 16],
    [ctx.ring.base, ctx.ring.byteLength],
  ]);
});

test('OUT writes guest data to the disk; FLUSH flushes', () => {
  const backend = new CountingBackend(new Uint8Array(16 * SECTOR));
  const ctx = setup(backend);
  const payload = Uint8Array.from({ length: 2 * SECTOR }, (_, i) => (i * 13) & 0xff);
  ctx.memory.write(DATA, payload);
  const done = submit(ctx, VIRTIO_BLK_T_OUT, 14, [{ addr: DATA, len: 2 * SECTOR, writable: false }]);
  assert.deepEqual(done, { status: VIRTIO_BLK_S_OK, usedLen: 1 });
  assert.deepEqual(backend.bytes.subarray(14 * SECTOR), payload);
  assert.equal(backend.flushes, 0, 'FLUSH negotiated: writes are write-back');
  assert.deepEqual(submit(ctx, VIRTIO_BLK_T_FLUSH, 0), { status: VIRTIO_BLK_S_OK, usedLen: 1 });
  assert.equal(backend.flushes, 1);
});

test('without a negotiated FLUSH every write is flushed (write-through)', () => {
  const backend = new CountingBackend(new Uint8Array(4 * SECTOR));
  const ctx = setup(backend, { readOnly: false }, VIRTIO_F_VERSION_1);
  submit(ctx, VIRTIO_BLK_T_OUT, 0, [{ addr: DATA, len: SECTOR, writable: false }]);
  assert.equal(backend.flushes, 1);
});

test('GET_ID returns the serial, NUL-padded to 20 bytes', () => {
  const ctx = setup(new MemoryBlockBackend(new Uint8Array(SECTOR)), { readOnly: true, serial: 'belljar-root' });
  ctx.memory.fill(DATA, 20, 0xff);
  const done = submit(ctx, VIRTIO_BLK_T_GET_ID, 0, [{ addr: DATA, len: 20, writable: true }]);
  assert.deepEqual(done, { status: VIRTIO_BLK_S_OK, usedLen: 21 });
  const id = ctx.memory.read(DATA, 20);
  assert.equal(Buffer.from(id.subarray(0, 12)).toString('latin1'), 'belljar-root');
  assert.deepEqual([...id.subarray(12)], new Array(8).fill(0));
  assert.throws(
    () => new VirtioBlock(new MemoryBlockBackend(new Uint8Array(0)), { readOnly: true, serial: 'x'.repeat(21) }),
  );
  assert.throws(() => new VirtioBlock(new MemoryBlockBackend(new Uint8Array(0)), { readOnly: true, serial: 'é' }));
});

test('unknown request types are answered UNSUPP', () => {
  const ctx = setup(new MemoryBlockBackend(new Uint8Array(SECTOR)));
  for (const type of [2, 11, 13, 0xffff_ffff]) {
    assert.deepEqual(submit(ctx, type, 0), { status: VIRTIO_BLK_S_UNSUPP, usedLen: 1 }, `type ${type}`);
  }
});

test('requests beyond the disk are IOERR and move no data', () => {
  const disk = patternDisk(8 * SECTOR + 300);
  const backend = new CountingBackend(disk);
  const ctx = setup(backend);
  const before = snapshot(ctx.memory);
  const cases: [number, bigint][] = [
    [VIRTIO_BLK_T_IN, 8n], // first sector past the end (the partial one)
    [VIRTIO_BLK_T_IN, 7n], // 2 sectors starting at the last one
    [VIRTIO_BLK_T_IN, 0xffff_ffff_ffff_ffffn],
    [VIRTIO_BLK_T_IN, 1n << 55n],
    [VIRTIO_BLK_T_OUT, 7n],
    [VIRTIO_BLK_T_OUT, 0xffff_ffff_ffff_fffen],
  ];
  for (const [type, sector] of cases) {
    const done = submit(ctx, type, sector, [{ addr: DATA, len: 2 * SECTOR, writable: type === VIRTIO_BLK_T_IN }]);
    assert.deepEqual(done, { status: VIRTIO_BLK_S_IOERR, usedLen: 1 }, `type ${type} sector ${sector}`);
  }
  assert.equal(backend.writes, 0);
  assertChangedOnlyIn(ctx.memory, before, [
    [HDR, 16],
    [STATUS, 1],
    [ctx.ring.base, ctx.ring.byteLength],
  ]);
  // The last whole sector is readable.
  assert.equal(submit(ctx, VIRTIO_BLK_T_IN, 7n, [{ addr: DATA, len: SECTOR, writable: true }]).status, VIRTIO_BLK_S_OK);
});

test('a write to a read-only disk is IOERR and leaves the disk unchanged', () => {
  const disk = patternDisk(4 * SECTOR);
  const copy = disk.slice();
  const ctx = setup(new MemoryBlockBackend(disk), { readOnly: true });
  ctx.memory.fill(DATA, SECTOR, 0x42);
  const done = submit(ctx, VIRTIO_BLK_T_OUT, 0, [{ addr: DATA, len: SECTOR, writable: false }]);
  assert.deepEqual(done, { status: VIRTIO_BLK_S_IOERR, usedLen: 1 });
  assert.deepEqual(disk, copy);
  assert.equal(submit(ctx, VIRTIO_BLK_T_FLUSH, 0).status, VIRTIO_BLK_S_OK, 'flush of a read-only disk is a no-op');
});

test('data that is not a whole number of sectors, or in the wrong direction, is IOERR', () => {
  const ctx = setup(new MemoryBlockBackend(patternDisk(8 * SECTOR)));
  const bad: [number, GuestBuffer[]][] = [
    [VIRTIO_BLK_T_IN, [{ addr: DATA, len: 100, writable: true }]],
    [VIRTIO_BLK_T_OUT, [{ addr: DATA, len: 513, writable: false }]],
    [VIRTIO_BLK_T_IN, [{ addr: DATA, len: 512, writable: false }]], // IN with a readable data buffer
    [VIRTIO_BLK_T_OUT, [{ addr: DATA, len: 512, writable: true }]], // OUT with a writable data buffer
    [VIRTIO_BLK_T_FLUSH, [{ addr: DATA, len: 512, writable: true }]],
    [VIRTIO_BLK_T_GET_ID, [{ addr: DATA, len: 20, writable: false }]],
  ];
  for (const [type, data] of bad) {
    assert.equal(submit(ctx, type, 0, data).status, VIRTIO_BLK_S_IOERR, JSON.stringify({ type, data }));
  }
  // The device is still healthy afterwards.
  assert.equal(ctx.driver.status & STATUS_DEVICE_NEEDS_RESET, 0);
  assert.equal(submit(ctx, VIRTIO_BLK_T_IN, 0, [{ addr: DATA, len: 512, writable: true }]).status, VIRTIO_BLK_S_OK);
});

test('the header may be split across descriptors and the status may share a buffer with data', () => {
  const disk = patternDisk(4 * SECTOR);
  const ctx = setup(new MemoryBlockBackend(disk));
  writeHeader(ctx.memory, VIRTIO_BLK_T_IN, 1);
  const head = ctx.ring.addChain([
    { addr: HDR, len: 5, writable: false },
    { addr: HDR + 5, len: 11, writable: false },
    { addr: DATA, len: SECTOR + 1, writable: true }, // data and status in one buffer
  ]);
  ctx.driver.notify(0);
  assert.deepEqual(ctx.ring.usedElem(0), { id: head, len: SECTOR + 1 });
  assert.deepEqual(ctx.memory.read(DATA, SECTOR), disk.subarray(SECTOR, 2 * SECTOR));
  assert.equal(ctx.memory.readU8(DATA + SECTOR), VIRTIO_BLK_S_OK);
});

test('a chain with a short header or no status byte puts the device into NEEDS_RESET', () => {
  for (const buffers of [
    [
      { addr: HDR, len: 15, writable: false },
      { addr: STATUS, len: 1, writable: true },
    ],
    [{ addr: HDR, len: 16, writable: false }],
    [{ addr: STATUS, len: 1, writable: true }],
  ]) {
    const ctx = setup(new MemoryBlockBackend(new Uint8Array(SECTOR)));
    writeHeader(ctx.memory, VIRTIO_BLK_T_IN, 0);
    ctx.ring.addChain(buffers);
    const before = snapshot(ctx.memory);
    assert.doesNotThrow(() => ctx.driver.notify(0));
    assert.equal(ctx.driver.status & STATUS_DEVICE_NEEDS_RESET, STATUS_DEVICE_NEEDS_RESET);
    assert.equal(ctx.transport.interruptStatus, 2, 'config-change interrupt');
    assert.equal(ctx.irq.level, true);
    assertChangedOnlyIn(ctx.memory, before, []);
    // Further kicks are ignored until the driver resets the device.
    ctx.ring.addChain([
      { addr: HDR, len: 16, writable: false },
      { addr: STATUS, len: 1, writable: true },
    ]);
    ctx.driver.notify(0);
    assert.equal(ctx.ring.usedIdx, 0);
  }
});

test('hostile chains never throw and never write outside the guest buffers', () => {
  const disk = patternDisk(8 * SECTOR);
  const ctx = setup(new MemoryBlockBackend(disk));
  writeHeader(ctx.memory, VIRTIO_BLK_T_IN, 0);
  // Data descriptor pointing past the end of RAM: refused before any I/O.
  ctx.ring.addChain([
    { addr: HDR, len: 16, writable: false },
    { addr: RAM - 256, len: 512, writable: true },
    { addr: STATUS, len: 1, writable: true },
  ]);
  const before = snapshot(ctx.memory);
  assert.doesNotThrow(() => ctx.driver.notify(0));
  assert.equal(ctx.driver.status & STATUS_DEVICE_NEEDS_RESET, STATUS_DEVICE_NEEDS_RESET);
  assertChangedOnlyIn(ctx.memory, before, []);
});

test('a burst of requests completes in order with one interrupt', () => {
  const disk = patternDisk(64 * SECTOR);
  const ctx = setup(new MemoryBlockBackend(disk));
  const heads: number[] = [];
  for (let i = 0; i < 10; i++) {
    const hdr = HDR + 32 * i;
    ctx.memory.writeU32(hdr, VIRTIO_BLK_T_IN);
    ctx.memory.writeU64(hdr + 8, BigInt(i));
    heads.push(
      ctx.ring.addChain([
        { addr: hdr, len: 16, writable: false },
        { addr: DATA + SECTOR * i, len: SECTOR, writable: true },
        { addr: STATUS + i, len: 1, writable: true },
      ]),
    );
  }
  ctx.driver.notify(0);
  assert.equal(ctx.ring.usedIdx, 10);
  heads.forEach((head, i) => {
    assert.deepEqual(ctx.ring.usedElem(i), { id: head, len: SECTOR + 1 });
    assert.equal(ctx.memory.readU8(STATUS + i), VIRTIO_BLK_S_OK);
  });
  assert.deepEqual(ctx.memory.read(DATA, 10 * SECTOR), disk.subarray(0, 10 * SECTOR));
  assert.deepEqual(ctx.irq.history, [true]);
});

test('backend failures are answered IOERR', () => {
  const failing: BlockBackend = {
    size: 8 * SECTOR,
    read: () => {
      throw new Error('EIO');
    },
    write: () => {
      throw new Error('EIO');
    },
    flush: () => {
      throw new Error('EIO');
    },
  };
  const ctx = setup(failing);
  assert.equal(
    submit(ctx, VIRTIO_BLK_T_IN, 0, [{ addr: DATA, len: SECTOR, writable: true }]).status,
    VIRTIO_BLK_S_IOERR,
  );
  assert.equal(
    submit(ctx, VIRTIO_BLK_T_OUT, 0, [{ addr: DATA, len: SECTOR, writable: false }]).status,
    VIRTIO_BLK_S_IOERR,
  );
  assert.equal(submit(ctx, VIRTIO_BLK_T_FLUSH, 0).status, VIRTIO_BLK_S_IOERR);
  assert.equal(ctx.driver.status & STATUS_DEVICE_NEEDS_RESET, 0);
});

test('the file backend reads and writes a real file at the right offsets', () => {
  const dir = mkdtempSync(join(tmpdir(), 'belljar-blk-'));
  try {
    const path = join(dir, 'disk.img');
    const image = patternDisk(32 * SECTOR + 17);
    writeFileSync(path, image);

    const rw = FileBlockBackend.open(path, false);
    try {
      const ctx = setup(rw);
      assert.equal(readConfig64(ctx.transport, 0), 32n);
      const read = submit(ctx, VIRTIO_BLK_T_IN, 5, [
        { addr: DATA, len: SECTOR, writable: true },
        { addr: DATA + 0x2000, len: 2 * SECTOR, writable: true },
      ]);
      assert.deepEqual(read, { status: VIRTIO_BLK_S_OK, usedLen: 3 * SECTOR + 1 });
      assert.deepEqual(ctx.memory.read(DATA, SECTOR), image.subarray(5 * SECTOR, 6 * SECTOR));
      assert.deepEqual(ctx.memory.read(DATA + 0x2000, 2 * SECTOR), image.subarray(6 * SECTOR, 8 * SECTOR));

      const payload = Uint8Array.from({ length: 2 * SECTOR }, (_, i) => 255 - (i & 0xff));
      ctx.memory.write(DATA, payload);
      const wrote = submit(ctx, VIRTIO_BLK_T_OUT, 30, [
        { addr: DATA, len: SECTOR, writable: false },
        { addr: DATA + SECTOR, len: SECTOR, writable: false },
      ]);
      assert.deepEqual(wrote, { status: VIRTIO_BLK_S_OK, usedLen: 1 });
      assert.equal(submit(ctx, VIRTIO_BLK_T_FLUSH, 0).status, VIRTIO_BLK_S_OK);
      const after = new Uint8Array(readFileSync(path));
      assert.deepEqual(after.subarray(30 * SECTOR, 32 * SECTOR), payload);
      assert.deepEqual(after.subarray(0, 30 * SECTOR), image.subarray(0, 30 * SECTOR));
      assert.deepEqual(after.subarray(32 * SECTOR), image.subarray(32 * SECTOR), 'trailing bytes untouched');
    } finally {
      rw.close();
    }

    const ro = FileBlockBackend.open(path, true);
    try {
      const ctx = setup(ro, { readOnly: true });
      const snapshotOfFile = readFileSync(path);
      const done = submit(ctx, VIRTIO_BLK_T_OUT, 0, [{ addr: DATA, len: SECTOR, writable: false }]);
      assert.equal(done.status, VIRTIO_BLK_S_IOERR);
      assert.deepEqual(readFileSync(path), snapshotOfFile);
      // Even a device that forgot it was read-only could not write: O_RDONLY.
      assert.throws(() => ro.write(0, new Uint8Array(SECTOR)));
    } finally {
      ro.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
