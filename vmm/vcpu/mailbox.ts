/**
 * The shared-memory mailbox between a vCPU worker and the VMM's main thread.
 *
 * A port or MMIO exit must be answered before the vCPU can re-enter the
 * guest, and devices live on the main thread. The worker writes the access
 * into the mailbox, bumps the request counter and sleeps (Atomics.wait); the
 * main thread wakes (Atomics.waitAsync), runs the device, writes the answer,
 * copies the counter into the response slot and wakes the worker. Counters
 * (not flags) mean neither side can confuse an old request with a new one.
 */

/** Int32 slots of the mailbox. */
export const SLOT = {
  request: 0,
  response: 1,
  kind: 2,
  isWrite: 3,
  size: 4,
  addressLow: 5,
  addressHigh: 6,
  /** 8 data bytes as two int32 slots (7, 8). */
  data: 7,
  /** Main → worker: control flags (see CONTROL). */
  control: 9,
  /** Main → worker: bumped to wake a paused vCPU. */
  resume: 10,
  /** Worker → main, diagnostics: KVM_RUN calls so far. */
  runs: 11,
  /** Worker → main: bumped each time the worker starts sitting out a pause (outside KVM_RUN until told to run). */
  pauses: 12,
  /** Main → worker: bumped to ask a paused worker for a sample (VcpuMessage 'sample' answers it). */
  sampleRequest: 13,
  /** Main → worker: 1 when that sample should have the detail. */
  sampleDetail: 14,
} as const;

export const MAILBOX_SLOTS = 15;
export const MAILBOX_BYTES = MAILBOX_SLOTS * Int32Array.BYTES_PER_ELEMENT;

export const ACCESS_KIND = { pio: 1, mmio: 2 } as const;
export type AccessKind = (typeof ACCESS_KIND)[keyof typeof ACCESS_KIND];

export const CONTROL = { run: 0, pause: 1, stop: 2 } as const;

/** Byte offset of the data bytes inside the mailbox buffer. */
export const DATA_BYTE_OFFSET = SLOT.data * Int32Array.BYTES_PER_ELEMENT;

export interface Access {
  kind: AccessKind;
  isWrite: boolean;
  address: number;
  /** A view of the mailbox's data bytes, `size` long. */
  data: Uint8Array;
}

export class Mailbox {
  readonly slots: Int32Array;
  readonly bytes: Uint8Array;

  constructor(readonly buffer: SharedArrayBuffer) {
    this.slots = new Int32Array(buffer, 0, MAILBOX_SLOTS);
    this.bytes = new Uint8Array(buffer);
  }

  static create(): Mailbox {
    return new Mailbox(new SharedArrayBuffer(MAILBOX_BYTES));
  }

  dataView(size: number): Uint8Array {
    return this.bytes.subarray(DATA_BYTE_OFFSET, DATA_BYTE_OFFSET + size);
  }

  /** Worker side: publish an access and sleep until the main thread answered it. */
  call(kind: AccessKind, isWrite: boolean, address: number, size: number): void {
    const s = this.slots;
    s[SLOT.kind] = kind;
    s[SLOT.isWrite] = isWrite ? 1 : 0;
    s[SLOT.size] = size;
    s[SLOT.addressLow] = address | 0;
    s[SLOT.addressHigh] = Math.floor(address / 0x1_0000_0000) | 0;
    const id = (Atomics.load(s, SLOT.request) + 1) | 0;
    Atomics.store(s, SLOT.request, id);
    Atomics.notify(s, SLOT.request);
    // Wait on the value just compared: re-reading it for Atomics.wait would lose
    // an answer that lands between the two reads.
    for (let seen = Atomics.load(s, SLOT.response); seen !== id; seen = Atomics.load(s, SLOT.response)) {
      Atomics.wait(s, SLOT.response, seen);
    }
  }

  /** Main side: the access now pending (call only after the request counter moved). */
  pending(): Access {
    const s = this.slots;
    const size = s[SLOT.size]!;
    return {
      kind: s[SLOT.kind] as AccessKind,
      isWrite: s[SLOT.isWrite] === 1,
      address: (s[SLOT.addressHigh]! >>> 0) * 0x1_0000_0000 + (s[SLOT.addressLow]! >>> 0),
      data: this.dataView(size),
    };
  }

  /** Main side: mark request `id` answered and wake the worker. */
  answer(id: number): void {
    Atomics.store(this.slots, SLOT.response, id);
    Atomics.notify(this.slots, SLOT.response);
  }
}
