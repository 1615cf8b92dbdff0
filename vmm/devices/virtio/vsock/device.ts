/**
 * virtio-vsock (virtio 1.2, section 5.10) as a userspace device model: the
 * hosts have no vhost-vsock, so the VMM itself is the guest's peer at CID 2.
 * See docs/vsock.md.
 *
 * Queues: 0 rx (device → guest packets, in guest-supplied buffers), 1 tx
 * (guest → device packets), 2 event (TRANSPORT_RESET). Config: guest_cid
 * (le64). No feature bits: stream sockets only.
 *
 * The device is a connection multiplexer in the style of Firecracker's vsock
 * muxer: guest packets are validated and routed to a `ConnectionState` by
 * (guest port, host port); packets for the guest come from a bounded queue of
 * RST replies plus a round-robin of connections that have something to send,
 * written into RX buffers as the guest provides them.
 *
 * Host API:
 *   listen(port, handler)   guest connects to (CID 2, port): handler(conn)
 *   connect(guestPort)      host connects to (guest CID, guestPort): Promise<conn>
 * where `conn` is a `VsockConnection` (a Node Duplex).
 *
 * Hostile guests: every guest field is read once and checked; nothing the
 * guest sends is sized from guest numbers beyond `VSOCK_MAX_PAYLOAD`; a
 * connection's queue is bounded by our `buf_alloc`; the number of
 * connections and of pending RST replies is bounded. Guest errors produce an
 * RST (or a dropped packet), never an exception.
 */
import type { GuestMemory } from '../../../memory/guest-memory.js';
import { drainQueue, readConfigBytes } from '../device.js';
import type { VirtioActivation, VirtioDevice, VirtioDeviceHost } from '../device.js';
import { isPowerOfTwo, readSegments, writeSegments } from '../queue.js';
import type { DescriptorChain, Virtqueue } from '../queue.js';
import { VIRTIO_ID_VSOCK } from '../constants.js';
import { ConnectionState, VsockConnection, VsockError, connectionKey } from './connection.js';
import type { ConnectionMux, OutgoingPacket, VsockCloseReason, VsockErrorCode } from './connection.js';
import {
  VSOCK_CID_ANY,
  VSOCK_CID_HOST,
  VSOCK_CONFIG_SIZE,
  VSOCK_EVENT_SIZE,
  VSOCK_EVENT_TRANSPORT_RESET,
  VSOCK_HDR_SIZE,
  VSOCK_MAX_PAYLOAD,
  VSOCK_OP_REQUEST,
  VSOCK_OP_RST,
  VSOCK_PORT_ANY,
  VSOCK_QUEUE_EVENT,
  VSOCK_QUEUE_RX,
  VSOCK_QUEUE_TX,
  VSOCK_TYPE_STREAM,
  decodeHeader,
  encodeHeader,
  isValidPort,
  opName,
} from './packet.js';
import type { VsockHeader } from './packet.js';

/** Default limits; see docs/vsock.md. */
export const VSOCK_DEFAULTS = {
  /** Connections the guest may have open at once (guest-initiated). */
  maxGuestConnections: 64,
  /** Host-initiated connections at once; a separate budget, so a guest flood cannot starve the agent channel. */
  maxHostConnections: 16,
  /** Our receive buffer per connection (buf_alloc): guest → host bytes queued at most. */
  bufAlloc: 256 * 1024,
  /** High-water mark of each Duplex side (Node buffering on top of the above). */
  highWaterMark: 64 * 1024,
  /** RST replies to packets for no connection waiting for an RX buffer; more are dropped. */
  maxPendingResets: 64,
  /** How long `connect()` waits for the guest's RESPONSE. */
  connectTimeoutMs: 5000,
  /** QueueNumMax of the rx and tx queues. */
  queueSize: 256,
  /** QueueNumMax of the event queue (Linux posts 8 event buffers). */
  eventQueueSize: 16,
} as const;

/** First port `connect()` uses on the host side; ports are handed out upwards from here. */
export const VSOCK_EPHEMERAL_PORT_BASE = 0x4000_0000;

export interface VirtioVsockOptions {
  /** The guest's CID (config space guest_cid): 3 ≤ cid < 0xffffffff. */
  guestCid: number;
  maxGuestConnections?: number;
  maxHostConnections?: number;
  bufAlloc?: number;
  highWaterMark?: number;
  maxPendingResets?: number;
  connectTimeoutMs?: number;
  queueSize?: number;
  /** Dropped packets, refused connections, RSTs sent for guest errors, host handler errors. Rate-limit in the caller. */
  onEvent?: (event: VsockEvent) => void;
}

export interface VsockEvent {
  readonly kind: 'dropped' | 'refused' | 'reset' | 'handler-error';
  readonly message: string;
  readonly error?: unknown;
}

/** Counters, for tests and diagnostics. */
export interface VsockStats {
  /** Guest packets processed (tx chains). */
  txPackets: number;
  /** Packets written to the guest (rx chains used). */
  rxPackets: number;
  /** Guest-initiated connections accepted. */
  accepted: number;
  /** Guest REQUESTs refused: no listener. */
  refusedNoListener: number;
  /** Guest REQUESTs refused: connection limit. */
  refusedLimit: number;
  /** Guest packets dropped: too short, wrong CIDs. */
  dropped: number;
  /** Guest packets with a bad length (beyond the chain or VSOCK_MAX_PAYLOAD). */
  malformed: number;
  /** Guest packets of a type other than STREAM. */
  badType: number;
  /** Connections reset because the guest broke the protocol or its credit. */
  protocolResets: number;
  /** RST replies dropped because the reply queue was full. */
  resetsDropped: number;
  /** RX chains returned unused (device-readable, or too small for a header). */
  badRxBuffers: number;
}

export type VsockHandler = (connection: VsockConnection) => void;

export interface VsockListener {
  readonly port: number;
  /** Stop accepting on this port; open connections are not affected. */
  close(): void;
}

export interface VsockConnectOptions {
  /** Default `connectTimeoutMs` of the device. */
  timeoutMs?: number;
}

/** An RST reply for a packet that matched no connection. */
interface PendingReset {
  readonly guestPort: number;
  readonly hostPort: number;
  readonly type: number;
}

type Source =
  { readonly kind: 'reset'; readonly reset: PendingReset } | { readonly kind: 'conn'; readonly state: ConnectionState };

const HOST_CID = BigInt(VSOCK_CID_HOST);

function positiveInteger(name: string, value: number | undefined, fallback: number): number {
  const v = value ?? fallback;
  if (!Number.isSafeInteger(v) || v <= 0) throw new RangeError(`virtio-vsock: ${name} must be a positive integer`);
  return v;
}

export class VirtioVsock implements VirtioDevice, ConnectionMux {
  readonly deviceType = VIRTIO_ID_VSOCK;
  /** Stream only: no VIRTIO_VSOCK_F_* bits (see docs/vsock.md). */
  readonly features = 0n;
  readonly queueMaxSizes: readonly number[];
  readonly guestCid: number;
  readonly bufAlloc: number;
  readonly highWaterMark: number;
  readonly maxGuestConnections: number;
  readonly maxHostConnections: number;
  readonly stats: VsockStats = {
    txPackets: 0,
    rxPackets: 0,
    accepted: 0,
    refusedNoListener: 0,
    refusedLimit: 0,
    dropped: 0,
    malformed: 0,
    badType: 0,
    protocolResets: 0,
    resetsDropped: 0,
    badRxBuffers: 0,
  };

  private readonly config = new Uint8Array(VSOCK_CONFIG_SIZE);
  private readonly guestCidBig: bigint;
  private readonly maxPendingResets: number;
  private readonly connectTimeoutMs: number;
  private readonly onEvent: ((event: VsockEvent) => void) | undefined;

  private readonly listeners = new Map<number, VsockHandler>();
  private readonly connections = new Map<string, ConnectionState>();
  /** Connections that may have a packet for the guest, in round-robin order. */
  private readonly ready = new Set<ConnectionState>();
  private readonly resets: PendingReset[] = [];
  private readonly timers = new Map<ConnectionState, NodeJS.Timeout>();
  private guestConnections = 0;
  private hostConnections = 0;
  private nextEphemeralPort = VSOCK_EPHEMERAL_PORT_BASE;
  private transportResetOwed = false;
  private pumpScheduled = false;
  private pumpContinuing = false;
  private disposed = false;

  private memory: GuestMemory | undefined;
  private rx: Virtqueue | undefined;
  private tx: Virtqueue | undefined;
  private events: Virtqueue | undefined;
  private host: VirtioDeviceHost | undefined;

  constructor(options: VirtioVsockOptions) {
    const cid = options.guestCid;
    if (!Number.isSafeInteger(cid) || cid < 3 || cid >= VSOCK_CID_ANY) {
      throw new RangeError(`virtio-vsock: guest CID ${cid} must be an integer in 3..0xfffffffe`);
    }
    const queueSize = options.queueSize ?? VSOCK_DEFAULTS.queueSize;
    if (!isPowerOfTwo(queueSize) || queueSize < 4 || queueSize > 32768) {
      throw new RangeError(`virtio-vsock: queue size ${queueSize} must be a power of two in 4..32768`);
    }
    this.guestCid = cid;
    this.guestCidBig = BigInt(cid);
    this.queueMaxSizes = [queueSize, queueSize, VSOCK_DEFAULTS.eventQueueSize];
    this.bufAlloc = positiveInteger('bufAlloc', options.bufAlloc, VSOCK_DEFAULTS.bufAlloc);
    if (this.bufAlloc > 0xffff_ffff) throw new RangeError('virtio-vsock: bufAlloc must fit in 32 bits');
    this.highWaterMark = positiveInteger('highWaterMark', options.highWaterMark, VSOCK_DEFAULTS.highWaterMark);
    this.maxGuestConnections = positiveInteger(
      'maxGuestConnections',
      options.maxGuestConnections,
      VSOCK_DEFAULTS.maxGuestConnections,
    );
    this.maxHostConnections = positiveInteger(
      'maxHostConnections',
      options.maxHostConnections,
      VSOCK_DEFAULTS.maxHostConnections,
    );
    this.maxPendingResets = positiveInteger(
      'maxPendingResets',
      options.maxPendingResets,
      VSOCK_DEFAULTS.maxPendingResets,
    );
    this.connectTimeoutMs = positiveInteger(
      'connectTimeoutMs',
      options.connectTimeoutMs,
      VSOCK_DEFAULTS.connectTimeoutMs,
    );
    this.onEvent = options.onEvent;
    new DataView(this.config.buffer).setBigUint64(0, this.guestCidBig, true);
  }

  // ------------------------------------------------------------ host API

  /**
   * Accept guest connections to host port `port` (the guest connects to CID 2,
   * `port`). `handler` gets each connection once the device has queued the
   * RESPONSE; data written to it before the RESPONSE reaches the guest
   * follows it. Throws (host programming error) for a bad or taken port.
   */
  listen(port: number, handler: VsockHandler): VsockListener {
    if (!isValidPort(port)) throw new RangeError(`virtio-vsock: bad port ${port}`);
    if (this.listeners.has(port)) throw new Error(`virtio-vsock: port ${port} is already listening`);
    if (this.disposed) throw new Error('virtio-vsock: disposed');
    this.listeners.set(port, handler);
    return {
      port,
      close: () => {
        if (this.listeners.get(port) === handler) this.listeners.delete(port);
      },
    };
  }

  /**
   * Connect to the guest's `guestPort`. Resolves once the guest answers
   * RESPONSE; rejects with a `VsockError` (ECONNREFUSED on RST, ETIMEDOUT,
   * ECONNRESET on device reset, EPROTO, EMFILE over the host connection limit,
   * ESHUTDOWN after dispose). Before the guest driver is up the REQUEST waits
   * (within the timeout) for it. Never throws.
   */
  connect(guestPort: number, options: VsockConnectOptions = {}): Promise<VsockConnection> {
    return new Promise<VsockConnection>((resolve, reject) => {
      if (this.disposed) return reject(new VsockError('ESHUTDOWN', 'virtio-vsock: disposed'));
      if (!isValidPort(guestPort)) return reject(new RangeError(`virtio-vsock: bad port ${guestPort}`));
      const timeoutMs = options.timeoutMs ?? this.connectTimeoutMs;
      if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
        return reject(new RangeError(`virtio-vsock: bad timeout ${timeoutMs}`));
      }
      if (this.hostConnections >= this.maxHostConnections) {
        return reject(new VsockError('EMFILE', `virtio-vsock: ${this.maxHostConnections} host connections open`));
      }
      const hostPort = this.allocatePort(guestPort);
      if (hostPort === null) return reject(new VsockError('EMFILE', 'virtio-vsock: no free host port'));
      const state = new ConnectionState(this, 'host', guestPort, hostPort);
      // Referenced on purpose: a pending connect is pending work, bounded by its timeout.
      // (setTimeout turns delays beyond 2^31 - 1 ms into 1 ms: clamp.)
      const timer = setTimeout(() => this.runSafely(() => state.timeOut()), Math.min(timeoutMs, 0x7fff_ffff));
      this.timers.set(state, timer);
      state.waiter = {
        resolve: (connection) => {
          this.clearTimer(state);
          resolve(connection);
        },
        reject: (error) => {
          this.clearTimer(state);
          reject(error);
        },
      };
      this.connections.set(state.key, state);
      this.hostConnections++;
      this.wake(state);
    });
  }

  /**
   * Tell the guest its transport was reset (e.g. after restoring a snapshot):
   * every connection is dropped on both sides and the guest re-reads its CID.
   * The event is posted on the event queue (now, or when the guest next
   * provides an event buffer).
   */
  transportReset(): void {
    this.dropAll('device-reset', 'ECONNRESET', false);
    this.resets.length = 0;
    this.transportResetOwed = true;
    this.runSafely(() => this.deliverEvents());
  }

  /** Tear down: every connection closes (reason 'disposed'), listeners go, connects reject. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.listeners.clear();
    this.dropAll('disposed', 'ESHUTDOWN', true);
    this.resets.length = 0;
  }

  /** Open connections (including ones waiting for an RST to reach the guest). */
  get connectionCount(): number {
    return this.connections.size;
  }

  /** Bytes received from the guest that the host has not read yet, all connections. */
  get queuedBytes(): number {
    let n = 0;
    for (const state of this.connections.values()) n += state.queuedFromGuest;
    return n;
  }

  // ------------------------------------------------------------ VirtioDevice

  readConfig(offset: number, data: Uint8Array): void {
    readConfigBytes(this.config, offset, data);
  }

  writeConfig(_offset: number, _data: Uint8Array): void {
    // guest_cid is read-only.
  }

  activate(ctx: VirtioActivation): void {
    const [rx, tx, events] = ctx.queues;
    if (!rx || !tx || !events) throw new Error('virtio-vsock: the rx, tx and event queues must all be set up');
    this.memory = ctx.memory;
    this.rx = rx;
    this.tx = tx;
    this.events = events;
    const host = ctx.host;
    // Once we ask for a reset, stop touching the rings (host writes and
    // timers would otherwise keep the pump going) until the driver resets us.
    this.host = {
      signalUsed: (queueIndex) => host.signalUsed(queueIndex),
      signalConfigChange: () => host.signalConfigChange(),
      needsReset: (reason) => {
        this.detach();
        host.needsReset(reason);
      },
    };
    // Host connects made before the driver came up can go now.
    this.schedulePump();
  }

  processQueue(index: number): void {
    if (!this.host) return;
    switch (index) {
      case VSOCK_QUEUE_RX:
        this.pump();
        return;
      case VSOCK_QUEUE_TX:
        if (this.tx) drainQueue(this.tx, VSOCK_QUEUE_TX, this.host, (chain) => this.handleTx(chain));
        this.pump();
        return;
      case VSOCK_QUEUE_EVENT:
        this.deliverEvents();
        return;
    }
  }

  reset(): void {
    this.detach();
    this.transportResetOwed = false;
    this.resets.length = 0;
    // The guest's sockets are gone with its driver state. Host connects whose
    // REQUEST never went out survive and go out after re-activation.
    this.dropAll('device-reset', 'ECONNRESET', false);
  }

  private detach(): void {
    this.memory = undefined;
    this.rx = undefined;
    this.tx = undefined;
    this.events = undefined;
    this.host = undefined;
  }

  // ------------------------------------------------------------ ConnectionMux

  wake(state: ConnectionState): void {
    if (this.connections.get(state.key) !== state) return;
    this.ready.add(state);
    this.schedulePump();
  }

  release(state: ConnectionState): void {
    this.ready.delete(state);
    this.clearTimer(state);
    if (this.connections.get(state.key) !== state) return;
    this.connections.delete(state.key);
    if (state.initiator === 'guest') this.guestConnections--;
    else this.hostConnections--;
  }

  handlerError(state: ConnectionState, error: unknown): void {
    this.emit({
      kind: 'handler-error',
      message: `host code threw on vsock connection ${state.key}: ${error instanceof Error ? error.message : String(error)}`,
      error,
    });
  }

  // ------------------------------------------------------------ guest → device

  /** One guest packet. Always consumed (used length 0); problems are answered in-band. */
  private handleTx(chain: DescriptorChain): number {
    const memory = this.memory;
    if (!memory) return 0;
    this.stats.txPackets++;
    const readable = chain.readableBytes;
    if (readable < VSOCK_HDR_SIZE) {
      this.stats.dropped++;
      this.emit({ kind: 'dropped', message: `packet of ${readable} bytes is shorter than the header` });
      return 0;
    }
    // Copy the header once: the guest may rewrite it while we work.
    const raw = new Uint8Array(VSOCK_HDR_SIZE);
    readSegments(memory, chain.readable, 0, raw);
    const header = decodeHeader(raw);
    if (header.srcCid !== this.guestCidBig || header.dstCid !== HOST_CID) {
      this.stats.dropped++;
      this.emit({ kind: 'dropped', message: `packet from CID ${header.srcCid} to CID ${header.dstCid}` });
      return 0;
    }
    if (header.len > VSOCK_MAX_PAYLOAD || header.len > readable - VSOCK_HDR_SIZE) {
      this.stats.malformed++;
      this.protocolError(header, `len ${header.len} with ${readable - VSOCK_HDR_SIZE} payload bytes`);
      return 0;
    }
    if (header.type !== VSOCK_TYPE_STREAM) {
      // Linux answers unknown types (and SEQPACKET without the feature) with RST.
      this.stats.badType++;
      this.replyReset(header);
      return 0;
    }
    const state = this.connections.get(connectionKey(header.srcPort, header.dstPort));
    if (!state || state.phase === 'request') {
      this.noConnection(header);
      return 0;
    }
    if (state.phase === 'closed' && header.op === VSOCK_OP_REQUEST) {
      // The old connection on these ports is still winding down: refuse now
      // rather than let the guest's connect time out.
      this.replyReset(header);
      return 0;
    }
    state.onPacket(header, (offset, into) => readSegments(memory, chain.readable, VSOCK_HDR_SIZE + offset, into));
    return 0;
  }

  private protocolError(header: VsockHeader, message: string): void {
    this.stats.protocolResets++;
    this.emit({ kind: 'reset', message: `${opName(header.op)} ${header.srcPort}→${header.dstPort}: ${message}` });
    const state = this.connections.get(connectionKey(header.srcPort, header.dstPort));
    if (state && state.phase !== 'request') state.abort('protocol-error');
    else this.replyReset(header);
  }

  private noConnection(header: VsockHeader): void {
    if (header.op === VSOCK_OP_REQUEST) this.accept(header);
    else this.replyReset(header);
  }

  private accept(header: VsockHeader): void {
    const handler = this.disposed ? undefined : this.listeners.get(header.dstPort);
    if (!handler) {
      this.stats.refusedNoListener++;
      this.emit({
        kind: 'refused',
        message: `guest port ${header.srcPort} → host port ${header.dstPort}: no listener`,
      });
      this.replyReset(header);
      return;
    }
    if (this.guestConnections >= this.maxGuestConnections) {
      this.stats.refusedLimit++;
      this.emit({ kind: 'refused', message: `guest connection limit (${this.maxGuestConnections}) reached` });
      this.replyReset(header);
      return;
    }
    const state = new ConnectionState(this, 'guest', header.srcPort, header.dstPort);
    const connection = state.acceptRequest(header);
    this.connections.set(state.key, state);
    this.guestConnections++;
    this.stats.accepted++;
    this.wake(state);
    try {
      handler(connection);
    } catch (error) {
      this.handlerError(state, error);
      connection.destroy();
    }
  }

  /** Queue an RST for a packet that has no connection (never in answer to an RST). */
  private replyReset(header: VsockHeader): void {
    if (header.op === VSOCK_OP_RST) return;
    if (this.resets.length >= this.maxPendingResets) {
      this.stats.resetsDropped++;
      return;
    }
    this.resets.push({ guestPort: header.srcPort, hostPort: header.dstPort, type: header.type });
  }

  // ------------------------------------------------------------ device → guest

  private continuePumpLater(): void {
    if (this.pumpContinuing) return;
    this.pumpContinuing = true;
    setImmediate(() => {
      this.pumpContinuing = false;
      this.runSafely(() => this.pump());
    });
  }

  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    queueMicrotask(() => {
      this.pumpScheduled = false;
      this.runSafely(() => this.pump());
    });
  }

  /** Work started outside the transport (timers, host writes) must not throw into Node. */
  private runSafely(work: () => void): void {
    try {
      work();
    } catch (error) {
      const host = this.host;
      if (host) host.needsReset(error instanceof Error ? error : new Error(String(error)));
    }
  }

  private nextSource(): Source | null {
    const reset = this.resets.shift();
    if (reset) return { kind: 'reset', reset };
    for (const state of this.ready) {
      this.ready.delete(state);
      if (state.hasPacket()) return { kind: 'conn', state };
    }
    return null;
  }

  /**
   * Fill RX buffers with whatever is ready, round-robin across connections;
   * one interrupt. At most one ring's worth of buffers per call (vCPUs may
   * keep adding buffers while we work): the rest continues after other
   * events had their turn.
   */
  private pump(): void {
    const { rx, host, memory } = this;
    if (!rx || !host || !memory) return;
    const budget = { used: 0 };
    try {
      // Only pick a packet when there is a buffer for it, so the round-robin
      // order survives an empty RX queue.
      while (rx.pending() > 0) {
        const source = this.nextSource();
        if (!source) break;
        const chain = this.popRxBuffer(rx, host, budget);
        if (!chain) {
          this.putBack(source);
          break;
        }
        const room = Math.min(chain.writableBytes - VSOCK_HDR_SIZE, VSOCK_MAX_PAYLOAD);
        const written = this.writePacket(memory, chain, source, room);
        if (source.kind === 'conn' && source.state.hasPacket()) this.ready.add(source.state);
        const error = rx.pushUsed(chain.head, written);
        if (error) return host.needsReset(error);
        this.stats.rxPackets++;
        budget.used++;
      }
    } finally {
      if (budget.used > 0 && rx.needsNotification()) host.signalUsed(VSOCK_QUEUE_RX);
    }
  }

  /**
   * The next usable RX buffer: device-writable only, room for a header.
   * Others are returned empty (used length 0, which Linux drops). Null when
   * the queue is empty or broken, or this pass used its budget (then the
   * pump continues later).
   */
  private popRxBuffer(rx: Virtqueue, host: VirtioDeviceHost, budget: { used: number }): DescriptorChain | null {
    while (budget.used < rx.size) {
      const popped = rx.pop();
      if (popped.kind === 'empty') return null;
      if (popped.kind === 'error') {
        host.needsReset(popped.error);
        return null;
      }
      const chain = popped.chain;
      if (chain.readable.length === 0 && chain.writableBytes >= VSOCK_HDR_SIZE) return chain;
      this.stats.badRxBuffers++;
      const error = rx.pushUsed(chain.head, 0);
      if (error) {
        host.needsReset(error);
        return null;
      }
      budget.used++;
    }
    this.continuePumpLater();
    return null;
  }

  /** A packet picked but not sent goes back to the front of its queue. */
  private putBack(source: Source): void {
    if (source.kind === 'reset') {
      this.resets.unshift(source.reset);
      return;
    }
    // Sets keep insertion order: rebuild with this one first.
    const rest = [...this.ready];
    this.ready.clear();
    this.ready.add(source.state);
    for (const state of rest) this.ready.add(state);
  }

  /** Write one packet into `chain`; returns the bytes written (header + payload). */
  private writePacket(memory: GuestMemory, chain: DescriptorChain, source: Source, room: number): number {
    let guestPort: number;
    let hostPort: number;
    let type = VSOCK_TYPE_STREAM;
    let packet: OutgoingPacket;
    if (source.kind === 'reset') {
      ({ guestPort, hostPort, type } = source.reset);
      packet = { op: VSOCK_OP_RST, flags: 0, payload: null, bufAlloc: 0, fwdCnt: 0 };
    } else {
      guestPort = source.state.guestPort;
      hostPort = source.state.hostPort;
      const next = source.state.nextPacket(room);
      // hasPacket() was true just now, so this does not happen; a used length
      // of 0 is a packet Linux drops.
      if (!next) return 0;
      packet = next;
    }
    const payloadLength = packet.payload ? packet.payload.length : 0;
    const header = encodeHeader({
      srcCid: HOST_CID,
      dstCid: this.guestCidBig,
      srcPort: hostPort,
      dstPort: guestPort,
      len: payloadLength,
      type,
      op: packet.op,
      flags: packet.flags,
      bufAlloc: packet.bufAlloc,
      fwdCnt: packet.fwdCnt,
    });
    writeSegments(memory, chain.writable, 0, header);
    if (packet.payload && payloadLength > 0) writeSegments(memory, chain.writable, VSOCK_HDR_SIZE, packet.payload);
    return VSOCK_HDR_SIZE + payloadLength;
  }

  private deliverEvents(): void {
    const { events, host, memory } = this;
    if (!this.transportResetOwed || !events || !host || !memory) return;
    let used = 0;
    for (let i = 0; i < events.size && this.transportResetOwed; i++) {
      const popped = events.pop();
      if (popped.kind === 'empty') break;
      if (popped.kind === 'error') {
        host.needsReset(popped.error);
        break;
      }
      const chain = popped.chain;
      let written = 0;
      if (chain.readable.length === 0 && chain.writableBytes >= VSOCK_EVENT_SIZE) {
        const event = new Uint8Array(VSOCK_EVENT_SIZE);
        new DataView(event.buffer).setUint32(0, VSOCK_EVENT_TRANSPORT_RESET, true);
        writeSegments(memory, chain.writable, 0, event);
        written = VSOCK_EVENT_SIZE;
        this.transportResetOwed = false;
      }
      const error = events.pushUsed(chain.head, written);
      if (error) {
        host.needsReset(error);
        break;
      }
      used++;
    }
    if (used > 0 && events.needsNotification()) host.signalUsed(VSOCK_QUEUE_EVENT);
  }

  // ------------------------------------------------------------ helpers

  private dropAll(reason: VsockCloseReason, code: VsockErrorCode, includeUnsent: boolean): void {
    for (const state of [...this.connections.values()]) {
      if (state.phase === 'request' && !includeUnsent) continue;
      state.drop(reason, code);
      // A connection whose Duplex is still being read stays known until it
      // closes; it no longer talks to the guest.
    }
  }

  private allocatePort(guestPort: number): number | null {
    const span = VSOCK_PORT_ANY - VSOCK_EPHEMERAL_PORT_BASE;
    for (let tries = 0; tries < this.maxHostConnections + this.listeners.size + 1; tries++) {
      const port = this.nextEphemeralPort;
      this.nextEphemeralPort = VSOCK_EPHEMERAL_PORT_BASE + ((port - VSOCK_EPHEMERAL_PORT_BASE + 1) % span);
      if (this.listeners.has(port) || this.connections.has(connectionKey(guestPort, port))) continue;
      return port;
    }
    return null;
  }

  private clearTimer(state: ConnectionState): void {
    const timer = this.timers.get(state);
    if (timer === undefined) return;
    clearTimeout(timer);
    this.timers.delete(state);
  }

  private emit(event: VsockEvent): void {
    try {
      this.onEvent?.(event);
    } catch {
      // A logging hook must not turn a guest action into a VMM exception.
    }
  }
}
