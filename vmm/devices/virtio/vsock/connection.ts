/**
 * One vsock stream connection between a guest port and a host port: the
 * host-facing `VsockConnection` (a Node `Duplex`) and the `ConnectionState`
 * behind it, which runs the protocol state machine and both directions of
 * credit-based flow control (virtio 1.2, 5.10.6.3).
 *
 * Guest → host: every byte the guest sends is queued here (one byte ring per
 * connection, so tiny packets cost no per-packet objects) until Node asks for
 * it (`_read`); only then is it pushed into the Duplex and counted in our
 * `fwd_cnt`. The queue can never exceed `buf_alloc`: a guest that sends more
 * than the credit we advertised gets an RST. We push only while Node's
 * readable buffer is empty, so it holds at most two of our chunks (each at
 * most min(64 KiB, highWaterMark)) on top.
 *
 * Host → guest: `_write` holds one chunk at a time and completes it once all
 * of its bytes are in guest RX buffers. Bytes go out only within the guest's
 * credit (`peer_buf_alloc - (tx_cnt - peer_fwd_cnt)`), so a guest that never
 * reads stalls that connection's writer (back-pressure through
 * `write() === false`), nothing else.
 *
 * The state machine, host view:
 *
 *   request ──REQUEST sent──► connecting ──RESPONSE──► open ──► closed
 *   (host connect)            (host connect)            ▲
 *   guest REQUEST accepted ───────────────────────────────┘ (RESPONSE owed)
 *
 *   closed: an RST may still be owed to the guest; the slot is released once
 *   that RST is in guest memory and the Duplex is destroyed.
 *
 * Nothing here throws at the guest: protocol violations become an RST of the
 * one connection they concern.
 */
import { Duplex } from 'node:stream';
import { ByteQueue } from './byte-queue.js';
import {
  VSOCK_MAX_PAYLOAD,
  VSOCK_OP_CREDIT_REQUEST,
  VSOCK_OP_CREDIT_UPDATE,
  VSOCK_OP_REQUEST,
  VSOCK_OP_RESPONSE,
  VSOCK_OP_RST,
  VSOCK_OP_RW,
  VSOCK_OP_SHUTDOWN,
  VSOCK_SHUTDOWN_RCV,
  VSOCK_SHUTDOWN_SEND,
  opName,
} from './packet.js';
import type { VsockHeader } from './packet.js';

/** Who opened the connection. */
export type VsockInitiator = 'guest' | 'host';

/** Why a connection closed (set before 'close' is emitted; null while open). */
export type VsockCloseReason =
  /** The host ended or destroyed it. */
  | 'local'
  /** The guest sent RST. */
  | 'peer-reset'
  /** The guest shut down both directions (close() in the guest). */
  | 'peer-closed'
  /** The guest broke the protocol; the device sent RST. */
  | 'protocol-error'
  /** The guest sent more than the credit we advertised; the device sent RST. */
  | 'credit-overflow'
  /** The driver reset the device, or the host sent a transport-reset event. */
  | 'device-reset'
  /** The VMM disposed of the device. */
  | 'disposed';

/** Error codes of a failed `connect()` (also the `code` of `VsockError`). */
export type VsockErrorCode =
  /** The guest answered RST: nothing listens on that port. */
  | 'ECONNREFUSED'
  /** No RESPONSE within the timeout. */
  | 'ETIMEDOUT'
  /** The device was reset (or disposed) before the guest answered. */
  | 'ECONNRESET'
  /** The guest answered with something other than RESPONSE or RST. */
  | 'EPROTO'
  /** Too many host-initiated connections are open. */
  | 'EMFILE'
  /** The device was disposed. */
  | 'ESHUTDOWN';

export class VsockError extends Error {
  constructor(
    readonly code: VsockErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'VsockError';
  }
}

/** What the Duplex asks of its connection state. Internal. */
export interface ConnectionLink {
  /** Node wants more readable data. */
  read(): void;
  /** Send `chunk` to the guest; `done` once all of it is in guest memory (or discarded). */
  write(chunk: Buffer, done: () => void): void;
  /** end(): SHUTDOWN(SEND) once written data is out; `done` when it is. */
  final(done: () => void): void;
  /** The Duplex was destroyed (by the host or by us). */
  destroyed(): void;
}

/**
 * The host's end of one vsock stream connection: a Node Duplex, so a
 * `net.Socket` pipes into it directly (`pipeline(socket, conn, socket)`).
 *
 * - `allowHalfOpen` is true: 'end' (the guest sent SHUTDOWN(SEND)) does not
 *   end the writable side; call `end()` to send SHUTDOWN(SEND) yourself.
 * - Guest-caused closes never emit 'error': the stream is destroyed without
 *   an error and `closeReason` says why. Only `destroy(err)` by the host
 *   emits 'error'.
 * - A connection holds one of the device's connection slots until it is
 *   destroyed (directly, or by autoDestroy after 'end' and 'finish'): always
 *   end or destroy connections you are done with.
 */
export class VsockConnection extends Duplex {
  /** Why the connection closed; null while it is open. */
  closeReason: VsockCloseReason | null = null;

  constructor(
    /** The guest's CID (the remote address). */
    readonly guestCid: number,
    readonly guestPort: number,
    /** The host's port: the listening port, or an ephemeral one for `connect()`. */
    readonly hostPort: number,
    readonly initiator: VsockInitiator,
    private readonly link: ConnectionLink,
    highWaterMark: number,
  ) {
    super({ allowHalfOpen: true, readableHighWaterMark: highWaterMark, writableHighWaterMark: highWaterMark });
  }

  override _read(_size: number): void {
    this.link.read();
  }

  override _write(chunk: unknown, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.link.write(toBuffer(chunk, encoding), () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.link.final(() => callback());
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    if (this.closeReason === null) this.closeReason = 'local';
    this.link.destroyed();
    callback(error);
  }
}

function toBuffer(chunk: unknown, encoding: BufferEncoding): Buffer {
  if (Buffer.isBuffer(chunk)) return chunk;
  if (chunk instanceof Uint8Array) return Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  if (typeof chunk === 'string') return Buffer.from(chunk, encoding);
  return Buffer.from(String(chunk));
}

/** What a connection needs from the device (the multiplexer). Internal. */
export interface ConnectionMux {
  readonly guestCid: number;
  /** Our receive buffer per connection (advertised as buf_alloc). */
  readonly bufAlloc: number;
  /** High-water mark of both sides of each Duplex. */
  readonly highWaterMark: number;
  /** The connection has a packet for the guest: put it on the RX schedule. */
  wake(state: ConnectionState): void;
  /** The connection is finished: forget it, free its slot. */
  release(state: ConnectionState): void;
  /** Host code threw inside a stream callback of this connection. */
  handlerError(state: ConnectionState, error: unknown): void;
}

/** Resolves or rejects a host-initiated `connect()`. */
export interface ConnectWaiter {
  resolve(connection: VsockConnection): void;
  reject(error: VsockError): void;
}

export type ConnectionPhase = 'request' | 'connecting' | 'open' | 'closed';

/** One packet for the guest, minus the addressing the device adds. */
export interface OutgoingPacket {
  readonly op: number;
  readonly flags: number;
  readonly payload: Uint8Array | null;
  readonly bufAlloc: number;
  readonly fwdCnt: number;
}

/** Copies payload bytes [offset, offset + into.length) of the current guest packet into `into`. */
export type PayloadReader = (offset: number, into: Uint8Array) => void;

/** Run `fn` after the current device work, outside any state transition. */
function later(fn: () => void): void {
  queueMicrotask(fn);
}

export class ConnectionState implements ConnectionLink {
  phase: ConnectionPhase;
  /** The host's Duplex; exists from `open` on. */
  connection: VsockConnection | null = null;
  /** Set for a host-initiated connection until the guest answers. */
  waiter: ConnectWaiter | null = null;

  // Control packets owed to the guest.
  private responseOwed = false;
  private rstOwed = false;
  private creditUpdateOwed = false;
  /** A CREDIT_REQUEST went out for the current stall. */
  private creditRequested = false;
  private shutdownSent = false;

  // Host → guest.
  /** Bytes sent to the guest (u32, wraps). */
  private txCnt = 0;
  private peerBufAlloc = 0;
  private peerFwdCnt = 0;
  private pending: Buffer | null = null;
  private pendingOffset = 0;
  private pendingDone: (() => void) | null = null;
  private finalDone: (() => void) | null = null;
  /** The guest sent SHUTDOWN(RCV): it reads no more. */
  private peerNoReceive = false;

  // Guest → host.
  /** Bytes received from the guest (exact). */
  private rxCnt = 0;
  /** Bytes handed to Node (exact); advertised modulo 2^32. */
  private fwdCnt = 0;
  /** fwd_cnt as of the last packet we sent: the guest's view. */
  private lastSentFwdCnt = 0;
  private readonly queue: ByteQueue;
  private wantsData = false;
  /** The guest sent SHUTDOWN(SEND): EOF after the queued bytes. */
  private peerNoSend = false;
  private eofPushed = false;
  private delivering = false;

  constructor(
    private readonly mux: ConnectionMux,
    readonly initiator: VsockInitiator,
    readonly guestPort: number,
    readonly hostPort: number,
  ) {
    this.phase = initiator === 'host' ? 'request' : 'open';
    this.queue = new ByteQueue(mux.bufAlloc);
  }

  get key(): string {
    return connectionKey(this.guestPort, this.hostPort);
  }

  /** Bytes from the guest waiting for the host to read them. */
  get queuedFromGuest(): number {
    return this.queue.length;
  }

  /** Bytes the guest's credit lets us send now. */
  peerCredit(): number {
    const inFlight = (this.txCnt - this.peerFwdCnt) >>> 0;
    return inFlight >= this.peerBufAlloc ? 0 : this.peerBufAlloc - inFlight;
  }

  // ------------------------------------------------------------ set-up

  /** Accept a guest REQUEST: RESPONSE owed, Duplex created. */
  acceptRequest(header: VsockHeader): VsockConnection {
    this.phase = 'open';
    this.responseOwed = true;
    this.updatePeerCredit(header.bufAlloc, header.fwdCnt);
    return this.createConnection();
  }

  private createConnection(): VsockConnection {
    const connection = new VsockConnection(
      this.mux.guestCid,
      this.guestPort,
      this.hostPort,
      this.initiator,
      this,
      this.mux.highWaterMark,
    );
    this.connection = connection;
    return connection;
  }

  // ------------------------------------------------------------ guest → device

  /**
   * A well-formed, correctly addressed STREAM packet for this connection.
   * `readPayload(offset, into)` copies payload bytes [offset, offset +
   * into.length) out of guest memory; it is called only for data the
   * connection accepts.
   */
  onPacket(header: VsockHeader, readPayload: PayloadReader): void {
    switch (this.phase) {
      case 'request':
        // The device routes these as packets for no connection.
        return;
      case 'connecting':
        this.onConnectingPacket(header);
        return;
      case 'open':
        this.onOpenPacket(header, readPayload);
        return;
      case 'closed':
        if (header.op === VSOCK_OP_RST && this.rstOwed) {
          // The guest closed too; our RST would only be answered by nothing.
          this.rstOwed = false;
          this.maybeRelease();
        }
        return;
    }
  }

  private onConnectingPacket(header: VsockHeader): void {
    switch (header.op) {
      case VSOCK_OP_RESPONSE: {
        this.phase = 'open';
        this.updatePeerCredit(header.bufAlloc, header.fwdCnt);
        const connection = this.createConnection();
        const waiter = this.waiter;
        this.waiter = null;
        waiter?.resolve(connection);
        return;
      }
      case VSOCK_OP_RST:
        this.fail('ECONNREFUSED', `guest port ${this.guestPort} refused the connection`);
        this.close('peer-reset', false);
        return;
      default:
        this.fail('EPROTO', `guest answered REQUEST with ${opName(header.op)}`);
        this.close('protocol-error', true);
        return;
    }
  }

  private onOpenPacket(header: VsockHeader, readPayload: PayloadReader): void {
    // Every packet carries the sender's credit (spec 5.10.6.3).
    this.updatePeerCredit(header.bufAlloc, header.fwdCnt);
    switch (header.op) {
      case VSOCK_OP_RW:
        this.onData(header.len, readPayload);
        return;
      case VSOCK_OP_CREDIT_UPDATE:
        return;
      case VSOCK_OP_CREDIT_REQUEST:
        this.creditUpdateOwed = true;
        this.mux.wake(this);
        return;
      case VSOCK_OP_SHUTDOWN:
        this.onShutdown(header.flags);
        return;
      case VSOCK_OP_RST:
        this.close('peer-reset', false);
        return;
      default:
        // REQUEST or RESPONSE on an open connection, INVALID, unknown ops.
        this.abort('protocol-error');
        return;
    }
  }

  private onData(len: number, readPayload: PayloadReader): void {
    if (this.peerNoSend) return this.abort('protocol-error'); // data after SHUTDOWN(SEND)
    if (len === 0) return;
    // The guest's view of our free space is never larger than the real one
    // (fwd_cnt only grows), so a guest within its credit always fits.
    if (this.queue.length + len > this.mux.bufAlloc) return this.abort('credit-overflow');
    this.rxCnt += len;
    this.queue.append(len, readPayload);
    this.deliver();
  }

  private onShutdown(flags: number): void {
    if (flags & VSOCK_SHUTDOWN_RCV && !this.peerNoReceive) {
      this.peerNoReceive = true;
      this.dropPending();
    }
    if (flags & VSOCK_SHUTDOWN_SEND) this.peerNoSend = true;
    if (this.peerNoReceive && this.peerNoSend) {
      this.peerClosed();
      return;
    }
    if (flags & VSOCK_SHUTDOWN_SEND) this.deliver();
  }

  /** The guest shut down both directions: answer RST (as Linux does), keep unread data readable. */
  private peerClosed(): void {
    this.phase = 'closed';
    this.rstOwed = true;
    this.dropPending();
    this.dropFinal();
    const connection = this.connection;
    if (connection) {
      connection.closeReason ??= 'peer-closed';
      this.deliver();
      // Nothing more can be written or read: close once the host has read the rest.
      if (connection.readableEnded) connection.destroy();
      else connection.once('end', () => connection.destroy());
    }
    this.mux.wake(this);
  }

  private updatePeerCredit(bufAlloc: number, fwdCnt: number): void {
    this.peerBufAlloc = bufAlloc;
    this.peerFwdCnt = fwdCnt;
    if (this.peerCredit() > 0) {
      this.creditRequested = false;
      if (this.pending && !this.peerNoReceive) this.mux.wake(this);
    }
  }

  // ------------------------------------------------------------ device → guest

  /** Whether `nextPacket` has something to send now. */
  hasPacket(): boolean {
    switch (this.phase) {
      case 'request':
        return true;
      case 'connecting':
        return false;
      case 'closed':
        return this.rstOwed;
      case 'open':
        if (this.responseOwed || this.creditUpdateOwed) return true;
        if (this.pending && !this.peerNoReceive && (this.peerCredit() > 0 || !this.creditRequested)) return true;
        return this.finalDone !== null && this.pending === null && !this.shutdownSent;
    }
  }

  /**
   * The next packet for the guest, with at most `room` payload bytes (the RX
   * buffer's space after the header). Null when there is nothing to send.
   * Order: REQUEST / RESPONSE, RST, data, CREDIT_REQUEST, CREDIT_UPDATE,
   * SHUTDOWN.
   */
  nextPacket(room: number): OutgoingPacket | null {
    switch (this.phase) {
      case 'request':
        this.phase = 'connecting';
        return this.packet(VSOCK_OP_REQUEST);
      case 'connecting':
        return null;
      case 'closed':
        if (!this.rstOwed) return null;
        this.rstOwed = false;
        this.maybeRelease();
        return this.packet(VSOCK_OP_RST);
      case 'open':
        return this.nextOpenPacket(room);
    }
  }

  private nextOpenPacket(room: number): OutgoingPacket | null {
    if (this.responseOwed) {
      this.responseOwed = false;
      return this.packet(VSOCK_OP_RESPONSE);
    }
    const pending = this.pending;
    if (pending && !this.peerNoReceive) {
      const credit = this.peerCredit();
      if (credit > 0 && room > 0) {
        const n = Math.min(credit, room, VSOCK_MAX_PAYLOAD, pending.length - this.pendingOffset);
        const payload = pending.subarray(this.pendingOffset, this.pendingOffset + n);
        this.pendingOffset += n;
        this.txCnt = (this.txCnt + n) >>> 0;
        if (this.pendingOffset === pending.length) this.dropPending();
        return this.packet(VSOCK_OP_RW, 0, payload);
      }
      if (credit === 0 && !this.creditRequested) {
        this.creditRequested = true;
        return this.packet(VSOCK_OP_CREDIT_REQUEST);
      }
    }
    if (this.creditUpdateOwed) return this.packet(VSOCK_OP_CREDIT_UPDATE);
    if (this.finalDone && this.pending === null && !this.shutdownSent) {
      this.shutdownSent = true;
      this.dropFinal();
      return this.packet(VSOCK_OP_SHUTDOWN, VSOCK_SHUTDOWN_SEND);
    }
    // Data is waiting but the RX buffer has no room for payload: a credit
    // update is always a valid packet and keeps the rings moving.
    return this.hasPacket() ? this.packet(VSOCK_OP_CREDIT_UPDATE) : null;
  }

  private packet(op: number, flags = 0, payload: Uint8Array | null = null): OutgoingPacket {
    // Every packet tells the guest our current credit.
    this.lastSentFwdCnt = this.fwdCnt;
    this.creditUpdateOwed = false;
    return { op, flags, payload, bufAlloc: this.mux.bufAlloc, fwdCnt: this.fwdCnt >>> 0 };
  }

  // ------------------------------------------------------------ host side (ConnectionLink)

  read(): void {
    this.wantsData = true;
    this.deliver();
  }

  write(chunk: Buffer, done: () => void): void {
    if (this.phase !== 'open' || this.peerNoReceive || this.shutdownSent || chunk.length === 0) {
      // Nowhere to go: the guest will never read it.
      later(done);
      return;
    }
    this.pending = chunk;
    this.pendingOffset = 0;
    this.pendingDone = done;
    if (this.hasPacket()) this.mux.wake(this);
  }

  final(done: () => void): void {
    if (this.phase !== 'open' || this.shutdownSent) {
      later(done);
      return;
    }
    this.finalDone = done;
    if (this.hasPacket()) this.mux.wake(this);
  }

  destroyed(): void {
    if (this.phase === 'open') this.abort('local');
    else this.maybeRelease();
  }

  // ------------------------------------------------------------ delivery to the host

  /** Push queued guest bytes into the Duplex while Node wants them; EOF after the last. */
  private deliver(): void {
    const connection = this.connection;
    if (this.delivering || !connection || connection.destroyed) return;
    this.delivering = true;
    try {
      while (this.wantsData && this.queue.length > 0 && !connection.destroyed) {
        const chunk = this.queue.take(Math.min(VSOCK_MAX_PAYLOAD, this.mux.highWaterMark))!;
        this.fwdCnt += chunk.length;
        // Keep going only while the consumer takes chunks as they come: what
        // it does not take waits here, coalesced, rather than in Node's list.
        this.wantsData = connection.push(chunk) && connection.readableLength === 0;
      }
      if (this.queue.length === 0 && this.peerNoSend && !this.eofPushed && !connection.destroyed) {
        this.eofPushed = true;
        connection.push(null);
      }
    } catch (error) {
      // A host 'data' listener threw: that connection is finished, the device is not.
      this.delivering = false;
      this.mux.handlerError(this, error);
      this.abort('local');
      return;
    }
    this.delivering = false;
    this.considerCreditUpdate();
  }

  /**
   * Tell the guest about freed space when its view of our buffer runs low
   * (below min(64 KiB, buf_alloc / 2)) and we have freed something since the
   * last packet. A guest that ran out of credit therefore always hears back
   * as soon as the host reads.
   */
  private considerCreditUpdate(): void {
    if (this.phase !== 'open' || this.peerNoSend || this.creditUpdateOwed) return;
    const unreported = this.fwdCnt - this.lastSentFwdCnt;
    if (unreported <= 0) return;
    const guestView = this.mux.bufAlloc - (this.rxCnt - this.lastSentFwdCnt);
    if (guestView < Math.min(VSOCK_MAX_PAYLOAD, Math.floor(this.mux.bufAlloc / 2))) {
      this.creditUpdateOwed = true;
      this.mux.wake(this);
    }
  }

  // ------------------------------------------------------------ closing

  /** Host-side RST (protocol error, credit overflow, host destroy). */
  abort(reason: VsockCloseReason): void {
    if (this.phase === 'closed') return;
    // A REQUEST that never reached the guest needs no RST.
    this.close(reason, this.phase !== 'request');
  }

  /**
   * Close without involving the guest further: device reset, transport
   * reset, dispose. Pending connects fail with `code`.
   */
  drop(reason: VsockCloseReason, code: VsockErrorCode): void {
    this.fail(code, `vsock connection to guest port ${this.guestPort} dropped: ${reason}`);
    if (this.phase !== 'closed') {
      this.close(reason, false);
      return;
    }
    // Already closed (e.g. unread data after the guest closed): finish it.
    this.rstOwed = false;
    const connection = this.connection;
    if (connection && !connection.destroyed) {
      connection.closeReason ??= reason;
      connection.destroy();
    }
    this.maybeRelease();
  }

  /** A host connect that got no RESPONSE in time. */
  timeOut(): void {
    if (this.phase !== 'request' && this.phase !== 'connecting') return;
    this.fail('ETIMEDOUT', `guest port ${this.guestPort} did not answer`);
    this.abort('local');
  }

  private close(reason: VsockCloseReason, sendRst: boolean): void {
    this.phase = 'closed';
    this.rstOwed = sendRst;
    this.responseOwed = false;
    this.creditUpdateOwed = false;
    this.queue.clear();
    this.dropPending();
    this.dropFinal();
    this.fail('ECONNRESET', `vsock connection to guest port ${this.guestPort} closed: ${reason}`);
    const connection = this.connection;
    if (connection && !connection.destroyed) {
      connection.closeReason ??= reason;
      connection.destroy();
    }
    if (this.rstOwed) this.mux.wake(this);
    else this.maybeRelease();
  }

  private fail(code: VsockErrorCode, message: string): void {
    const waiter = this.waiter;
    this.waiter = null;
    waiter?.reject(new VsockError(code, message));
  }

  private dropPending(): void {
    const done = this.pendingDone;
    this.pending = null;
    this.pendingOffset = 0;
    this.pendingDone = null;
    if (done) later(done);
  }

  private dropFinal(): void {
    const done = this.finalDone;
    this.finalDone = null;
    if (done) later(done);
  }

  private maybeRelease(): void {
    if (this.phase !== 'closed' || this.rstOwed) return;
    if (this.connection && !this.connection.destroyed) return;
    this.mux.release(this);
  }
}

/** Map key of a connection. */
export function connectionKey(guestPort: number, hostPort: number): string {
  return `${guestPort}:${hostPort}`;
}
