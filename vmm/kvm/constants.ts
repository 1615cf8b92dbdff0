/**
 * KVM's userspace ABI (linux/kvm.h, x86-64), every number named once.
 * ioctl numbers are computed with the kernel's _IOC encoding from their
 * direction, number and argument size, so each line reads like the header.
 */

const KVMIO = 0xae;
const IOC_NONE = 0;
const IOC_WRITE = 1;
const IOC_READ = 2;

function ioc(direction: number, nr: number, size: number): number {
  // Unsigned: a read ioctl has bit 31 set.
  return ((direction << 30) | (size << 16) | (KVMIO << 8) | nr) >>> 0;
}
const io = (nr: number) => ioc(IOC_NONE, nr, 0);
const iow = (nr: number, size: number) => ioc(IOC_WRITE, nr, size);
const ior = (nr: number, size: number) => ioc(IOC_READ, nr, size);
const iowr = (nr: number, size: number) => ioc(IOC_READ | IOC_WRITE, nr, size);

/** Sizes of the structs passed to ioctls (bytes). */
export const SIZEOF = {
  userspaceMemoryRegion: 32,
  regs: 144,
  sregs: 312,
  fpu: 416,
  msrsHeader: 8,
  msrEntry: 16,
  cpuid2Header: 8,
  cpuidEntry2: 40,
  pitConfig: 64,
  irqLevel: 8,
  irqfd: 32,
  ioeventfd: 64,
  mpState: 4,
  translation: 24,
  vcpuEvents: 64,
  lapicState: 1024,
} as const;

export const KVM_API_VERSION = 12;

export const KVM_GET_API_VERSION = io(0x00);
export const KVM_CREATE_VM = io(0x01);
export const KVM_CHECK_EXTENSION = io(0x03);
export const KVM_GET_VCPU_MMAP_SIZE = io(0x04);
export const KVM_GET_SUPPORTED_CPUID = iowr(0x05, SIZEOF.cpuid2Header);
export const KVM_CREATE_VCPU = io(0x41);
export const KVM_SET_USER_MEMORY_REGION = iow(0x46, SIZEOF.userspaceMemoryRegion);
export const KVM_SET_TSS_ADDR = io(0x47);
export const KVM_SET_IDENTITY_MAP_ADDR = iow(0x48, 8);
export const KVM_CREATE_IRQCHIP = io(0x60);
export const KVM_IRQ_LINE = iow(0x61, SIZEOF.irqLevel);
export const KVM_IRQFD = iow(0x76, SIZEOF.irqfd);
export const KVM_CREATE_PIT2 = iow(0x77, SIZEOF.pitConfig);
export const KVM_IOEVENTFD = iow(0x79, SIZEOF.ioeventfd);
export const KVM_RUN = io(0x80);
export const KVM_GET_REGS = ior(0x81, SIZEOF.regs);
export const KVM_SET_REGS = iow(0x82, SIZEOF.regs);
export const KVM_GET_SREGS = ior(0x83, SIZEOF.sregs);
export const KVM_SET_SREGS = iow(0x84, SIZEOF.sregs);
export const KVM_SET_MSRS = iow(0x89, SIZEOF.msrsHeader);
export const KVM_GET_MP_STATE = ior(0x98, SIZEOF.mpState);
export const KVM_TRANSLATE = iowr(0x85, SIZEOF.translation);
export const KVM_GET_LAPIC = ior(0x8e, SIZEOF.lapicState);
export const KVM_GET_VCPU_EVENTS = ior(0x9f, SIZEOF.vcpuEvents);
export const KVM_GET_FPU = ior(0x8c, SIZEOF.fpu);
export const KVM_SET_FPU = iow(0x8d, SIZEOF.fpu);
export const KVM_SET_CPUID2 = iow(0x90, SIZEOF.cpuid2Header);

/** struct kvm_mp_state.mp_state: whether a vCPU runs, waits for an interrupt (HLT), or was never started. */
export const KVM_MP_STATE = {
  RUNNABLE: 0,
  UNINITIALIZED: 1,
  INIT_RECEIVED: 2,
  HALTED: 3,
  SIPI_RECEIVED: 4,
} as const;

/** struct kvm_translation: offsets of its fields. */
export const KVM_TRANSLATION_OFFSET = { linearAddress: 0, physicalAddress: 8, valid: 16 } as const;
/** struct kvm_vcpu_events: offset of interrupt.shadow (KVM_X86_SHADOW_INT_MOV_SS = 1, _STI = 2). */
export const KVM_VCPU_EVENTS_INTERRUPT_SHADOW_OFFSET = 11;
/** struct kvm_lapic_state: the local APIC's register page; ISR and IRR are 8 32-bit registers, 16 bytes apart. */
export const LAPIC_ISR_OFFSET = 0x100;
export const LAPIC_IRR_OFFSET = 0x200;
export const LAPIC_VECTOR_REGISTER_STRIDE = 0x10;

/** KVM_CHECK_EXTENSION capabilities the VMM relies on. */
export const KVM_CAP_IRQCHIP = 0;
export const KVM_CAP_USER_MEMORY = 3;
export const KVM_CAP_SET_TSS_ADDR = 4;
export const KVM_CAP_EXT_CPUID = 7;
export const KVM_CAP_NR_VCPUS = 9;
export const KVM_CAP_PIT2 = 33;
export const KVM_CAP_IOEVENTFD = 36;
export const KVM_CAP_IRQFD = 32;
export const KVM_CAP_MAX_VCPUS = 66;
export const KVM_CAP_IMMEDIATE_EXIT = 136;

/** KVM_CREATE_PIT2 flag: the PIT's speaker port (0x61) is emulated in the kernel as a dummy. */
export const KVM_PIT_SPEAKER_DUMMY = 1;

/** kvm_run.exit_reason */
export const KVM_EXIT = {
  UNKNOWN: 0,
  EXCEPTION: 1,
  IO: 2,
  HYPERCALL: 3,
  DEBUG: 4,
  HLT: 5,
  MMIO: 6,
  IRQ_WINDOW_OPEN: 7,
  SHUTDOWN: 8,
  FAIL_ENTRY: 9,
  INTR: 10,
  INTERNAL_ERROR: 17,
  SYSTEM_EVENT: 24,
} as const;

export const KVM_EXIT_IO_IN = 0;
export const KVM_EXIT_IO_OUT = 1;

/** kvm_run.system_event.type */
export const KVM_SYSTEM_EVENT = { SHUTDOWN: 1, RESET: 2, CRASH: 3 } as const;

/** Byte offsets inside the mmap'd `struct kvm_run` (x86-64). */
export const KVM_RUN_OFFSET = {
  immediateExit: 1,
  exitReason: 8,
  /** Start of the exit-specific union. */
  exit: 32,
  ioDirection: 32,
  ioSize: 33,
  ioPort: 34,
  ioCount: 36,
  ioDataOffset: 40,
  mmioPhysAddr: 32,
  mmioData: 40,
  mmioLen: 48,
  mmioIsWrite: 52,
  failEntryReason: 32,
  internalSuberror: 32,
  systemEventType: 32,
} as const;

/** How many bytes of kvm_run the vCPU loop copies out on each exit. */
export const KVM_RUN_HEADER_COPY = 64;
