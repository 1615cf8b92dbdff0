/**
 * Stall diagnostics for a running sandbox, said in lines on stderr (the app
 * keeps the tail) so a hung guest can be told from a hung VMM:
 *
 * - a vCPU whose port or MMIO access stays unanswered is stuck outside the
 *   guest, waiting on the main thread;
 * - display requests the device leaves untaken mean a queue notification
 *   went unseen;
 * - input events the guest does not take (it posts no buffers) mean its
 *   input driver is stuck, and a click or key is not lost in our device;
 * - a vCPU that has not come out of the guest for a long while, and is not
 *   idle in HLT, is looked at a few times: one found at the same instruction
 *   each time is said, with whether it can take the interrupts its APIC
 *   holds and the instruction's bytes. One that does not even leave the
 *   guest when kicked is stuck in the host's KVM.
 *
 * None of these is expected; each is said at most once per look.
 */
import type { VcpuLook, VcpuSample } from '../vcpu/sample.js';

/** What the watch needs from the VM (the Vm class has all of it). */
export interface StallWatchTarget {
  readonly vcpuMailboxes: readonly { request: number; response: number; runs: number }[];
  queueProgress(device: string, index: number): { pending: number; taken: number } | undefined;
  sampleVcpu(id: number, timeoutMs: number, detail?: boolean): Promise<VcpuLook>;
}

export interface StallWatchInput {
  readonly name: string;
  readonly stats: () => { readonly pendingEvents: number; readonly deliveredEvents: number };
}

export interface StallWatchOptions {
  /** The device and queues whose untaken requests are reported. */
  readonly queues: { readonly device: string; readonly indexes: readonly number[] };
  /** Input devices whose events waiting host-side are reported when the guest stops taking them. */
  readonly inputs?: readonly StallWatchInput[];
  /** Says one line (without its newline). */
  readonly say: (line: string) => void;
}

/** How often the watch looks. */
export const STALL_WATCH_MS = 5_000;
/** A vCPU with no exit to the VMM for this long is looked at (a busy one can go 30 s without: each look kicks it out). */
export const QUIET_VCPU_MS = 60_000;
/** How long a kicked vCPU may take to leave the guest. */
export const KICK_TIMEOUT_MS = 2_000;
/** Looks per quiet vCPU, this far apart: one place each time means a tight loop. */
export const SAMPLES_PER_LOOK = 3;
export const SAMPLE_GAP_MS = 100;

const hex = (n: bigint) => `0x${n.toString(16)}`;

const vectors = (list: readonly number[]) => (list.length ? list.map((v) => `0x${v.toString(16)}`).join(' ') : '-');

/**
 * One sample in words, e.g. `0xffffffff8102a3b4 (kernel, interrupts off; pending 0xec, in service -;
 * code f3 90 eb fc …)`: where it runs, whether it can take the interrupts its APIC holds, and the
 * instruction there.
 */
export function describeSample(sample: VcpuSample): string {
  const where = sample.cpl === 0 ? 'kernel' : 'user';
  const detail = sample.detail;
  const interrupts = `interrupts ${sample.interruptsOn ? 'on' : 'off'}${detail?.interruptShadow ? ', in an interrupt shadow' : ''}`;
  if (!detail) return `${hex(sample.rip)} (${where}, ${interrupts})`;
  const apic = `pending ${vectors(detail.pendingVectors)}, in service ${vectors(detail.inServiceVectors)}`;
  const code = detail.code ? Array.from(detail.code, (b) => b.toString(16).padStart(2, '0')).join(' ') : 'unmapped';
  return `${hex(sample.rip)} (${where}, ${interrupts}; ${apic}; code ${code})`;
}

/** Work waiting on the other side (`pending`), and a count of what it has taken so far. */
interface Progress {
  readonly pending: number;
  readonly taken: number;
}

/** Work waited at both looks and none was taken in between. */
function leftUntaken(before: Progress | undefined, now: Progress | undefined): now is Progress {
  return !!before && !!now && before.pending > 0 && now.pending > 0 && now.taken === before.taken;
}

export class StallWatch {
  private lastMailboxes: readonly { request: number; response: number; runs: number }[];
  private lastQueues: (Progress | undefined)[];
  private lastInputs: Progress[];
  /** Per vCPU: its KVM_RUN count and when that count last moved. */
  private readonly quiet: { runs: number; since: number }[];
  private looking = false;

  constructor(
    private readonly target: StallWatchTarget,
    private readonly options: StallWatchOptions,
    now: number,
  ) {
    this.lastMailboxes = target.vcpuMailboxes;
    this.lastQueues = this.queues();
    this.lastInputs = this.inputs();
    this.quiet = this.lastMailboxes.map((m) => ({ runs: m.runs, since: now }));
  }

  /** One look; `now` in milliseconds. Resolves when any vCPU samples it took are in. */
  async check(now: number): Promise<void> {
    const { say } = this.options;
    const mailboxes = this.target.vcpuMailboxes;
    mailboxes.forEach((m, id) => {
      if (m.request !== m.response && this.lastMailboxes[id]?.request === m.request) {
        say(
          `sandbox: vCPU ${id} has waited over ${STALL_WATCH_MS / 1000} s for its access ${m.request} to be answered`,
        );
      }
    });
    this.lastMailboxes = mailboxes;

    const queues = this.queues();
    queues.forEach((q, i) => {
      if (leftUntaken(this.lastQueues[i], q)) {
        const { device, indexes } = this.options.queues;
        say(
          `sandbox: ${device} queue ${indexes[i]}: ${q.pending} requests not taken for over ${STALL_WATCH_MS / 1000} s`,
        );
      }
    });
    this.lastQueues = queues;

    const inputs = this.inputs();
    inputs.forEach((input, i) => {
      if (leftUntaken(this.lastInputs[i], input)) {
        say(
          `sandbox: ${this.options.inputs![i]!.name}: ${input.pending} input events not taken by the guest for over ${STALL_WATCH_MS / 1000} s`,
        );
      }
    });
    this.lastInputs = inputs;

    if (this.looking) return;
    this.looking = true;
    try {
      await this.lookAtQuietVcpus(now, mailboxes);
    } finally {
      this.looking = false;
    }
  }

  private async lookAtQuietVcpus(now: number, mailboxes: readonly { runs: number }[]): Promise<void> {
    for (const [id, m] of mailboxes.entries()) {
      const quiet = (this.quiet[id] ??= { runs: m.runs, since: now });
      if (m.runs !== quiet.runs) {
        this.quiet[id] = { runs: m.runs, since: now };
        continue;
      }
      if (now - quiet.since < QUIET_VCPU_MS) continue;
      const looks: VcpuLook[] = [];
      for (let i = 0; i < SAMPLES_PER_LOOK; i++) {
        if (i > 0) await new Promise((resolve) => setTimeout(resolve, SAMPLE_GAP_MS));
        looks.push(await this.target.sampleVcpu(id, KICK_TIMEOUT_MS));
      }
      // The looks themselves took it out of the guest: its quiet time starts afresh.
      this.quiet[id] = { runs: this.target.vcpuMailboxes[id]?.runs ?? m.runs, since: now };
      if (looks.includes('not-running')) continue;
      const seconds = Math.round((now - quiet.since) / 1000);
      if (looks.includes('did-not-leave')) {
        this.options.say(`sandbox: vCPU ${id} did not leave the guest within ${KICK_TIMEOUT_MS / 1000} s of a kick`);
        continue;
      }
      // A busy vCPU is found at different places; one found at the same
      // instruction every time is not moving on (it spins on it, or re-runs it).
      const samples = looks as VcpuSample[];
      if (samples.some((s) => s.idle || s.rip !== samples[0]!.rip)) continue;
      // Stuck: one closer look (its interrupt state and code), then say it.
      const closer = await this.target.sampleVcpu(id, KICK_TIMEOUT_MS, true);
      const shown = typeof closer === 'object' && closer.rip === samples[0]!.rip ? closer : samples[0]!;
      this.options.say(
        `sandbox: vCPU ${id} has not come out of the guest for ${seconds} s and was at the same instruction ` +
          `each of ${samples.length} looks ${SAMPLE_GAP_MS} ms apart: ${describeSample(shown)}`,
      );
    }
  }

  /** Each input device's events waiting host-side (`pending`) and delivered so far (`taken`). */
  private inputs(): Progress[] {
    return (this.options.inputs ?? []).map((input) => {
      const { pendingEvents, deliveredEvents } = input.stats();
      return { pending: pendingEvents, taken: deliveredEvents };
    });
  }

  private queues(): (Progress | undefined)[] {
    const { device, indexes } = this.options.queues;
    return indexes.map((q) => this.target.queueProgress(device, q));
  }
}
