/**
 * The main thread's handle on one vCPU worker: starts it, answers its port
 * and MMIO accesses with the VM's buses, pauses, resumes and stops it (a
 * running vCPU is kicked out of the guest with immediate_exit plus a signal).
 */
import { Worker } from 'node:worker_threads';
import { KVM_RUN_OFFSET } from '../kvm/constants.js';
import type { VcpuLook, VcpuSample } from './sample.js';
import * as libc from '../kvm/libc.js';
import type { VcpuFd } from '../kvm/kvm.js';
import type { Bus } from '../devices/bus.js';
import { ACCESS_KIND, CONTROL, Mailbox, SLOT } from './mailbox.js';
import type { VcpuMessage, VcpuStop, VcpuWorkerData } from './exit.js';

/**
 * The signal that kicks a vCPU thread out of KVM_RUN. The process installs a
 * no-op handler for it (through Node, so libuv's async-signal-safe handler
 * runs), so delivery only interrupts the ioctl with EINTR.
 */
export const KICK_SIGNAL = 'SIGUSR2';
const KICK_SIGNAL_NUMBER = 12;
let kickHandlerInstalled = false;

function installKickHandler(): void {
  if (kickHandlerInstalled) return;
  kickHandlerInstalled = true;
  process.on(KICK_SIGNAL, () => {});
}

const ONE = Uint8Array.of(1);
const WORKER_URL = new URL('./vcpu-worker.js', import.meta.url);

export interface VcpuBuses {
  readonly pio: Bus;
  readonly mmio: Bus;
}

export class VcpuThread {
  private readonly mailbox = Mailbox.create();
  private readonly worker: Worker;
  private thread: bigint | null = null;
  private serving = true;
  private samplesAsked = 0;
  private sampleWaiter: { seq: number; resolve: (sample: VcpuSample | null) => void } | null = null;
  readonly stopped: Promise<VcpuStop>;
  /** Port/MMIO accesses answered (for statistics). */
  exits = 0;
  /** Mailbox counters, for diagnostics: a request ahead of the response is waiting for the main thread. */
  get mailboxState(): { request: number; response: number; runs: number } {
    const s = this.mailbox.slots;
    return {
      request: Atomics.load(s, SLOT.request),
      response: Atomics.load(s, SLOT.response),
      runs: Atomics.load(s, SLOT.runs),
    };
  }

  constructor(
    private readonly vcpu: VcpuFd,
    private readonly buses: VcpuBuses,
    /** The instruction bytes at a guest-physical address, for samples; null where there is no RAM. */
    private readonly codeAt: (gpa: bigint) => Uint8Array | null = () => null,
  ) {
    installKickHandler();
    const workerData: VcpuWorkerData = {
      id: vcpu.id,
      fd: vcpu.fd,
      runAddress: vcpu.runAddress,
      runSize: vcpu.runSize,
      mailbox: this.mailbox.buffer,
    };
    this.worker = new Worker(WORKER_URL, { workerData, name: `vcpu${vcpu.id}` });
    this.stopped = new Promise<VcpuStop>((resolve) => {
      this.worker.on('message', (message: VcpuMessage) => {
        if (message.type === 'ready') this.thread = message.thread;
        else if (message.type === 'sample') {
          if (this.sampleWaiter?.seq === message.seq) this.sampleWaiter.resolve(message.sample);
        } else resolve(message.stop);
      });
      this.worker.on('error', (error) => resolve({ reason: 'error', detail: `vCPU thread failed: ${error.message}` }));
      this.worker.on('exit', () => resolve({ reason: 'error', detail: 'vCPU thread ended without a report' }));
    });
    void this.stopped.then(() => (this.serving = false));
    void this.serve();
  }

  /** Answers the worker's accesses until it stops. */
  private async serve(): Promise<void> {
    const slots = this.mailbox.slots;
    let handled = 0;
    while (this.serving) {
      const wait = Atomics.waitAsync(slots, SLOT.request, handled);
      if (wait.async) {
        const result = await Promise.race([wait.value, this.stopped.then(() => 'stopped' as const)]);
        if (result === 'stopped') return;
      }
      const id = Atomics.load(slots, SLOT.request);
      if (id === handled) continue;
      const access = this.mailbox.pending();
      const bus = access.kind === ACCESS_KIND.pio ? this.buses.pio : this.buses.mmio;
      try {
        if (access.isWrite) bus.write(access.address, access.data);
        else bus.read(access.address, access.data);
      } catch (error) {
        // A device bug must not wedge the vCPU: log it and answer with all-ones.
        process.stderr.write(`vmm: device error at 0x${access.address.toString(16)}: ${(error as Error).message}\n`);
        if (!access.isWrite) access.data.fill(0xff);
      }
      handled = id;
      this.exits++;
      this.mailbox.answer(id);
    }
  }

  private setControl(control: number): void {
    Atomics.store(this.mailbox.slots, SLOT.control, control);
    // If the vCPU is in the guest, make it leave: immediate_exit covers the
    // window before it enters KVM_RUN, the signal the time inside.
    libc.memcpy(this.vcpu.runAddress + BigInt(KVM_RUN_OFFSET.immediateExit), ONE, 1);
    if (this.thread !== null) libc.pthreadKill(this.thread, KICK_SIGNAL_NUMBER);
    Atomics.add(this.mailbox.slots, SLOT.resume, 1);
    Atomics.notify(this.mailbox.slots, SLOT.resume);
  }

  pause(): void {
    this.setControl(CONTROL.pause);
  }

  resume(): void {
    Atomics.store(this.mailbox.slots, SLOT.control, CONTROL.run);
    this.wake();
  }

  private wake(): void {
    Atomics.add(this.mailbox.slots, SLOT.resume, 1);
    Atomics.notify(this.mailbox.slots, SLOT.resume);
  }

  /**
   * Kicks the vCPU out of the guest, has its thread read where it was (see
   * sample.ts), and lets it run on. `detail` also reads its interrupt state
   * and code: only for a vCPU that looks stuck.
   * `did-not-leave`: still in KVM_RUN `timeoutMs` after the kick.
   * `not-running`: paused, stopping or ended (then it is not this call's to resume).
   */
  async sample(timeoutMs: number, detail = false): Promise<VcpuLook> {
    const slots = this.mailbox.slots;
    if (!this.serving || Atomics.load(slots, SLOT.control) !== CONTROL.run) return 'not-running';
    const deadline = performance.now() + timeoutMs;
    const pauses = Atomics.load(slots, SLOT.pauses);
    this.pause();
    const wait = Atomics.waitAsync(slots, SLOT.pauses, pauses, timeoutMs);
    if (wait.async) await wait.value;
    let look: VcpuLook = 'did-not-leave';
    if (!this.serving) look = 'not-running';
    else if (Atomics.load(slots, SLOT.pauses) !== pauses) {
      const seq = ++this.samplesAsked;
      const answer = new Promise<VcpuSample | null>((resolve) => (this.sampleWaiter = { seq, resolve }));
      Atomics.store(slots, SLOT.sampleDetail, detail ? 1 : 0);
      Atomics.store(slots, SLOT.sampleRequest, seq);
      this.wake();
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<null>((resolve) => {
        timer = setTimeout(() => resolve(null), Math.max(0, deadline - performance.now()));
      });
      const sample = await Promise.race([answer, late, this.stopped.then(() => null)]);
      clearTimeout(timer);
      this.sampleWaiter = null;
      const ripPhysical = sample?.detail?.ripPhysical;
      if (sample?.detail && ripPhysical !== undefined && ripPhysical !== null) {
        sample.detail.code = this.codeAt(ripPhysical);
      }
      look = sample ?? 'not-running';
    }
    // Undo only this pause: a stop asked for meanwhile stands.
    if (Atomics.compareExchange(slots, SLOT.control, CONTROL.pause, CONTROL.run) === CONTROL.pause) this.wake();
    return look;
  }

  /** Stops the vCPU and waits for its thread to end. */
  async stop(): Promise<VcpuStop> {
    this.setControl(CONTROL.stop);
    const stop = await this.stopped;
    await this.worker.terminate();
    return stop;
  }
}
