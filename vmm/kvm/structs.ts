/**
 * Encoders and decoders for the KVM ioctl argument structs (x86-64 layout).
 * Pure functions over byte arrays, so they are unit-tested without KVM.
 */
import { SIZEOF } from './constants.js';

export const REG_NAMES = [
  'rax',
  'rbx',
  'rcx',
  'rdx',
  'rsi',
  'rdi',
  'rsp',
  'rbp',
  'r8',
  'r9',
  'r10',
  'r11',
  'r12',
  'r13',
  'r14',
  'r15',
  'rip',
  'rflags',
] as const;
export type Regs = Record<(typeof REG_NAMES)[number], bigint>;

export interface Segment {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}

export interface DescriptorTable {
  base: bigint;
  limit: number;
}

const SEGMENT_NAMES = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;
const CONTROL_NAMES = ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apicBase'] as const;

export type Sregs = Record<(typeof SEGMENT_NAMES)[number], Segment> &
  Record<'gdt' | 'idt', DescriptorTable> &
  Record<(typeof CONTROL_NAMES)[number], bigint> & { interruptBitmap: [bigint, bigint, bigint, bigint] };

/** One struct kvm_cpuid_entry2. */
export interface CpuidEntry {
  /** The leaf (EAX input). */
  readonly function: number;
  /** The subleaf (ECX input); meaningful when flags has SIGNIFICANT_INDEX. */
  readonly index: number;
  readonly flags: number;
  readonly eax: number;
  readonly ebx: number;
  readonly ecx: number;
  readonly edx: number;
}

/** One struct kvm_msr_entry. */
export interface MsrEntry {
  readonly index: number;
  readonly value: bigint;
}

/** The parts of `struct kvm_fpu` the VMM sets at boot; the rest is zero. */
export interface FpuState {
  fcw: number;
  mxcsr: number;
}

const SEGMENT_SIZE = 24;
const DTABLE_SIZE = 16;
const FPU_FCW_OFFSET = 128;
const FPU_MXCSR_OFFSET = 408;

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function encodeRegs(regs: Regs): Uint8Array {
  const bytes = new Uint8Array(SIZEOF.regs);
  const v = view(bytes);
  REG_NAMES.forEach((name, i) => v.setBigUint64(i * 8, BigInt.asUintN(64, regs[name]), true));
  return bytes;
}

export function decodeRegs(bytes: Uint8Array): Regs {
  const v = view(bytes);
  const regs = {} as Regs;
  REG_NAMES.forEach((name, i) => (regs[name] = v.getBigUint64(i * 8, true)));
  return regs;
}

function encodeSegment(v: DataView, at: number, s: Segment): void {
  v.setBigUint64(at, s.base, true);
  v.setUint32(at + 8, s.limit >>> 0, true);
  v.setUint16(at + 12, s.selector, true);
  [s.type, s.present, s.dpl, s.db, s.s, s.l, s.g, s.avl, s.unusable].forEach((b, i) => v.setUint8(at + 14 + i, b));
}

function decodeSegment(v: DataView, at: number): Segment {
  const b = (i: number) => v.getUint8(at + 14 + i);
  return {
    base: v.getBigUint64(at, true),
    limit: v.getUint32(at + 8, true),
    selector: v.getUint16(at + 12, true),
    type: b(0),
    present: b(1),
    dpl: b(2),
    db: b(3),
    s: b(4),
    l: b(5),
    g: b(6),
    avl: b(7),
    unusable: b(8),
  };
}

const SREGS_DTABLES_AT = SEGMENT_NAMES.length * SEGMENT_SIZE;
const SREGS_CONTROL_AT = SREGS_DTABLES_AT + 2 * DTABLE_SIZE;
const SREGS_BITMAP_AT = SREGS_CONTROL_AT + CONTROL_NAMES.length * 8;

export function encodeSregs(sregs: Sregs): Uint8Array {
  const bytes = new Uint8Array(SIZEOF.sregs);
  const v = view(bytes);
  SEGMENT_NAMES.forEach((name, i) => encodeSegment(v, i * SEGMENT_SIZE, sregs[name]));
  (['gdt', 'idt'] as const).forEach((name, i) => {
    v.setBigUint64(SREGS_DTABLES_AT + i * DTABLE_SIZE, sregs[name].base, true);
    v.setUint16(SREGS_DTABLES_AT + i * DTABLE_SIZE + 8, sregs[name].limit, true);
  });
  CONTROL_NAMES.forEach((name, i) => v.setBigUint64(SREGS_CONTROL_AT + i * 8, sregs[name], true));
  sregs.interruptBitmap.forEach((word, i) => v.setBigUint64(SREGS_BITMAP_AT + i * 8, word, true));
  return bytes;
}

export function decodeSregs(bytes: Uint8Array): Sregs {
  const v = view(bytes);
  const out: Record<string, unknown> = {};
  SEGMENT_NAMES.forEach((name, i) => (out[name] = decodeSegment(v, i * SEGMENT_SIZE)));
  (['gdt', 'idt'] as const).forEach((name, i) => {
    out[name] = {
      base: v.getBigUint64(SREGS_DTABLES_AT + i * DTABLE_SIZE, true),
      limit: v.getUint16(SREGS_DTABLES_AT + i * DTABLE_SIZE + 8, true),
    };
  });
  CONTROL_NAMES.forEach((name, i) => (out[name] = v.getBigUint64(SREGS_CONTROL_AT + i * 8, true)));
  out['interruptBitmap'] = [0, 1, 2, 3].map((i) => v.getBigUint64(SREGS_BITMAP_AT + i * 8, true));
  return out as Sregs;
}

export function encodeFpu(fpu: FpuState): Uint8Array {
  const bytes = new Uint8Array(SIZEOF.fpu);
  const v = view(bytes);
  v.setUint16(FPU_FCW_OFFSET, fpu.fcw, true);
  v.setUint32(FPU_MXCSR_OFFSET, fpu.mxcsr, true);
  return bytes;
}

export function encodeMsrs(entries: readonly MsrEntry[]): Uint8Array {
  const bytes = new Uint8Array(SIZEOF.msrsHeader + entries.length * SIZEOF.msrEntry);
  const v = view(bytes);
  v.setUint32(0, entries.length, true);
  entries.forEach((e, i) => {
    const at = SIZEOF.msrsHeader + i * SIZEOF.msrEntry;
    v.setUint32(at, e.index, true);
    v.setBigUint64(at + 8, e.value, true);
  });
  return bytes;
}

/** A kvm_cpuid2 with room for `capacity` entries (for KVM_GET_SUPPORTED_CPUID). */
export function cpuidBuffer(capacity: number): Uint8Array {
  const bytes = new Uint8Array(SIZEOF.cpuid2Header + capacity * SIZEOF.cpuidEntry2);
  view(bytes).setUint32(0, capacity, true);
  return bytes;
}

export function encodeCpuid(entries: readonly CpuidEntry[]): Uint8Array {
  const bytes = cpuidBuffer(entries.length);
  const v = view(bytes);
  entries.forEach((e, i) => {
    const at = SIZEOF.cpuid2Header + i * SIZEOF.cpuidEntry2;
    [e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx].forEach((x, j) =>
      v.setUint32(at + j * 4, x >>> 0, true),
    );
  });
  return bytes;
}

export function decodeCpuid(bytes: Uint8Array): CpuidEntry[] {
  const v = view(bytes);
  const count = v.getUint32(0, true);
  const entries: CpuidEntry[] = [];
  for (let i = 0; i < count; i++) {
    const at = SIZEOF.cpuid2Header + i * SIZEOF.cpuidEntry2;
    const u = (j: number) => v.getUint32(at + j * 4, true);
    entries.push({ function: u(0), index: u(1), flags: u(2), eax: u(3), ebx: u(4), ecx: u(5), edx: u(6) });
  }
  return entries;
}

export function encodeUserMemoryRegion(
  slot: number,
  guestPhysAddr: number,
  size: number,
  hostAddr: bigint,
): Uint8Array {
  const bytes = new Uint8Array(SIZEOF.userspaceMemoryRegion);
  const v = view(bytes);
  v.setUint32(0, slot, true);
  v.setUint32(4, 0, true);
  v.setBigUint64(8, BigInt(guestPhysAddr), true);
  v.setBigUint64(16, BigInt(size), true);
  v.setBigUint64(24, hostAddr, true);
  return bytes;
}

export function encodeIrqLevel(irq: number, level: boolean): Uint8Array {
  const bytes = new Uint8Array(SIZEOF.irqLevel);
  const v = view(bytes);
  v.setUint32(0, irq, true);
  v.setUint32(4, level ? 1 : 0, true);
  return bytes;
}

export function encodePitConfig(flags: number): Uint8Array {
  const bytes = new Uint8Array(SIZEOF.pitConfig);
  view(bytes).setUint32(0, flags, true);
  return bytes;
}

export function encodeIrqfd(fd: number, gsi: number, flags = 0): Uint8Array {
  const bytes = new Uint8Array(SIZEOF.irqfd);
  const v = view(bytes);
  v.setUint32(0, fd, true);
  v.setUint32(4, gsi, true);
  v.setUint32(8, flags, true);
  return bytes;
}

/** KVM_IOEVENTFD flags */
export const KVM_IOEVENTFD_FLAG_DATAMATCH = 1 << 0;
export const KVM_IOEVENTFD_FLAG_PIO = 1 << 1;

export function encodeIoeventfd(
  address: number,
  length: number,
  fd: number,
  flags: number,
  datamatch = 0n,
): Uint8Array {
  const bytes = new Uint8Array(SIZEOF.ioeventfd);
  const v = view(bytes);
  v.setBigUint64(0, datamatch, true);
  v.setBigUint64(8, BigInt(address), true);
  v.setUint32(16, length, true);
  v.setInt32(20, fd, true);
  v.setUint32(24, flags, true);
  return bytes;
}
