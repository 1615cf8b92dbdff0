import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { pipeline } from 'node:stream';
import { GuestMemory } from '../../vmm/memory/guest-memory.js';
import { VirtioMmioTransport } from '../../vmm/devices/virtio/mmio-transport.js';
import { MMIO_DEVICE_ID, STATUS_DEVICE_NEEDS_RESET, VIRTIO_F_VERSION_1 } from '../../vmm/devices/virtio/constants.js';
import { VirtioVsock, VSOCK_DEFAULTS, VSOCK_EPHEMERAL_PORT_BASE } from '../../vmm/devices/virtio/vsock/device.js';
import type { VirtioVsockOptions, VsockEvent } from '../../vmm/devices/virtio/vsock/device.js';
import { ByteQueue } from '../../vmm/devices/virtio/vsock/byte-queue.js';
import { VsockError } from '../../vmm/devices/virtio/vsock/connection.js';
import type { VsockConnection } from '../../vmm/devices/virtio/vsock/connection.js';
import {
  VSOCK_HDR_SIZE,
  VSOCK_OP_CREDIT_REQUEST,
  VSOCK_OP_CREDIT_UPDATE,
  VSOCK_OP_INVALID,
  VSOCK_OP_REQUEST,
  VSOCK_OP_RESPONSE,
  VSOCK_OP_RST,
  VSOCK_OP_RW,
  VSOCK_OP_SHUTDOWN,
  VSOCK_SHUTDOWN_RCV,
  VSOCK_SHUTDOWN_SEND,
  VSOCK_TYPE_SEQPACKET,
  VSOCK_TYPE_STREAM,
  decodeHeader,
  encodeHeader,
  opName,
} from '../../vmm/devices/virtio/vsock/packet.js';
import type { VsockHeader } from '../../vmm/devices/virtio/vsock/packet.js';
import type { GuestBuffer, GuestRing } from './virtio-harness.js';
import { assertChangedOnlyIn, FakeIrq, GuestDriver, readConfig64, snapshot } from './virtio-harness.js';

// ---------------------------------------------------------------- a guest driver, the Linux way

const RAM = 0x40_0000; // 4 MiB
const RX_RING = 0x1000;
const TX_RING = 0x4000;
const EVENT_RING = 0x7000;
/** RX buffer slots: header 44 bytes at +0, data 4096 bytes at +64 (split) or 4140 bytes at +0 (linear). */
const RX_SLOTS = 0x10_0000;
const RX_SLOT_SIZE = 0x1100;
const RX_SLOT_COUNT = 160;
const RX_DATA_OFFSET = 64;
const RX_BUF = 4096; // Linux's VIRTIO_VSOCK_DEFAULT_RX_BUF_SIZE
const TX_BUF = 0x28_0000;
const EVENT_BUFS = 0x30_0000;
const CID = 7;
const GUEST_BUF_ALLOC = 256 * 1024;

/** Linux ≤ 6.1 posts header and data as two descriptors; later kernels use one. */
type RxLayout = 'split' | 'linear';

interface Packet {
  readonly hdr: VsockHeader;
  readonly payload: Buffer;
  readonly usedLen: number;
}

type HeaderFields = Partial<VsockHeader> & { readonly op: number; readonly srcPort: number; readonly dstPort: number };

const tick = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/** Let microtasks, nextTicks and stream callbacks run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 4; i++) await tick();
}

interface GuestOptions {
  device?: Partial<VirtioVsockOptions>;
  memory?: GuestMemory;
  layout?: RxLayout;
  rxBuffers?: number;
  /** Bring the driver up (default true). */
  up?: boolean;
}

class Guest {
  readonly memory: GuestMemory;
  readonly irq = new FakeIrq();
  readonly device: VirtioVsock;
  readonly transport: VirtioMmioTransport;
  readonly driver: GuestDriver;
  readonly events: VsockEvent[] = [];
  readonly layout: RxLayout;
  /** Refill one RX buffer for every one the device used (Linux refills at half; close enough). */
  autoRefill = true;
  rx!: GuestRing;
  tx!: GuestRing;
  ev!: GuestRing;
  /** Guest RAM right after bring-up. */
  before!: Uint8Array;
  private readonly rxBuffers: number;
  private rxSeen = 0;
  private evSeen = 0;
  private nextSlot = 0;
  private readonly slotOf = new Map<number, number>();

  constructor(options: GuestOptions = {}) {
    this.memory = options.memory ?? GuestMemory.allocate(RAM);
    this.layout = options.layout ?? 'split';
    this.rxBuffers = options.rxBuffers ?? 32;
    this.device = new VirtioVsock({ guestCid: CID, onEvent: (e) => this.events.push(e), ...options.device });
    this.transport = new VirtioMmioTransport(this.device, this.memory, this.irq);
    this.driver = new GuestDriver(this.transport, this.memory);
    if (options.up !== false) this.up();
  }

  /** virtio_vsock_probe: negotiate, three queues, DRIVER_OK, fill rx and event queues. */
  up(): void {
    this.rxSeen = 0;
    this.evSeen = 0;
    this.slotOf.clear();
    this.memory.fill(RX_RING, EVENT_RING + 0x1000 - RX_RING); // fresh rings, as the driver allocates them
    assert.ok(this.driver.negotiate());
    this.rx = this.driver.setupQueue(0, RX_RING);
    this.tx = this.driver.setupQueue(1, TX_RING);
    this.ev = this.driver.setupQueue(2, EVENT_RING);
    this.driver.driverOk();
    assert.equal(this.driver.status & STATUS_DEVICE_NEEDS_RESET, 0);
    this.before = snapshot(this.memory);
    for (let i = 0; i < 8; i++) this.ev.addChain([{ addr: EVENT_BUFS + 16 * i, len: 4, writable: true }]);
    this.driver.notify(2);
    this.addRxBuffers(this.rxBuffers);
  }

  /** Post `n` RX buffers and kick once. */
  addRxBuffers(n: number): void {
    for (let i = 0; i < n; i++) {
      const slot = this.nextSlot++ % RX_SLOT_COUNT;
      const base = RX_SLOTS + slot * RX_SLOT_SIZE;
      const buffers: GuestBuffer[] =
        this.layout === 'split'
          ? [
              { addr: base, len: VSOCK_HDR_SIZE, writable: true },
              { addr: base + RX_DATA_OFFSET, len: RX_BUF, writable: true },
            ]
          : [{ addr: base, len: VSOCK_HDR_SIZE + RX_BUF, writable: true }];
      this.slotOf.set(this.rx.addChain(buffers), slot);
    }
    assert.doesNotThrow(() => this.driver.notify(0));
  }

  /** Post one arbitrary RX chain (hostile tests). */
  addRxChain(buffers: GuestBuffer[]): number {
    const head = this.rx.addChain(buffers);
    this.slotOf.delete(head);
    return head;
  }

  /** Write one packet into the TX buffer and kick: header and payload as two descriptors (or `cuts`). */
  send(fields: HeaderFields, payload: Uint8Array = new Uint8Array(0), cuts?: readonly number[]): void {
    const header = encodeHeader({
      srcCid: BigInt(CID),
      dstCid: 2n,
      len: payload.length,
      type: VSOCK_TYPE_STREAM,
      flags: 0,
      bufAlloc: GUEST_BUF_ALLOC,
      fwdCnt: 0,
      ...fields,
    });
    this.memory.write(TX_BUF, header);
    this.memory.write(TX_BUF + VSOCK_HDR_SIZE, payload);
    const total = VSOCK_HDR_SIZE + payload.length;
    const sizes = cuts ?? (payload.length > 0 ? [VSOCK_HDR_SIZE, payload.length] : [VSOCK_HDR_SIZE]);
    const buffers: GuestBuffer[] = [];
    let at = 0;
    for (const size of sizes) {
      buffers.push({ addr: TX_BUF + at, len: size, writable: false });
      at += size;
    }
    assert.equal(at, total, 'cuts cover the packet');
    this.sendChain(buffers);
  }

  /** Post a raw TX chain and kick; the device always consumes it (used length 0). */
  sendChain(buffers: GuestBuffer[]): void {
    const usedBefore = this.tx.usedIdx;
    const head = this.tx.addChain(buffers);
    assert.doesNotThrow(() => this.driver.notify(1));
    assert.equal(this.tx.usedIdx, (usedBefore + 1) & 0xffff, 'tx chain consumed');
    assert.deepEqual(this.tx.usedElem(usedBefore), { id: head, len: 0 });
  }

  /** virtio_transport_rx_work: take every used RX buffer (refilling), after host work has run. */
  async recv(): Promise<Packet[]> {
    await settle();
    return this.poll();
  }

  poll(): Packet[] {
    const packets: Packet[] = [];
    for (;;) {
      let taken = 0;
      while (this.rxSeen !== this.rx.usedIdx) {
        const used = this.rx.usedElem(this.rxSeen);
        this.rxSeen = (this.rxSeen + 1) & 0xffff;
        taken++;
        const slot = this.slotOf.get(used.id);
        this.slotOf.delete(used.id);
        if (slot === undefined || used.len < VSOCK_HDR_SIZE) continue; // Linux drops short packets
        const base = RX_SLOTS + slot * RX_SLOT_SIZE;
        const hdr = decodeHeader(this.memory.read(base, VSOCK_HDR_SIZE));
        assert.ok(used.len <= VSOCK_HDR_SIZE + RX_BUF, 'packet fits the buffer');
        assert.equal(used.len, VSOCK_HDR_SIZE + hdr.len, 'used length = header + len');
        const dataAt = this.layout === 'split' ? base + RX_DATA_OFFSET : base + VSOCK_HDR_SIZE;
        packets.push({ hdr, payload: Buffer.from(this.memory.read(dataAt, hdr.len)), usedLen: used.len });
      }
      this.driver.ackInterrupt();
      if (taken === 0 || !this.autoRefill) break;
      this.addRxBuffers(taken); // may produce more packets synchronously
    }
    for (const p of packets) {
      assert.equal(p.hdr.srcCid, 2n, 'from the host');
      assert.equal(p.hdr.dstCid, BigInt(CID), 'to us');
    }
    return packets;
  }

  /** Event records the device completed since the last call. */
  pollEvents(): { id: number; len: number }[] {
    const out: { id: number; len: number }[] = [];
    while (this.evSeen !== this.ev.usedIdx) {
      const used = this.ev.usedElem(this.evSeen);
      this.evSeen = (this.evSeen + 1) & 0xffff;
      out.push({ id: this.memory.readU32(EVENT_BUFS + 16 * used.id), len: used.len });
    }
    return out;
  }

  /** The ranges the device may write: rings, RX buffers (exactly), event buffers (exactly), and the TX area we write. */
  allowed(): [number, number][] {
    const ranges: [number, number][] = [
      [this.rx.base, this.rx.byteLength],
      [this.tx.base, this.tx.byteLength],
      [this.ev.base, this.ev.byteLength],
      [TX_BUF, VSOCK_HDR_SIZE + 0x2_0000],
    ];
    for (let i = 0; i < 8; i++) ranges.push([EVENT_BUFS + 16 * i, 4]);
    for (let slot = 0; slot < RX_SLOT_COUNT; slot++) {
      const base = RX_SLOTS + slot * RX_SLOT_SIZE;
      if (this.layout === 'split') {
        ranges.push([base, VSOCK_HDR_SIZE], [base + RX_DATA_OFFSET, RX_BUF]);
      } else {
        ranges.push([base, VSOCK_HDR_SIZE + RX_BUF]);
      }
    }
    return ranges;
  }

  assertMemoryClean(): void {
    assertChangedOnlyIn(this.memory, this.before, this.allowed());
  }

  assertHealthy(): void {
    assert.equal(this.driver.status & STATUS_DEVICE_NEEDS_RESET, 0, 'device did not ask for a reset');
  }
}

function ops(packets: readonly Packet[]): string[] {
  return packets.map((p) => opName(p.hdr.op));
}

function only(packets: readonly Packet[], op?: number): Packet {
  assert.equal(packets.length, 1, `one packet expected, got ${ops(packets).join(', ') || 'none'}`);
  const p = packets[0]!;
  if (op !== undefined) assert.equal(opName(p.hdr.op), opName(op));
  return p;
}

function bytes(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return b;
}

/** Accept connections on `port`, collecting them. */
function accepting(g: Guest, port: number): VsockConnection[] {
  const conns: VsockConnection[] = [];
  g.device.listen(port, (c) => conns.push(c));
  return conns;
}

/** Guest connect(): REQUEST, expect RESPONSE, return the host's connection. */
async function guestConnect(
  g: Guest,
  conns: VsockConnection[],
  guestPort: number,
  hostPort: number,
  bufAlloc = GUEST_BUF_ALLOC,
): Promise<VsockConnection> {
  const n = conns.length;
  g.send({ op: VSOCK_OP_REQUEST, srcPort: guestPort, dstPort: hostPort, bufAlloc });
  const response = only(await g.recv(), VSOCK_OP_RESPONSE);
  assert.equal(response.hdr.srcPort, hostPort);
  assert.equal(response.hdr.dstPort, guestPort);
  assert.equal(conns.length, n + 1, 'handler called');
  return conns[n]!;
}

/** Collect everything the host reads from `conn`. */
function collect(conn: VsockConnection): { data: () => Buffer; ended: () => boolean } {
  const chunks: Buffer[] = [];
  let ended = false;
  conn.on('data', (c: Buffer) => chunks.push(c));
  conn.on('end', () => (ended = true));
  return { data: () => Buffer.concat(chunks), ended: () => ended };
}

/** Promise of 'close', failing on 'error'. */
function closed(conn: VsockConnection): Promise<void> {
  return new Promise((resolve, reject) => {
    conn.on('error', reject);
    conn.on('close', () => resolve());
  });
}

/**
 * The guest side of one connection, with Linux's credit rules: never send
 * beyond the host's credit, advertise our own buf_alloc/fwd_cnt, and send
 * CREDIT_UPDATE after reading when free space < 64 KiB or nothing is left.
 */
class GuestSocket {
  txCnt = 0;
  rxCnt = 0;
  fwdCnt = 0;
  peerBufAlloc = 0;
  peerFwdCnt = 0;
  readonly received: Buffer[] = [];
  unread = 0;
  lastFwdSent = 0;

  constructor(
    readonly g: Guest,
    readonly port: number,
    readonly hostPort: number,
    readonly bufAlloc = GUEST_BUF_ALLOC,
  ) {}

  credit(): number {
    return Math.max(0, this.peerBufAlloc - ((this.txCnt - this.peerFwdCnt) >>> 0));
  }

  private send(op: number, payload?: Uint8Array, flags = 0): void {
    this.lastFwdSent = this.fwdCnt;
    this.g.send(
      { op, srcPort: this.port, dstPort: this.hostPort, bufAlloc: this.bufAlloc, fwdCnt: this.fwdCnt >>> 0, flags },
      payload,
    );
  }

  connect(): void {
    this.send(VSOCK_OP_REQUEST);
  }

  /** Send as much of `data` as the host's credit allows; returns the bytes sent. */
  write(data: Uint8Array): number {
    let sent = 0;
    while (sent < data.length) {
      const n = Math.min(this.credit(), data.length - sent, 64 * 1024);
      if (n === 0) break;
      this.send(VSOCK_OP_RW, data.subarray(sent, sent + n));
      this.txCnt = (this.txCnt + n) >>> 0;
      sent += n;
    }
    return sent;
  }

  shutdown(flags: number): void {
    this.send(VSOCK_OP_SHUTDOWN, undefined, flags);
  }

  creditRequest(): void {
    this.send(VSOCK_OP_CREDIT_REQUEST);
  }

  /** Take our packets out of `packets`, applying them; returns the others. */
  absorb(packets: readonly Packet[]): Packet[] {
    const rest: Packet[] = [];
    for (const p of packets) {
      if (p.hdr.dstPort !== this.port || p.hdr.srcPort !== this.hostPort) {
        rest.push(p);
        continue;
      }
      this.peerBufAlloc = p.hdr.bufAlloc;
      this.peerFwdCnt = p.hdr.fwdCnt;
      if (p.hdr.op === VSOCK_OP_RW) {
        this.rxCnt += p.hdr.len;
        this.unread += p.hdr.len;
        assert.ok(this.unread <= this.bufAlloc, 'the host never exceeds our credit');
        this.received.push(p.payload);
      } else if (p.hdr.op === VSOCK_OP_CREDIT_REQUEST) {
        this.send(VSOCK_OP_CREDIT_UPDATE);
      } else if (p.hdr.op !== VSOCK_OP_CREDIT_UPDATE) {
        rest.push(p);
      }
    }
    return rest;
  }

  /** The application read everything: account it and tell the host as Linux would. */
  readAll(): void {
    this.fwdCnt += this.unread;
    this.unread = 0;
    const delta = this.fwdCnt - this.lastFwdSent;
    if (delta > 0 && (this.bufAlloc - delta < 64 * 1024 || this.unread === 0)) this.send(VSOCK_OP_CREDIT_UPDATE);
  }

  data(): Buffer {
    return Buffer.concat(this.received);
  }
}

// ---------------------------------------------------------------- identity and configuration

test('virtio-vsock identifies itself: device 19, three queues, no features, guest_cid in config', () => {
  const g = new Guest();
  assert.equal(g.driver.read(MMIO_DEVICE_ID), 19);
  assert.equal(g.transport.deviceFeatures, VIRTIO_F_VERSION_1);
  assert.equal(g.transport.queueCount, 3);
  assert.deepEqual(g.device.queueMaxSizes, [256, 256, 16]);
  assert.equal(readConfig64(g.transport, 0), BigInt(CID));
  assert.equal(readConfig64(g.transport, 8), 0n, 'nothing after guest_cid');
  assert.equal(g.transport.activated, true);
});

test('the guest CID must be at least 3 and not VMADDR_CID_ANY; options are checked', () => {
  for (const guestCid of [0, 1, 2, -1, 3.5, 0xffff_ffff, 2 ** 40, Number.NaN]) {
    assert.throws(() => new VirtioVsock({ guestCid }), RangeError, `cid ${guestCid}`);
  }
  assert.equal(new VirtioVsock({ guestCid: 0xffff_fffe }).guestCid, 0xffff_fffe);
  assert.throws(() => new VirtioVsock({ guestCid: 3, queueSize: 100 }), RangeError);
  assert.throws(() => new VirtioVsock({ guestCid: 3, bufAlloc: 0 }), RangeError);
  assert.throws(() => new VirtioVsock({ guestCid: 3, maxGuestConnections: -1 }), RangeError);
  const d = new VirtioVsock({ guestCid: 3 });
  assert.throws(() => d.listen(0xffff_ffff, () => {}), RangeError);
  d.listen(80, () => {});
  assert.throws(() => d.listen(80, () => {}), /already listening/);
});

test('activation needs all three queues', () => {
  const g = new Guest({ up: false });
  assert.ok(g.driver.negotiate());
  g.driver.setupQueue(0, RX_RING);
  g.driver.setupQueue(1, TX_RING);
  g.driver.driverOk();
  assert.equal(g.transport.activated, false);
  assert.equal(g.driver.status & STATUS_DEVICE_NEEDS_RESET, STATUS_DEVICE_NEEDS_RESET);
});

// ---------------------------------------------------------------- guest → host connections

test('guest connect: REQUEST to a listening port gets RESPONSE with our credit, and the handler a Duplex', async () => {
  for (const layout of ['split', 'linear'] as const) {
    const g = new Guest({ layout });
    const conns = accepting(g, 3128);
    g.send({ op: VSOCK_OP_REQUEST, srcPort: 50_000, dstPort: 3128, bufAlloc: 65536 });
    const response = only(await g.recv(), VSOCK_OP_RESPONSE);
    assert.deepEqual(response.hdr, {
      srcCid: 2n,
      dstCid: BigInt(CID),
      srcPort: 3128,
      dstPort: 50_000,
      len: 0,
      type: VSOCK_TYPE_STREAM,
      op: VSOCK_OP_RESPONSE,
      flags: 0,
      bufAlloc: VSOCK_DEFAULTS.bufAlloc,
      fwdCnt: 0,
    });
    assert.equal(response.usedLen, VSOCK_HDR_SIZE);
    assert.equal(conns.length, 1);
    const conn = conns[0]!;
    assert.equal(conn.guestCid, CID);
    assert.equal(conn.guestPort, 50_000);
    assert.equal(conn.hostPort, 3128);
    assert.equal(conn.initiator, 'guest');
    assert.equal(conn.closeReason, null);
    assert.equal(g.device.connectionCount, 1);
    assert.equal(g.device.stats.accepted, 1);
    g.assertMemoryClean();
    g.assertHealthy();
  }
});

test('data flows both ways; the guest gets it in RX buffers and nothing else in RAM changes', async () => {
  for (const layout of ['split', 'linear'] as const) {
    const g = new Guest({ layout });
    const conns = accepting(g, 3128);
    const conn = await guestConnect(g, conns, 50_001, 3128);
    const got = collect(conn);

    g.send({ op: VSOCK_OP_RW, srcPort: 50_001, dstPort: 3128 }, Buffer.from('GET / HTTP/1.1\r\n\r\n'));
    await settle();
    assert.equal(got.data().toString(), 'GET / HTTP/1.1\r\n\r\n');

    let written = false;
    conn.write('HTTP/1.1 200 OK\r\n\r\nhello', () => (written = true));
    const reply = only(await g.recv(), VSOCK_OP_RW);
    assert.equal(reply.payload.toString(), 'HTTP/1.1 200 OK\r\n\r\nhello');
    assert.equal(reply.hdr.srcPort, 3128);
    assert.equal(reply.hdr.dstPort, 50_001);
    assert.equal(reply.usedLen, VSOCK_HDR_SIZE + 24);
    assert.equal(reply.hdr.fwdCnt, 18, 'our fwd_cnt counts what the host consumed');
    await settle();
    assert.ok(written, 'write callback once the bytes are in guest memory');

    // A payload bigger than one RX buffer is split over several packets.
    const big = bytes(10_000);
    conn.write(big);
    const packets = await g.recv();
    assert.deepEqual(ops(packets), ['RW', 'RW', 'RW']);
    assert.deepEqual(
      packets.map((p) => p.hdr.len),
      [4096, 4096, 1808],
    );
    assert.deepEqual(Buffer.concat(packets.map((p) => p.payload)), big);
    g.assertMemoryClean();
    g.assertHealthy();
  }
});

test('the packet header may be split across descriptors in any way', async () => {
  const g = new Guest();
  const conns = accepting(g, 9);
  g.send({ op: VSOCK_OP_REQUEST, srcPort: 1, dstPort: 9 }, undefined, [10, 30, 4]);
  only(await g.recv(), VSOCK_OP_RESPONSE);
  const got = collect(conns[0]!);
  const payload = bytes(300);
  g.send({ op: VSOCK_OP_RW, srcPort: 1, dstPort: 9 }, payload, [1, 43, 100, 200]);
  g.send({ op: VSOCK_OP_RW, srcPort: 1, dstPort: 9 }, payload, [VSOCK_HDR_SIZE + 300]);
  await settle();
  assert.deepEqual(got.data(), Buffer.concat([payload, payload]));
  g.assertHealthy();
});

test('a REQUEST to a port nobody listens on is answered RST; closing a listener refuses new connections', async () => {
  const g = new Guest();
  g.send({ op: VSOCK_OP_REQUEST, srcPort: 40_000, dstPort: 1234 });
  const rst = only(await g.recv(), VSOCK_OP_RST);
  assert.equal(rst.hdr.srcPort, 1234);
  assert.equal(rst.hdr.dstPort, 40_000);
  assert.equal(rst.hdr.type, VSOCK_TYPE_STREAM);
  assert.equal(g.device.stats.refusedNoListener, 1);
  assert.equal(g.device.connectionCount, 0);

  const conns: VsockConnection[] = [];
  const listener = g.device.listen(1234, (c) => conns.push(c));
  await guestConnect(g, conns, 40_001, 1234);
  listener.close();
  g.send({ op: VSOCK_OP_REQUEST, srcPort: 40_002, dstPort: 1234 });
  only(await g.recv(), VSOCK_OP_RST);
  assert.equal(conns.length, 1);
  assert.equal(g.device.connectionCount, 1, 'the open connection survives');
});

// ---------------------------------------------------------------- credit

test('host → guest data never exceeds the guest credit; CREDIT_REQUEST once when stalled; CREDIT_UPDATE resumes', async () => {
  const g = new Guest();
  const conns = accepting(g, 3128);
  const sock = new GuestSocket(g, 50_010, 3128, 10_000);
  sock.connect();
  assert.deepEqual(ops(sock.absorb(await g.recv())), ['RESPONSE']);
  const conn = conns[0]!;

  const data = bytes(30_000, 3);
  let done = false;
  conn.write(data, () => (done = true));
  let rest = sock.absorb(await g.recv());
  assert.equal(sock.rxCnt, 10_000, 'exactly the advertised buf_alloc');
  assert.deepEqual(ops(rest), [], 'RW packets only…');
  // …and one CREDIT_REQUEST, which our GuestSocket answered with a CREDIT_UPDATE
  // that still shows no space (nothing read yet): the host stays quiet.
  rest = sock.absorb(await g.recv());
  assert.deepEqual(ops(rest), []);
  assert.equal(sock.rxCnt, 10_000);
  assert.equal(done, false, 'the write is not complete');

  // The guest reads; Linux-style CREDIT_UPDATE; the next 10 000 bytes come.
  sock.readAll();
  sock.absorb(await g.recv());
  assert.equal(sock.rxCnt, 20_000);
  sock.readAll();
  sock.absorb(await g.recv());
  assert.equal(sock.rxCnt, 30_000);
  await settle();
  assert.equal(done, true);
  assert.deepEqual(sock.data(), data);
  g.assertHealthy();
});

test('exactly one CREDIT_REQUEST per stall', async () => {
  const g = new Guest();
  const conns = accepting(g, 5);
  g.send({ op: VSOCK_OP_REQUEST, srcPort: 77, dstPort: 5, bufAlloc: 4096 });
  only(await g.recv(), VSOCK_OP_RESPONSE);
  conns[0]!.write(bytes(8192));
  assert.deepEqual(ops(await g.recv()), ['RW', 'CREDIT_REQUEST']);
  // A CREDIT_UPDATE that grants nothing does not trigger another request.
  g.send({ op: VSOCK_OP_CREDIT_UPDATE, srcPort: 77, dstPort: 5, bufAlloc: 4096, fwdCnt: 0 });
  assert.deepEqual(ops(await g.recv()), []);
  // Space appears: data, then (stalled again) one more request.
  g.send({ op: VSOCK_OP_CREDIT_UPDATE, srcPort: 77, dstPort: 5, bufAlloc: 4096, fwdCnt: 4096 });
  assert.deepEqual(ops(await g.recv()), ['RW']);
  g.assertHealthy();
});

test('guest → host: our buf_alloc bounds what the guest may send; beyond it the connection is reset', async () => {
  const g = new Guest({ device: { bufAlloc: 16 * 1024 } });
  const conns = accepting(g, 3128);
  const conn = await guestConnect(g, conns, 50_020, 3128);
  const done = closed(conn);
  // The host does not read (paused stream, no 'data' listener): the guest fills our buffer exactly.
  for (let i = 0; i < 4; i++) g.send({ op: VSOCK_OP_RW, srcPort: 50_020, dstPort: 3128 }, bytes(4096, i));
  await settle();
  assert.deepEqual(ops(await g.recv()), [], 'within credit: no answer');
  assert.ok(g.device.queuedBytes + conn.readableLength <= 16 * 1024 + VSOCK_DEFAULTS.highWaterMark);
  assert.equal(g.device.connectionCount, 1);

  // One byte more than we advertised.
  g.send({ op: VSOCK_OP_RW, srcPort: 50_020, dstPort: 3128 }, Buffer.from('!'));
  const rst = only(await g.recv(), VSOCK_OP_RST);
  assert.equal(rst.hdr.dstPort, 50_020);
  await done;
  assert.equal(conn.closeReason, 'credit-overflow');
  assert.equal(g.device.connectionCount, 0);
  assert.equal(g.device.queuedBytes, 0, 'queued data freed');
  g.assertHealthy();
});

test('a flood of 1-byte packets within credit is queued as bytes, not as packets, and arrives intact', async () => {
  const g = new Guest({ device: { bufAlloc: 4096 } });
  const conns = accepting(g, 3128);
  const conn = await guestConnect(g, conns, 50_025, 3128);
  const data = bytes(4096, 4);
  for (let i = 0; i < data.length; i++)
    g.send({ op: VSOCK_OP_RW, srcPort: 50_025, dstPort: 3128 }, data.subarray(i, i + 1));
  assert.equal(g.device.queuedBytes, 4096, 'all of it waits in the connection, within buf_alloc');
  assert.equal(conn.readableLength, 0, 'nothing in Node until the host reads');
  g.send({ op: VSOCK_OP_RW, srcPort: 50_025, dstPort: 3128 }, Buffer.from('+'));
  only(await g.recv(), VSOCK_OP_RST);
  assert.equal(conn.closeReason, 'credit-overflow');
  assert.equal(g.device.queuedBytes, 0);

  // Within credit, read as it comes: a handful of chunks, not 4096.
  const conn2 = await guestConnect(g, conns, 50_026, 3128);
  conn2.pause();
  for (let i = 0; i < data.length; i++)
    g.send({ op: VSOCK_OP_RW, srcPort: 50_026, dstPort: 3128 }, data.subarray(i, i + 1));
  const chunks: Buffer[] = [];
  conn2.on('data', (c: Buffer) => chunks.push(c));
  conn2.resume();
  await settle();
  assert.deepEqual(Buffer.concat(chunks), data);
  assert.ok(chunks.length <= 2, `${chunks.length} chunks`);
  g.assertHealthy();
});

test('ByteQueue: FIFO across wrap-around, grows by doubling up to max, frees itself when empty', () => {
  const q = new ByteQueue(10_000);
  const put = (data: Buffer): void =>
    q.append(data.length, (offset, into) => into.set(data.subarray(offset, offset + into.length)));
  assert.equal(q.take(10), null);
  put(bytes(3000, 1));
  assert.equal(q.capacity, 4096);
  assert.deepEqual(q.take(2000), bytes(3000, 1).subarray(0, 2000));
  put(bytes(2000, 2)); // wraps: 1000 at the end, 1000 at the start
  assert.equal(q.capacity, 4096);
  assert.equal(q.length, 3000);
  put(bytes(6000, 3)); // 9000 bytes: grows past 8192 to max (10 000), unwrapping
  assert.equal(q.capacity, 10_000);
  assert.deepEqual(q.take(100_000), Buffer.concat([bytes(3000, 1).subarray(2000), bytes(2000, 2), bytes(6000, 3)]));
  assert.equal(q.length, 0);
  assert.equal(q.capacity, 0, 'freed when drained');
  assert.throws(() => put(Buffer.alloc(10_001)), RangeError);
  put(Buffer.alloc(10));
  q.clear();
  assert.equal(q.length, 0);
  assert.equal(q.capacity, 0);
});

test('the host advertises freed space: CREDIT_UPDATE when the guest runs low, and on CREDIT_REQUEST', async () => {
  const g = new Guest({ device: { bufAlloc: 16 * 1024, highWaterMark: 1024 } });
  const conns = accepting(g, 3128);
  const sock = new GuestSocket(g, 50_030, 3128);
  sock.connect();
  sock.absorb(await g.recv());
  const conn = conns[0]!;
  assert.equal(sock.credit(), 16 * 1024);

  const data = bytes(16 * 1024, 9);
  assert.equal(sock.write(data), 16 * 1024);
  assert.equal(sock.credit(), 0, 'guest out of credit');
  assert.deepEqual(ops(await g.recv()), [], 'host has not read yet');

  sock.creditRequest();
  const update = only(await g.recv(), VSOCK_OP_CREDIT_UPDATE);
  assert.equal(update.hdr.bufAlloc, 16 * 1024);
  // Node pulled up to its high-water mark into the Duplex buffer: that much is forwarded.
  assert.ok(update.hdr.fwdCnt <= 2048, `fwd_cnt ${update.hdr.fwdCnt}`);

  // The host reads everything: the guest hears about the space without asking.
  const got = collect(conn);
  const packets = await g.recv();
  sock.absorb(packets);
  assert.ok(packets.length >= 1 && packets.every((p) => p.hdr.op === VSOCK_OP_CREDIT_UPDATE));
  assert.equal(sock.peerFwdCnt, 16 * 1024, 'all consumed and reported');
  assert.equal(sock.credit(), 16 * 1024);
  assert.deepEqual(got.data(), data);

  // Guest within a comfortable credit: no update chatter for small reads.
  sock.write(bytes(100));
  await settle();
  assert.deepEqual(ops(await g.recv()), []);
  g.assertHealthy();
});

test('large transfers both ways with credit flow control end to end', async () => {
  const g = new Guest({ device: { bufAlloc: 64 * 1024 } });
  const conns = accepting(g, 3128);
  const sock = new GuestSocket(g, 50_040, 3128, 32 * 1024);
  sock.connect();
  sock.absorb(await g.recv());
  const conn = conns[0]!;
  const got = collect(conn);

  const up = bytes(1024 * 1024, 11);
  const down = bytes(1024 * 1024, 12);
  let downDone = false;
  conn.write(down, () => (downDone = true));
  let sent = 0;
  for (let rounds = 0; rounds < 2000 && (sent < up.length || !downDone); rounds++) {
    sent += sock.write(up.subarray(sent));
    sock.absorb(await g.recv());
    sock.readAll();
  }
  await settle();
  assert.equal(sent, up.length);
  assert.deepEqual(got.data(), up);
  assert.ok(downDone);
  assert.deepEqual(sock.data(), down);
  g.assertMemoryClean();
  g.assertHealthy();
});

// ---------------------------------------------------------------- host → guest connections

test('host connect: REQUEST from an ephemeral port, RESPONSE resolves with a Duplex', async () => {
  const g = new Guest();
  const pending = g.device.connect(1024);
  const request = only(await g.recv(), VSOCK_OP_REQUEST);
  assert.equal(request.hdr.dstPort, 1024);
  assert.equal(request.hdr.srcPort, VSOCK_EPHEMERAL_PORT_BASE);
  assert.equal(request.hdr.bufAlloc, VSOCK_DEFAULTS.bufAlloc, 'the REQUEST carries our credit');
  const sock = new GuestSocket(g, 1024, request.hdr.srcPort);
  sock.peerBufAlloc = request.hdr.bufAlloc;
  g.send({ op: VSOCK_OP_RESPONSE, srcPort: 1024, dstPort: request.hdr.srcPort });
  const conn = await pending;
  assert.equal(conn.initiator, 'host');
  assert.equal(conn.guestPort, 1024);
  assert.equal(conn.hostPort, VSOCK_EPHEMERAL_PORT_BASE);

  const got = collect(conn);
  conn.write('{"op":"ping"}\n');
  sock.absorb(await g.recv());
  assert.equal(sock.data().toString(), '{"op":"ping"}\n');
  sock.write(Buffer.from('{"op":"pong"}\n'));
  await settle();
  assert.equal(got.data().toString(), '{"op":"pong"}\n');

  // A second connection to the same guest port gets the next host port.
  const second = g.device.connect(1024);
  const request2 = only(await g.recv(), VSOCK_OP_REQUEST);
  assert.equal(request2.hdr.srcPort, VSOCK_EPHEMERAL_PORT_BASE + 1);
  g.send({ op: VSOCK_OP_RST, srcPort: 1024, dstPort: request2.hdr.srcPort });
  await assert.rejects(second, (e: unknown) => e instanceof VsockError && e.code === 'ECONNREFUSED');
  assert.equal(g.device.connectionCount, 1);
  g.assertHealthy();
});

test('host connect: refused by RST, timed out (RST sent), bad answer, limit', async () => {
  const g = new Guest({ device: { maxHostConnections: 2 } });
  const refused = g.device.connect(1024);
  const r1 = only(await g.recv(), VSOCK_OP_REQUEST);
  g.send({ op: VSOCK_OP_RST, srcPort: 1024, dstPort: r1.hdr.srcPort });
  await assert.rejects(refused, { code: 'ECONNREFUSED' });

  const timedOut = g.device.connect(1025, { timeoutMs: 20 });
  const r2 = only(await g.recv(), VSOCK_OP_REQUEST);
  await assert.rejects(timedOut, { code: 'ETIMEDOUT' });
  const rst = only(await g.recv(), VSOCK_OP_RST);
  assert.equal(rst.hdr.srcPort, r2.hdr.srcPort);
  assert.equal(rst.hdr.dstPort, 1025);
  // A late RESPONSE for the abandoned connection is answered RST.
  g.send({ op: VSOCK_OP_RESPONSE, srcPort: 1025, dstPort: r2.hdr.srcPort });
  only(await g.recv(), VSOCK_OP_RST);

  const weird = g.device.connect(1026);
  const r3 = only(await g.recv(), VSOCK_OP_REQUEST);
  g.send({ op: VSOCK_OP_RW, srcPort: 1026, dstPort: r3.hdr.srcPort }, Buffer.from('x'));
  await assert.rejects(weird, { code: 'EPROTO' });
  only(await g.recv(), VSOCK_OP_RST);

  const a = g.device.connect(2000);
  const b = g.device.connect(2001);
  await assert.rejects(g.device.connect(2002), { code: 'EMFILE' });
  await assert.rejects(g.device.connect(0xffff_ffff), RangeError);
  assert.equal(g.device.connectionCount, 2);
  g.device.dispose();
  await assert.rejects(a, { code: 'ESHUTDOWN' });
  await assert.rejects(b, { code: 'ESHUTDOWN' });
  await assert.rejects(g.device.connect(1), { code: 'ESHUTDOWN' });
  g.assertHealthy();
});

test('host connect before the driver is up: the REQUEST goes out after DRIVER_OK', async () => {
  const g = new Guest({ up: false });
  const pending = g.device.connect(1024, { timeoutMs: 10_000 });
  await settle();
  g.up(); // includes the driver's initial reset
  const request = only(await g.recv(), VSOCK_OP_REQUEST);
  g.send({ op: VSOCK_OP_RESPONSE, srcPort: 1024, dstPort: request.hdr.srcPort });
  const conn = await pending;
  conn.destroy();
  only(await g.recv(), VSOCK_OP_RST);
});

// ---------------------------------------------------------------- SHUTDOWN and RST

test('guest SHUTDOWN(SEND): host reads to end, can still write; host end() sends SHUTDOWN(SEND), then RST on close', async () => {
  const g = new Guest();
  const conns = accepting(g, 3128);
  const conn = await guestConnect(g, conns, 50_050, 3128);
  const got = collect(conn);
  const done = closed(conn);
  g.send({ op: VSOCK_OP_RW, srcPort: 50_050, dstPort: 3128 }, Buffer.from('request'));
  g.send({ op: VSOCK_OP_SHUTDOWN, srcPort: 50_050, dstPort: 3128, flags: VSOCK_SHUTDOWN_SEND });
  await settle();
  assert.equal(got.data().toString(), 'request');
  assert.equal(got.ended(), true, "'end' after the guest's SHUTDOWN(SEND)");
  assert.equal(conn.destroyed, false, 'half-open: the host may still answer');

  conn.end('response');
  const packets = await g.recv();
  assert.deepEqual(ops(packets), ['RW', 'SHUTDOWN', 'RST']);
  assert.equal(packets[0]!.payload.toString(), 'response');
  assert.equal(packets[1]!.hdr.flags, VSOCK_SHUTDOWN_SEND);
  await done;
  assert.equal(conn.closeReason, 'local');
  assert.equal(g.device.connectionCount, 0);
  g.assertHealthy();
});

test('guest SHUTDOWN(RCV|SEND) (close in the guest): host gets the rest, then end and close; the guest gets RST', async () => {
  const g = new Guest();
  const conns = accepting(g, 3128);
  const conn = await guestConnect(g, conns, 50_060, 3128, 4096);
  g.send({ op: VSOCK_OP_RW, srcPort: 50_060, dstPort: 3128 }, Buffer.from('last words'));
  conn.write(bytes(10_000)); // more than the guest's credit: stuck
  await g.recv();
  g.send({
    op: VSOCK_OP_SHUTDOWN,
    srcPort: 50_060,
    dstPort: 3128,
    flags: VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND,
  });
  only(await g.recv(), VSOCK_OP_RST);
  assert.equal(conn.closeReason, 'peer-closed');
  assert.equal(g.device.connectionCount, 1, 'held until the host has read the rest');
  // Reusing the ports meanwhile is refused at once, not left to time out.
  g.send({ op: VSOCK_OP_REQUEST, srcPort: 50_060, dstPort: 3128 });
  only(await g.recv(), VSOCK_OP_RST);
  assert.equal(conns.length, 1);
  const got = collect(conn);
  await closed(conn);
  assert.equal(got.data().toString(), 'last words');
  assert.equal(got.ended(), true);
  assert.equal(g.device.connectionCount, 0);
  // Writes after the guest closed go nowhere and do not throw.
  assert.doesNotThrow(() => conn.write('late', () => {}));
  g.assertHealthy();
});

test('guest SHUTDOWN(RCV) only: pending host data is discarded, the guest can still send', async () => {
  const g = new Guest();
  const conns = accepting(g, 3128);
  const conn = await guestConnect(g, conns, 50_065, 3128, 100);
  const got = collect(conn);
  let writeDone = false;
  conn.write(bytes(1000), () => (writeDone = true));
  assert.deepEqual(ops(await g.recv()), ['RW', 'CREDIT_REQUEST']);
  g.send({ op: VSOCK_OP_SHUTDOWN, srcPort: 50_065, dstPort: 3128, flags: VSOCK_SHUTDOWN_RCV, bufAlloc: 100 });
  await settle();
  assert.equal(writeDone, true, 'the stuck write completes (discarded)');
  g.send({ op: VSOCK_OP_CREDIT_UPDATE, srcPort: 50_065, dstPort: 3128, bufAlloc: 100_000, fwdCnt: 100 });
  conn.write('more');
  assert.deepEqual(ops(await g.recv()), [], 'nothing more is sent to a guest that does not receive');
  g.send({ op: VSOCK_OP_RW, srcPort: 50_065, dstPort: 3128 }, Buffer.from('still talking'));
  await settle();
  assert.equal(got.data().toString(), 'still talking');
  g.assertHealthy();
});

test('guest RST: the host connection closes without an error; later packets for it are answered RST', async () => {
  const g = new Guest();
  const conns = accepting(g, 3128);
  const conn = await guestConnect(g, conns, 50_070, 3128);
  const done = closed(conn);
  conn.write(bytes(100));
  await g.recv();
  g.send({ op: VSOCK_OP_RST, srcPort: 50_070, dstPort: 3128 });
  await done;
  assert.equal(conn.closeReason, 'peer-reset');
  assert.equal(g.device.connectionCount, 0);
  assert.deepEqual(ops(await g.recv()), [], 'no answer to an RST');
  g.send({ op: VSOCK_OP_RW, srcPort: 50_070, dstPort: 3128 }, Buffer.from('x'));
  only(await g.recv(), VSOCK_OP_RST);
  g.send({ op: VSOCK_OP_RST, srcPort: 50_070, dstPort: 3128 });
  assert.deepEqual(ops(await g.recv()), []);
  g.assertHealthy();
});

test('host destroy(): RST to the guest, slot freed; host end(): data, then SHUTDOWN(SEND)', async () => {
  const g = new Guest();
  const conns = accepting(g, 3128);
  const a = await guestConnect(g, conns, 50_080, 3128);
  a.destroy();
  const rst = only(await g.recv(), VSOCK_OP_RST);
  assert.equal(rst.hdr.dstPort, 50_080);
  assert.equal(a.closeReason, 'local');
  assert.equal(g.device.connectionCount, 0);

  const b = await guestConnect(g, conns, 50_081, 3128);
  let finished = false;
  b.on('finish', () => (finished = true));
  b.write(bytes(5000));
  b.end();
  const packets = await g.recv();
  assert.deepEqual(ops(packets), ['RW', 'RW', 'SHUTDOWN']);
  assert.equal(packets[2]!.hdr.flags, VSOCK_SHUTDOWN_SEND);
  assert.ok(finished);
  assert.equal(g.device.connectionCount, 1, 'still readable: the guest has not shut down');
  g.send({ op: VSOCK_OP_SHUTDOWN, srcPort: 50_081, dstPort: 3128, flags: VSOCK_SHUTDOWN_SEND });
  b.resume();
  await closed(b);
  only(await g.recv(), VSOCK_OP_RST);
  assert.equal(g.device.connectionCount, 0);
});

test('a RESPONSE-pending connection the handler destroys gets RST instead of RESPONSE', async () => {
  const g = new Guest();
  g.device.listen(3128, (c) => c.destroy());
  g.send({ op: VSOCK_OP_REQUEST, srcPort: 50_085, dstPort: 3128 });
  only(await g.recv(), VSOCK_OP_RST);
  assert.equal(g.device.connectionCount, 0);
});

// ---------------------------------------------------------------- hostile guests

test('packets with wrong CIDs or shorter than a header are dropped silently', async () => {
  const g = new Guest();
  const conns = accepting(g, 3128);
  const conn = await guestConnect(g, conns, 50_090, 3128);
  const got = collect(conn);
  const before = snapshot(g.memory);
  const cases: Partial<VsockHeader>[] = [
    { srcCid: BigInt(CID + 1) },
    { srcCid: (1n << 32n) | BigInt(CID) },
    { srcCid: 2n },
    { dstCid: 1n },
    { dstCid: 3n },
    { dstCid: BigInt(CID) },
    { dstCid: (1n << 63n) | 2n },
  ];
  for (const fields of cases) {
    g.send({ op: VSOCK_OP_RW, srcPort: 50_090, dstPort: 3128, ...fields }, Buffer.from('spoof'));
    g.send({ op: VSOCK_OP_REQUEST, srcPort: 60_000, dstPort: 3128, ...fields });
  }
  g.sendChain([{ addr: TX_BUF, len: VSOCK_HDR_SIZE - 1, writable: false }]);
  g.sendChain([{ addr: TX_BUF, len: 64, writable: true }]);
  assert.deepEqual(ops(await g.recv()), []);
  assert.equal(got.data().length, 0);
  assert.equal(conns.length, 1);
  assert.equal(g.device.stats.dropped, 2 * cases.length + 2);
  assertChangedOnlyIn(g.memory, before, g.allowed());
  g.assertHealthy();
});

test('non-STREAM types are answered RST with their type and do not touch the connection', async () => {
  const g = new Guest();
  const conns = accepting(g, 3128);
  const conn = await guestConnect(g, conns, 50_100, 3128);
  const got = collect(conn);
  for (const type of [VSOCK_TYPE_SEQPACKET, 0, 3, 0xffff]) {
    g.send({ op: VSOCK_OP_RW, srcPort: 50_100, dstPort: 3128, type }, Buffer.from('x'));
    const rst = only(await g.recv(), VSOCK_OP_RST);
    assert.equal(rst.hdr.type, type);
  }
  g.send({ op: VSOCK_OP_REQUEST, srcPort: 50_101, dstPort: 3128, type: VSOCK_TYPE_SEQPACKET });
  only(await g.recv(), VSOCK_OP_RST);
  g.send({ op: VSOCK_OP_RST, srcPort: 50_100, dstPort: 3128, type: VSOCK_TYPE_SEQPACKET });
  assert.deepEqual(ops(await g.recv()), [], 'never an RST for an RST');
  assert.equal(conns.length, 1);
  assert.equal(conn.destroyed, false);
  assert.equal(got.data().length, 0);
  g.assertHealthy();
});

test('unknown ops and protocol violations reset the one connection they concern', async () => {
  const g = new Guest();
  const conns = accepting(g, 3128);
  const violations: [string, HeaderFields & { payload?: Buffer }][] = [
    ['unknown op', { op: 99, srcPort: 0, dstPort: 3128 }],
    ['INVALID', { op: VSOCK_OP_INVALID, srcPort: 0, dstPort: 3128 }],
    ['REQUEST on an open connection', { op: VSOCK_OP_REQUEST, srcPort: 0, dstPort: 3128 }],
    ['RESPONSE on an open connection', { op: VSOCK_OP_RESPONSE, srcPort: 0, dstPort: 3128 }],
  ];
  let port = 51_000;
  const bystander = await guestConnect(g, conns, 50_999, 3128);
  for (const [what, fields] of violations) {
    const conn = await guestConnect(g, conns, ++port, 3128);
    const done = closed(conn);
    g.send({ ...fields, srcPort: port });
    const rst = only(await g.recv(), VSOCK_OP_RST);
    assert.equal(rst.hdr.dstPort, port, what);
    await done;
    assert.equal(conn.closeReason, 'protocol-error', what);
  }
  // Data after the guest's own SHUTDOWN(SEND).
  const conn = await guestConnect(g, conns, ++port, 3128);
  g.send({ op: VSOCK_OP_SHUTDOWN, srcPort: port, dstPort: 3128, flags: VSOCK_SHUTDOWN_SEND });
  g.send({ op: VSOCK_OP_RW, srcPort: port, dstPort: 3128 }, Buffer.from('zombie'));
  only(await g.recv(), VSOCK_OP_RST);
  assert.equal(conn.closeReason, 'protocol-error');

  // Ops for no connection: RST (but not for RST).
  for (const op of [99, VSOCK_OP_RW, VSOCK_OP_RESPONSE, VSOCK_OP_SHUTDOWN, VSOCK_OP_CREDIT_UPDATE]) {
    g.send({ op, srcPort: 7, dstPort: 3128 });
    only(await g.recv(), VSOCK_OP_RST);
  }
  assert.equal(bystander.destroyed, false, 'other connections are unaffected');
  assert.equal(g.device.connectionCount, 1);
  g.assertHealthy();
});

test('a length beyond the chain or beyond 64 KiB is refused before any copy', async () => {
  const g = new Guest();
  const conns = accepting(g, 3128);
  const conn = await guestConnect(g, conns, 50_110, 3128);
  const got = collect(conn);
  const done = closed(conn);
  // len says 100 but only 10 payload bytes are in the chain.
  const header = encodeHeader({
    srcCid: BigInt(CID),
    dstCid: 2n,
    srcPort: 50_110,
    dstPort: 3128,
    len: 100,
    type: VSOCK_TYPE_STREAM,
    op: VSOCK_OP_RW,
    flags: 0,
    bufAlloc: GUEST_BUF_ALLOC,
    fwdCnt: 0,
  });
  g.memory.write(TX_BUF, header);
  g.sendChain([{ addr: TX_BUF, len: VSOCK_HDR_SIZE + 10, writable: false }]);
  only(await g.recv(), VSOCK_OP_RST);
  await done;
  assert.equal(conn.closeReason, 'protocol-error');
  assert.equal(got.data().length, 0);

  // len 0xffffffff / 64 KiB + 1 with a big enough chain: refused all the same.
  for (const len of [0xffff_ffff, 64 * 1024 + 1]) {
    const h = encodeHeader({ ...decodeHeader(header), srcPort: 50_111, len });
    g.memory.write(TX_BUF, h);
    g.sendChain([{ addr: TX_BUF, len: VSOCK_HDR_SIZE + 64 * 1024 + 8, writable: false }]);
    only(await g.recv(), VSOCK_OP_RST);
  }
  assert.equal(g.device.stats.malformed, 3);
  g.assertHealthy();
});

test('a REQUEST flood beyond the connection limit is answered RST; freed slots are reusable', async () => {
  const g = new Guest({ rxBuffers: 64 });
  const conns = accepting(g, 3128);
  const limit = VSOCK_DEFAULTS.maxGuestConnections;
  for (let i = 0; i < limit + 200; i++) g.send({ op: VSOCK_OP_REQUEST, srcPort: 10_000 + i, dstPort: 3128 });
  const packets = await g.recv();
  assert.equal(packets.filter((p) => p.hdr.op === VSOCK_OP_RESPONSE).length, limit);
  const rsts = packets.filter((p) => p.hdr.op === VSOCK_OP_RST);
  assert.ok(rsts.length > 0 && rsts.length <= VSOCK_DEFAULTS.maxPendingResets + 200);
  assert.equal(conns.length, limit);
  assert.equal(g.device.connectionCount, limit);
  assert.equal(g.device.stats.refusedLimit, 200);

  // The host-initiated budget is separate: the agent channel still works.
  const agent = g.device.connect(1024);
  const request = only(await g.recv(), VSOCK_OP_REQUEST);
  g.send({ op: VSOCK_OP_RESPONSE, srcPort: 1024, dstPort: request.hdr.srcPort });
  await agent;

  conns[0]!.destroy();
  only(await g.recv(), VSOCK_OP_RST);
  g.send({ op: VSOCK_OP_REQUEST, srcPort: 20_000, dstPort: 3128 });
  only(await g.recv(), VSOCK_OP_RESPONSE);
  assert.equal(conns.length, limit + 1);
  g.assertMemoryClean();
  g.assertHealthy();
});

test('without RX buffers, RST replies are bounded; control packets wait for buffers', async () => {
  const g = new Guest({ rxBuffers: 0 });
  g.autoRefill = false;
  for (let i = 0; i < 1000; i++) g.send({ op: VSOCK_OP_RW, srcPort: i, dstPort: 5 }, Buffer.from('x'));
  assert.equal(g.device.stats.resetsDropped, 1000 - VSOCK_DEFAULTS.maxPendingResets);
  g.addRxBuffers(100);
  const packets = await g.recv();
  assert.equal(packets.length, VSOCK_DEFAULTS.maxPendingResets);
  assert.ok(packets.every((p, i) => p.hdr.op === VSOCK_OP_RST && p.hdr.dstPort === i));
  g.assertHealthy();
});

test('a guest that never reads stalls only its own connection', async () => {
  const g = new Guest();
  const conns = accepting(g, 3128);
  const stuck = await guestConnect(g, conns, 50_120, 3128, 8192);
  const fine = new GuestSocket(g, 50_121, 3128);
  fine.connect();
  fine.absorb(await g.recv());
  const healthy = conns[1]!;

  // The stuck guest socket never reads and never sends CREDIT_UPDATE.
  let drained = false;
  stuck.on('drain', () => (drained = true));
  const chunk = bytes(16 * 1024);
  let accepted = true;
  let writes = 0;
  while (accepted && writes < 100) {
    accepted = stuck.write(chunk);
    writes++;
  }
  assert.equal(accepted, false, 'back-pressure reaches the host writer');
  assert.ok(writes <= VSOCK_DEFAULTS.highWaterMark / chunk.length + 1);

  const down = bytes(200_000, 5);
  let fineDone = false;
  healthy.write(down, () => (fineDone = true));
  for (let i = 0; i < 200 && !fineDone; i++) {
    const rest = fine.absorb(await g.recv());
    assert.ok(
      rest.every((p) => p.hdr.dstPort === 50_120),
      'the rest belongs to the stuck connection',
    );
    fine.readAll();
  }
  assert.ok(fineDone);
  assert.deepEqual(fine.data(), down);
  assert.equal(drained, false, 'the stuck writer is still stuck');
  assert.equal(g.device.connectionCount, 2);
  g.assertHealthy();
});

test('connections share the RX queue round-robin', async () => {
  const g = new Guest({ rxBuffers: 0 });
  g.autoRefill = false;
  const conns = accepting(g, 3128);
  g.addRxBuffers(2);
  const a = await guestConnect(g, conns, 1, 3128);
  g.addRxBuffers(1);
  const b = await guestConnect(g, conns, 2, 3128);
  a.write(bytes(3 * 4096));
  b.write(bytes(3 * 4096));
  await settle();
  g.addRxBuffers(6);
  const packets = await g.recv();
  assert.deepEqual(
    packets.map((p) => p.hdr.dstPort),
    [1, 2, 1, 2, 1, 2],
  );
});

test('a guest that keeps adding RX buffers while the device works gets one ring’s worth per turn', async () => {
  // A vCPU posting a new (header-only) buffer every time the device publishes
  // a used one: without a budget the device would never leave its loop.
  let racing = false;
  let posted = 0;
  const race: { ring?: GuestRing } = {};
  class RacingMemory extends GuestMemory {
    override writeU16(gpa: number, value: number): void {
      super.writeU16(gpa, value);
      const ring = race.ring;
      if (racing && ring && gpa === ring.used + 2) {
        posted++;
        ring.addChain([{ addr: RX_SLOTS + 0x1_0000, len: VSOCK_HDR_SIZE, writable: true }]);
      }
    }
  }
  const g = new Guest({ memory: new RacingMemory(new Uint8Array(RAM)), device: { queueSize: 16 }, rxBuffers: 1 });
  g.autoRefill = false;
  const conns = accepting(g, 3128);
  const conn = await guestConnect(g, conns, 4, 3128);
  conn.write(bytes(100)); // data no header-only buffer can carry: credit updates instead
  await settle();
  race.ring = g.rx;
  racing = true;
  const usedBefore = g.rx.usedIdx;
  g.addRxChain([{ addr: RX_SLOTS + 0x1_0000, len: VSOCK_HDR_SIZE, writable: true }]);
  g.driver.notify(0);
  assert.equal((g.rx.usedIdx - usedBefore) & 0xffff, 16, 'one ring’s worth, then the device yields');
  await tick();
  assert.ok(posted >= 16);
  racing = false;
  await settle();
  g.addRxBuffers(1);
  const packets = g.poll().filter((p) => p.hdr.op === VSOCK_OP_RW);
  assert.equal(packets.length, 1);
  assert.deepEqual(packets[0]!.payload, bytes(100));
  g.assertHealthy();
});

test('hostile RX buffers: device-readable or too small chains come back empty and the packet waits', async () => {
  const g = new Guest({ rxBuffers: 0 });
  g.autoRefill = false;
  const conns = accepting(g, 3128);
  g.addRxChain([{ addr: RX_SLOTS, len: 64, writable: false }]);
  g.addRxChain([{ addr: RX_SLOTS + 0x100, len: VSOCK_HDR_SIZE - 1, writable: true }]);
  g.addRxChain([
    { addr: RX_SLOTS + 0x200, len: 20, writable: true },
    { addr: RX_SLOTS + 0x300, len: 20, writable: true },
  ]);
  const before = snapshot(g.memory);
  g.send({ op: VSOCK_OP_REQUEST, srcPort: 3, dstPort: 3128 });
  assert.equal(g.rx.usedIdx, 3);
  assert.deepEqual(
    [0, 1, 2].map((i) => g.rx.usedElem(i).len),
    [0, 0, 0],
  );
  assert.equal(g.device.stats.badRxBuffers, 3);
  assertChangedOnlyIn(g.memory, before, [
    [g.rx.base, g.rx.byteLength],
    [g.tx.base, g.tx.byteLength],
    [TX_BUF, VSOCK_HDR_SIZE],
  ]);
  // Exactly a header's worth: control packets fit, data cannot.
  g.addRxChain([{ addr: RX_SLOTS + 0x400, len: VSOCK_HDR_SIZE, writable: true }]);
  g.driver.notify(0);
  assert.equal(g.rx.usedIdx, 4);
  assert.deepEqual(g.rx.usedElem(3).len, VSOCK_HDR_SIZE);
  assert.equal(decodeHeader(g.memory.read(RX_SLOTS + 0x400, VSOCK_HDR_SIZE)).op, VSOCK_OP_RESPONSE);
  assert.equal(conns.length, 1);
  g.assertHealthy();
});

test('host code that throws never reaches the device: handler and data listener errors close that connection', async () => {
  const g = new Guest();
  g.device.listen(1, () => {
    throw new Error('handler bug');
  });
  g.send({ op: VSOCK_OP_REQUEST, srcPort: 10, dstPort: 1 });
  only(await g.recv(), VSOCK_OP_RST);

  g.device.listen(2, (c) =>
    c.on('data', () => {
      throw new Error('listener bug');
    }),
  );
  g.send({ op: VSOCK_OP_REQUEST, srcPort: 11, dstPort: 2 });
  only(await g.recv(), VSOCK_OP_RESPONSE);
  g.send({ op: VSOCK_OP_RW, srcPort: 11, dstPort: 2 }, Buffer.from('boom'));
  only(await g.recv(), VSOCK_OP_RST);
  assert.deepEqual(
    g.events.filter((e) => e.kind === 'handler-error').map((e) => e.message.replace(/.*: /, '')),
    ['handler bug', 'listener bug'],
  );
  assert.equal(g.device.connectionCount, 0);
  g.assertHealthy();
});

test('garbage in the TX queue never throws and never writes outside the RX buffers', async () => {
  const g = new Guest();
  const conns = accepting(g, 3128);
  const sock = new GuestSocket(g, 50_130, 3128);
  sock.connect();
  sock.absorb(await g.recv());
  let seed = 12345;
  const rand = (): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fff_ffff;
    return seed;
  };
  for (let i = 0; i < 500; i++) {
    const fields: HeaderFields = {
      op: rand() % 9,
      srcPort: rand() % 3 === 0 ? 50_130 : rand(),
      dstPort: rand() % 2 === 0 ? 3128 : rand(),
      type: rand() % 4 === 0 ? rand() & 0xffff : VSOCK_TYPE_STREAM,
      flags: rand() & 3,
      bufAlloc: rand(),
      fwdCnt: rand(),
      srcCid: rand() % 8 === 0 ? BigInt(rand()) : BigInt(CID),
    };
    const payload = bytes(rand() % 300, i);
    if (rand() % 5 === 0) {
      g.memory.write(TX_BUF, encodeHeader({ dstCid: 2n, len: rand(), ...fields } as VsockHeader));
      g.sendChain([{ addr: TX_BUF, len: VSOCK_HDR_SIZE + (rand() % 50), writable: false }]);
    } else {
      g.send(fields, payload);
    }
    if (i % 50 === 0) await g.recv();
  }
  await g.recv();
  for (const c of conns) c.destroy();
  await g.recv();
  g.assertMemoryClean();
  g.assertHealthy();
  assert.ok(g.device.connectionCount <= VSOCK_DEFAULTS.maxGuestConnections);
});

// ---------------------------------------------------------------- resets

test('device reset drops every connection and pending connect; listeners survive re-initialisation', async () => {
  const g = new Guest();
  const conns = accepting(g, 3128);
  const conn = await guestConnect(g, conns, 50_140, 3128);
  const done = closed(conn);
  const pending = g.device.connect(1024);
  only(await g.recv(), VSOCK_OP_REQUEST);
  g.driver.write(0x070, 0); // Status = 0: reset
  await done;
  assert.equal(conn.closeReason, 'device-reset');
  await assert.rejects(pending, { code: 'ECONNRESET' });
  assert.equal(g.device.connectionCount, 0);

  g.up();
  await guestConnect(g, conns, 50_141, 3128);
  g.assertHealthy();
});

test('transportReset() posts TRANSPORT_RESET on the event queue and drops every connection', async () => {
  const g = new Guest();
  const conns = accepting(g, 3128);
  const conn = await guestConnect(g, conns, 50_150, 3128);
  const done = closed(conn);
  assert.deepEqual(g.pollEvents(), []);
  g.device.transportReset();
  await done;
  assert.equal(conn.closeReason, 'device-reset');
  assert.deepEqual(g.pollEvents(), [{ id: 0, len: 4 }]);
  assert.deepEqual(ops(await g.recv()), [], 'no RST: the guest resets its side itself');
  await guestConnect(g, conns, 50_151, 3128);
  g.assertMemoryClean();
  g.assertHealthy();
});

test('dispose() closes everything and refuses new connections', async () => {
  const g = new Guest();
  const conns = accepting(g, 3128);
  const conn = await guestConnect(g, conns, 50_160, 3128);
  const done = closed(conn);
  g.device.dispose();
  await done;
  assert.equal(conn.closeReason, 'disposed');
  g.send({ op: VSOCK_OP_REQUEST, srcPort: 50_161, dstPort: 3128 });
  only(await g.recv(), VSOCK_OP_RST);
  g.assertHealthy();
});

// ---------------------------------------------------------------- Node streams

test('a net.Socket pipes straight into a vsock connection (the proxy pattern)', async () => {
  const echo = createServer((socket: Socket) => socket.pipe(socket));
  await new Promise<void>((resolve) => echo.listen(0, '127.0.0.1', resolve));
  const { port } = echo.address() as AddressInfo;
  try {
    const g = new Guest();
    const { connect } = await import('node:net');
    const upstreamClosed: Promise<void>[] = [];
    g.device.listen(3128, (conn) => {
      const upstream = connect(port, '127.0.0.1');
      upstreamClosed.push(new Promise((resolve) => upstream.on('close', () => resolve())));
      pipeline(conn, upstream, conn, () => {});
    });
    const sock = new GuestSocket(g, 50_170, 3128);
    sock.connect();
    sock.absorb(await g.recv());
    const message = bytes(100_000, 17);
    let sent = 0;
    for (let i = 0; i < 500 && sock.data().length < message.length; i++) {
      sent += sock.write(message.subarray(sent));
      await new Promise((resolve) => setTimeout(resolve, 1));
      sock.absorb(await g.recv());
      sock.readAll();
    }
    assert.deepEqual(sock.data(), message);
    sock.shutdown(VSOCK_SHUTDOWN_RCV | VSOCK_SHUTDOWN_SEND);
    await Promise.all(upstreamClosed);
    g.assertHealthy();
  } finally {
    echo.close();
  }
});
