/**
 * A look at a vCPU for diagnostics (the stall watch): where it runs, and why it
 * may take no interrupts. The reads run on the vCPU's own thread while it is
 * paused, as QEMU's run_on_cpu does: every vCPU ioctl loads the vCPU onto the
 * calling thread's CPU, and the thread that runs a vCPU is the one that
 * should do that.
 */
import { KVM_MP_STATE } from '../kvm/constants.js';
import type { VcpuFd } from '../kvm/kvm.js';
import type { GuestMemory } from '../memory/guest-memory.js';

/** RFLAGS.IF: the vCPU takes interrupts. */
const RFLAGS_IF = 1n << 9n;
/** The privilege level is the low two bits of CS's selector. */
const SELECTOR_RPL_MASK = 3;

/** Where a vCPU was when it was briefly stopped for a look. */
export interface VcpuSample {
  rip: bigint;
  /** Privilege level: 0 is the guest kernel, 3 user space. */
  cpl: number;
  interruptsOn: boolean;
  /** Not running guest code: waiting in HLT for an interrupt (an idle CPU), or not started yet. */
  idle: boolean;
  /** Only when asked for (more reads, see VcpuThread.sample). */
  detail?: VcpuSampleDetail;
}

/** Why a vCPU takes no interrupts, and what it runs. */
export interface VcpuSampleDetail {
  /** Right after STI or MOV SS: interrupts are held off for one instruction. */
  interruptShadow: boolean;
  /** Interrupt vectors the local APIC has requested but not yet delivered, and those being serviced. */
  pendingVectors: number[];
  inServiceVectors: number[];
  /** The guest-physical address of `rip`, when it is mapped, and the instruction bytes there. */
  ripPhysical: bigint | null;
  code: Uint8Array | null;
}

/** Instruction bytes read at a sample's RIP (the longest x86 instruction). */
export const SAMPLE_CODE_BYTES = 15;

/** A look at a vCPU: where it was, or why there was nothing to see. */
export type VcpuLook = VcpuSample | 'did-not-leave' | 'not-running';

/** Reads a sample of a vCPU that is outside KVM_RUN (the code bytes are left to the caller, which has the RAM). */
export function readSample(vcpu: VcpuFd, detail: boolean): VcpuSample {
  const regs = vcpu.getRegs();
  const sample: VcpuSample = {
    rip: regs.rip,
    cpl: vcpu.getSregs().cs.selector & SELECTOR_RPL_MASK,
    interruptsOn: (regs.rflags & RFLAGS_IF) !== 0n,
    idle: vcpu.getMpState() !== KVM_MP_STATE.RUNNABLE,
  };
  if (detail) {
    const lapic = vcpu.lapicVectors();
    sample.detail = {
      interruptShadow: vcpu.inInterruptShadow(),
      pendingVectors: lapic.requested,
      inServiceVectors: lapic.inService,
      ripPhysical: vcpu.translate(regs.rip),
      code: null,
    };
  }
  return sample;
}

/**
 * The instruction bytes at guest-physical `gpa`, or null when they are not all
 * in RAM: the address comes from the guest's page tables, so it may point
 * anywhere (an MMIO window, past the end of RAM, beyond 2^53).
 */
export function codeAt(memory: GuestMemory, gpa: bigint): Uint8Array | null {
  if (gpa < 0n || gpa > BigInt(Number.MAX_SAFE_INTEGER)) return null;
  const at = Number(gpa);
  return memory.contains(at, SAMPLE_CODE_BYTES) ? memory.read(at, SAMPLE_CODE_BYTES) : null;
}
