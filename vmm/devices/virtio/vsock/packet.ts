/**
 * virtio-vsock wire format (virtio 1.2, section 5.10): the 44-byte packet
 * header every packet starts with, its operations and flags, the event
 * record, and the limits the device applies to guest packets.
 *
 * All fields are little-endian:
 *
 *   off  size  field
 *     0     8  src_cid
 *     8     8  dst_cid
 *    16     4  src_port
 *    20     4  dst_port
 *    24     4  len        payload bytes after the header
 *    28     2  type       1 = STREAM, 2 = SEQPACKET
 *    30     2  op         VSOCK_OP_*
 *    32     4  flags      SHUTDOWN: VSOCK_SHUTDOWN_*; SEQPACKET: EOM/EOR
 *    36     4  buf_alloc  sender's receive buffer for this connection
 *    40     4  fwd_cnt    bytes the sender's application has consumed (free-running)
 */

export const VSOCK_HDR_SIZE = 44;
/** Size of the device config space: guest_cid (le64). */
export const VSOCK_CONFIG_SIZE = 8;

/** Well-known CIDs. The host is always 2; guests get 3 and up. */
export const VSOCK_CID_HYPERVISOR = 0;
export const VSOCK_CID_LOCAL = 1;
export const VSOCK_CID_HOST = 2;
/** VMADDR_CID_ANY / VMADDR_PORT_ANY: never a real address. */
export const VSOCK_CID_ANY = 0xffff_ffff;
export const VSOCK_PORT_ANY = 0xffff_ffff;

export const VSOCK_TYPE_STREAM = 1;
export const VSOCK_TYPE_SEQPACKET = 2;

export const VSOCK_OP_INVALID = 0;
export const VSOCK_OP_REQUEST = 1;
export const VSOCK_OP_RESPONSE = 2;
export const VSOCK_OP_RST = 3;
export const VSOCK_OP_SHUTDOWN = 4;
export const VSOCK_OP_RW = 5;
export const VSOCK_OP_CREDIT_UPDATE = 6;
export const VSOCK_OP_CREDIT_REQUEST = 7;

/** SHUTDOWN flags: the sender will receive no more / send no more. */
export const VSOCK_SHUTDOWN_RCV = 1;
export const VSOCK_SHUTDOWN_SEND = 2;

/** Feature bits (none are offered: without any, the device is stream-only). */
export const VIRTIO_VSOCK_F_STREAM = 1n << 0n;
export const VIRTIO_VSOCK_F_SEQPACKET = 1n << 1n;

/** Event queue record: le32 id. */
export const VSOCK_EVENT_SIZE = 4;
export const VSOCK_EVENT_TRANSPORT_RESET = 0;

/**
 * Largest payload of one packet, either direction: Linux's
 * VIRTIO_VSOCK_MAX_PKT_BUF_SIZE. A guest packet announcing more is refused
 * before anything is copied.
 */
export const VSOCK_MAX_PAYLOAD = 64 * 1024;

/** Queue indices. */
export const VSOCK_QUEUE_RX = 0;
export const VSOCK_QUEUE_TX = 1;
export const VSOCK_QUEUE_EVENT = 2;

export interface VsockHeader {
  /** CIDs are u64 on the wire; kept exact as bigints. */
  readonly srcCid: bigint;
  readonly dstCid: bigint;
  readonly srcPort: number;
  readonly dstPort: number;
  readonly len: number;
  readonly type: number;
  readonly op: number;
  readonly flags: number;
  readonly bufAlloc: number;
  readonly fwdCnt: number;
}

/** Parse a header from the first 44 bytes of `bytes` (which the caller owns: no double fetch). */
export function decodeHeader(bytes: Uint8Array): VsockHeader {
  if (bytes.length < VSOCK_HDR_SIZE) throw new RangeError(`vsock header needs ${VSOCK_HDR_SIZE} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, VSOCK_HDR_SIZE);
  return {
    srcCid: view.getBigUint64(0, true),
    dstCid: view.getBigUint64(8, true),
    srcPort: view.getUint32(16, true),
    dstPort: view.getUint32(20, true),
    len: view.getUint32(24, true),
    type: view.getUint16(28, true),
    op: view.getUint16(30, true),
    flags: view.getUint32(32, true),
    bufAlloc: view.getUint32(36, true),
    fwdCnt: view.getUint32(40, true),
  };
}

/** Serialise `header` into a new 44-byte array. Numbers are truncated to their field width. */
export function encodeHeader(header: VsockHeader): Uint8Array {
  const bytes = new Uint8Array(VSOCK_HDR_SIZE);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, BigInt.asUintN(64, header.srcCid), true);
  view.setBigUint64(8, BigInt.asUintN(64, header.dstCid), true);
  view.setUint32(16, header.srcPort >>> 0, true);
  view.setUint32(20, header.dstPort >>> 0, true);
  view.setUint32(24, header.len >>> 0, true);
  view.setUint16(28, header.type & 0xffff, true);
  view.setUint16(30, header.op & 0xffff, true);
  view.setUint32(32, header.flags >>> 0, true);
  view.setUint32(36, header.bufAlloc >>> 0, true);
  view.setUint32(40, header.fwdCnt >>> 0, true);
  return bytes;
}

/** A readable name for an op (logs and errors). */
export function opName(op: number): string {
  switch (op) {
    case VSOCK_OP_INVALID:
      return 'INVALID';
    case VSOCK_OP_REQUEST:
      return 'REQUEST';
    case VSOCK_OP_RESPONSE:
      return 'RESPONSE';
    case VSOCK_OP_RST:
      return 'RST';
    case VSOCK_OP_SHUTDOWN:
      return 'SHUTDOWN';
    case VSOCK_OP_RW:
      return 'RW';
    case VSOCK_OP_CREDIT_UPDATE:
      return 'CREDIT_UPDATE';
    case VSOCK_OP_CREDIT_REQUEST:
      return 'CREDIT_REQUEST';
    default:
      return `op ${op}`;
  }
}

/** True for ports a connection may use (everything but VMADDR_PORT_ANY). */
export function isValidPort(port: number): boolean {
  return Number.isInteger(port) && port >= 0 && port < VSOCK_PORT_ANY;
}
