/**
 * The KVM lab's known faults. Nested SVM on a software CPU (QEMU 7.2's TCG)
 * now and then breaks a run in ways our code plays no part in
 * (docs/benchmarks.md). The tests that boot the product guest retry a run
 * that hit one of these, and report each; any other failure fails the test.
 */

/** The lab's own (L1) kernel panicked. */
export const L1_PANIC = /Kernel panic - not syncing/;
/**
 * What the lab logs when QEMU ended a panicked L1 (test/lab/lab.ts). L1's
 * own panic message may be missing: its kernel tells pvpanic before it
 * flushes its last lines to the console (seen in a CI run).
 */
export const L1_PANICKED_LINE = "lab: L1's kernel panicked (QEMU ended it)";
/** What the lab logs when a hung L1 turns out to take no interrupts at all (test/lab/lab.ts; docs/benchmarks.md). */
export const L1_FROZE_LINE = 'lab: L1 froze';
export const L1_FROZE = new RegExp(`^${L1_FROZE_LINE}:`);
/**
 * The lab's kernel reported a crash of its own (seen: "BUG: TASK stack guard
 * page was hit" in L1's `node`, a recursion on a bad GS base) and may take
 * minutes to panic, or hang instead. Matches a line of L1's console (it
 * has timestamps); a guest's console, printed as the lab side closes its
 * sandboxes, has them too, so look before that.
 */
export const L1_CRASH = /^\[\s*\d+\.\d+\] (?:BUG: |Oops: |general protection fault|Kernel panic - not syncing).*$/m;
/** The guest's CPU reset with no message from the guest (the sandbox's error says which). */
export const GUEST_RESET = /triple fault|restarted itself/;
/** The guest kernel's watchdog: one of its CPUs stuck in the kernel for minutes. */
export const GUEST_LOCKUP = /watchdog: BUG: soft lockup/;
/**
 * The sandbox's stall watch (vmm/sandbox/stall-watch.ts): a vCPU found at one
 * instruction each look, with no exit to our VMM for a minute or more. Caught
 * with interrupts on while the guest kernel reported that CPU's timers had
 * stopped firing ("rcu: ... Possible timer handling issue on cpu=1"): a vCPU
 * that takes no exit reaches no code of ours, and its timer interrupts are
 * the host KVM's to deliver. The closer look settled it: the stuck guest RIP
 * (0xffffffffc035120c, unmapped in the guest, timer vector 0xec pending) is
 * L1's own `__svm_vcpu_run+0x9c` in kvm_amd, the instruction after L1's
 * VMRUN. The lab's emulated SVM put L1's RIP into the nested guest's state.
 */
// The whole line: its closer look (interrupt state, APIC vectors, code bytes) is the evidence.
export const STUCK_VCPU =
  /sandbox: vCPU \d+ has not come out of the guest for \d+ s and was at the same instruction[^\n]*/;
/**
 * The same fault seen from inside, before the stall watch's minute is up: the
 * guest kernel's RCU finds one CPU's timers have stopped firing while the
 * other CPU's still do.
 */
export const GUEST_TIMER_STALL = /rcu: .*Possible timer handling issue on cpu=\d+/;

/** What a failed run left behind, as far as the test has it. */
export interface RunEvidence {
  /** The sandbox's error (its VMM's exit), if it failed. */
  readonly sandboxError?: string;
  readonly guestConsole?: string;
  /** The tail of the sandbox process's stderr. */
  readonly vmmStderr?: string;
  /** Everything the lab printed (its L1 console included). */
  readonly labOutput?: string;
}

/** The known lab fault behind a failed run, in words; null when it is none of them. */
export function labFault(run: RunEvidence): string | null {
  /** The guest's kernel said it, on its own console or through the lab's. */
  const guestKernelSaid = (pattern: RegExp) =>
    pattern.test(run.guestConsole ?? '') || pattern.test(run.labOutput ?? '');
  const labOutput = run.labOutput ?? '';
  if (L1_PANIC.test(labOutput) || labOutput.includes(L1_PANICKED_LINE)) return "the lab's L1 kernel panicked";
  if (GUEST_RESET.test(run.sandboxError ?? '')) return `the sandbox failed: ${run.sandboxError}`;
  if (guestKernelSaid(GUEST_LOCKUP)) {
    return "the guest's kernel reported a CPU stuck (soft lockup)";
  }
  const stuck = STUCK_VCPU.exec(run.vmmStderr ?? '');
  if (stuck) return `a guest vCPU stuck at one instruction (${stuck[0]})`;
  if (guestKernelSaid(GUEST_TIMER_STALL)) {
    return "the guest's kernel reported a CPU whose timer stopped firing (RCU stall)";
  }
  return null;
}
