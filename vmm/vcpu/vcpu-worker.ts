/**
 * A vCPU thread: runs KVM_RUN in a loop, synchronously. Port and MMIO exits
 * are handed to the main thread's devices through the mailbox; anything that
 * ends the vCPU is reported once and the loop ends.
 */
import { parentPort, workerData } from 'node:worker_threads';
import {
  KVM_EXIT,
  KVM_EXIT_IO_OUT,
  KVM_RUN,
  KVM_RUN_HEADER_COPY,
  KVM_RUN_OFFSET,
  KVM_SYSTEM_EVENT,
} from '../kvm/constants.js';
import * as libc from '../kvm/libc.js';
import { VcpuFd } from '../kvm/kvm.js';
import { readSample, type VcpuSample } from './sample.js';
import { ACCESS_KIND, CONTROL, Mailbox, SLOT } from './mailbox.js';
import type { VcpuMessage, VcpuStop, VcpuWorkerData } from './exit.js';

const data = workerData as VcpuWorkerData;
const mailbox = new Mailbox(data.mailbox);
/** Borrowed for samples: the main thread owns this vCPU's fd and mapping, and closes them. */
const vcpu = new VcpuFd(data.id, data.fd, data.runAddress, data.runSize);
const header = new Uint8Array(KVM_RUN_HEADER_COPY);
const view = new DataView(header.buffer);
const run = data.runAddress;
const immediateExitAddress = run + BigInt(KVM_RUN_OFFSET.immediateExit);
const ZERO = Uint8Array.of(0);

function post(message: VcpuMessage): void {
  parentPort?.postMessage(message);
}

/** Blocks while the main thread asks this vCPU to pause; returns false when asked to stop. */
function honourControl(): boolean {
  for (;;) {
    // Read the resume counter before the control slot: a resume that lands in
    // between then changes the counter and the wait returns at once.
    const resume = Atomics.load(mailbox.slots, SLOT.resume);
    const control = Atomics.load(mailbox.slots, SLOT.control);
    if (control === CONTROL.run) return true;
    if (control === CONTROL.stop) return false;
    // Outside KVM_RUN now, and staying out until told to run.
    Atomics.add(mailbox.slots, SLOT.pauses, 1);
    Atomics.notify(mailbox.slots, SLOT.pauses);
    answerSampleRequest();
    Atomics.wait(mailbox.slots, SLOT.resume, resume);
  }
}

let samplesAnswered = 0;

/** While paused: a sample the main thread asked for is read here, on the vCPU's own thread. */
function answerSampleRequest(): void {
  const seq = Atomics.load(mailbox.slots, SLOT.sampleRequest);
  if (seq === samplesAnswered) return;
  samplesAnswered = seq;
  let sample: VcpuSample | null;
  try {
    sample = readSample(vcpu, Atomics.load(mailbox.slots, SLOT.sampleDetail) === 1);
  } catch {
    sample = null;
  }
  post({ type: 'sample', seq, sample });
}

function handleIo(): void {
  const port = view.getUint16(KVM_RUN_OFFSET.ioPort, true);
  const size = view.getUint8(KVM_RUN_OFFSET.ioSize);
  const count = view.getUint32(KVM_RUN_OFFSET.ioCount, true);
  const isWrite = view.getUint8(KVM_RUN_OFFSET.ioDirection) === KVM_EXIT_IO_OUT;
  const dataOffset = Number(view.getBigUint64(KVM_RUN_OFFSET.ioDataOffset, true));
  const bytes = mailbox.dataView(size);
  // String I/O (rep outsb/insb) arrives as `count` items back to back.
  for (let i = 0; i < count; i++) {
    const at = run + BigInt(dataOffset + i * size);
    if (isWrite) libc.memcpy(bytes, at, size);
    mailbox.call(ACCESS_KIND.pio, isWrite, port, size);
    if (!isWrite) libc.memcpy(at, bytes, size);
  }
}

function handleMmio(): void {
  const address = Number(view.getBigUint64(KVM_RUN_OFFSET.mmioPhysAddr, true));
  const size = Math.min(view.getUint32(KVM_RUN_OFFSET.mmioLen, true), 8);
  const isWrite = view.getUint8(KVM_RUN_OFFSET.mmioIsWrite) !== 0;
  const bytes = mailbox.dataView(size);
  if (isWrite) bytes.set(header.subarray(KVM_RUN_OFFSET.mmioData, KVM_RUN_OFFSET.mmioData + size));
  mailbox.call(ACCESS_KIND.mmio, isWrite, address, size);
  if (!isWrite) libc.memcpy(run + BigInt(KVM_RUN_OFFSET.mmioData), bytes, size);
}

function loop(): VcpuStop {
  for (;;) {
    if (!honourControl()) return { reason: 'stopped' };
    Atomics.add(mailbox.slots, SLOT.runs, 1);
    if (libc.ioctlInt(data.fd, KVM_RUN, 0) < 0) {
      const errno = libc.errno();
      if (errno === libc.EINTR || errno === libc.EAGAIN) {
        // Kicked (or immediate_exit was set): clear the flag and look at the control slot.
        libc.memcpy(immediateExitAddress, ZERO, 1);
        continue;
      }
      return { reason: 'error', detail: `KVM_RUN failed: ${libc.strerror(errno)} (errno ${errno})` };
    }
    libc.memcpy(header, run, KVM_RUN_HEADER_COPY);
    const reason = view.getUint32(KVM_RUN_OFFSET.exitReason, true);
    switch (reason) {
      case KVM_EXIT.IO:
        handleIo();
        break;
      case KVM_EXIT.MMIO:
        handleMmio();
        break;
      case KVM_EXIT.INTR:
        break;
      case KVM_EXIT.HLT:
        return { reason: 'halted' };
      case KVM_EXIT.SHUTDOWN:
        return { reason: 'triple-fault' };
      case KVM_EXIT.SYSTEM_EVENT: {
        const type = view.getUint32(KVM_RUN_OFFSET.systemEventType, true);
        if (type === KVM_SYSTEM_EVENT.SHUTDOWN) return { reason: 'shutdown' };
        if (type === KVM_SYSTEM_EVENT.RESET) return { reason: 'reset' };
        if (type === KVM_SYSTEM_EVENT.CRASH) return { reason: 'crash' };
        return { reason: 'error', detail: `unknown KVM system event ${type}` };
      }
      case KVM_EXIT.FAIL_ENTRY:
        return {
          reason: 'error',
          detail: `KVM could not enter the guest (hardware reason 0x${view.getBigUint64(KVM_RUN_OFFSET.failEntryReason, true).toString(16)})`,
        };
      case KVM_EXIT.INTERNAL_ERROR:
        return {
          reason: 'error',
          detail: `KVM internal error (suberror ${view.getUint32(KVM_RUN_OFFSET.internalSuberror, true)}): this KVM cannot run the guest`,
        };
      default:
        return { reason: 'error', detail: `unexpected KVM exit reason ${reason}` };
    }
  }
}

post({ type: 'ready', thread: BigInt(libc.pthreadSelf()) });
post({ type: 'stop', stop: loop() });
