/**
 * The boot GDT and the segment registers derived from it.
 *
 * Linux's 64-bit boot protocol wants a GDT with flat 4 GiB descriptors at
 * __BOOT_CS (0x10, execute/read) and __BOOT_DS (0x18, read/write), CS loaded
 * with __BOOT_CS and DS/ES/SS with __BOOT_DS. KVM never reads the GDT when we
 * set segment registers, so the same descriptors are also decoded into the
 * hidden parts of the registers (kvm_segment) here.
 */

import type { GuestMemory } from '../../memory/guest-memory.js';
import { GDT_ADDRESS, GDT_ENTRY_COUNT, IDT_ADDRESS } from './layout.js';

/**
 * Descriptor flags in the kernel's GDT_ENTRY() notation: bits 15–12 are
 * G, D/B, L, AVL; bits 7–0 the access byte P, DPL(2), S, type(4).
 *  0xa09b: 4 KiB granularity, long mode; present, DPL 0, code, execute/read, accessed.
 */
export const GDT_FLAGS_CODE64 = 0xa09b;
/** 0xc093: 4 KiB granularity, 32-bit; present, DPL 0, data, read/write, accessed. */
export const GDT_FLAGS_DATA = 0xc093;
/** 0x808b: 4 KiB granularity; present, DPL 0, system, busy 64-bit TSS (type 0xb). KVM needs a usable TR. */
export const GDT_FLAGS_TSS = 0x808b;

/** GDT index of the code segment: __BOOT_CS = 2 · 8. */
export const BOOT_CS_INDEX = 2;
/** GDT index of the data segment: __BOOT_DS = 3 · 8. */
export const BOOT_DS_INDEX = 3;
/** GDT index of the TSS (a 16-byte system descriptor: entries 4 and 5). */
export const BOOT_TSS_INDEX = 4;
export const BOOT_CS_SELECTOR = BOOT_CS_INDEX * 8; // 0x10
export const BOOT_DS_SELECTOR = BOOT_DS_INDEX * 8; // 0x18
export const BOOT_TSS_SELECTOR = BOOT_TSS_INDEX * 8; // 0x20

/** Largest segment limit field (20 bits). */
const LIMIT_MAX = 0xfffff;

/** Builds one 8-byte segment descriptor. */
export function gdtEntry(flags: number, base: number, limit: number): bigint {
  const f = BigInt(flags & 0xf0ff);
  const b = BigInt(base >>> 0);
  const l = BigInt(limit >>> 0);
  return (
    ((b & 0xff00_0000n) << 32n) | // base 31:24 → bits 63:56
    (f << 40n) | // flags → bits 55:52 and 47:40
    ((l & 0xf_0000n) << 32n) | // limit 19:16 → bits 51:48
    ((b & 0x00ff_ffffn) << 16n) | // base 23:0 → bits 39:16
    (l & 0xffffn) // limit 15:0
  );
}

/** The boot GDT, index = selector / 8. */
export const BOOT_GDT: readonly bigint[] = [
  0n, // 0: null descriptor (required)
  0n, // 1: unused, keeps __BOOT_CS at 0x10 as Linux's boot protocol names it
  gdtEntry(GDT_FLAGS_CODE64, 0, LIMIT_MAX), // 2: __BOOT_CS
  gdtEntry(GDT_FLAGS_DATA, 0, LIMIT_MAX), // 3: __BOOT_DS
  gdtEntry(GDT_FLAGS_TSS, 0, LIMIT_MAX), // 4: TSS, low half
  0n, // 5: TSS, high half (base 63:32 = 0)
];

/** Segment register contents as KVM's struct kvm_segment holds them (u8 flags as 0/1 numbers). */
export interface SegmentRegister {
  readonly base: number;
  /** Byte-granular limit (scaled when G is set: KVM's field is the expanded 32-bit limit). */
  readonly limit: number;
  readonly selector: number;
  readonly type: number;
  readonly present: number;
  readonly dpl: number;
  readonly db: number;
  readonly s: number;
  readonly l: number;
  readonly g: number;
  readonly avl: number;
  readonly unusable: number;
}

/** Base and limit of a descriptor table register (GDTR/IDTR, struct kvm_dtable). */
export interface DescriptorTable {
  readonly base: number;
  readonly limit: number;
}

function bit(entry: bigint, position: number): number {
  return Number((entry >> BigInt(position)) & 1n);
}

/** Decodes descriptor `entry`, found at GDT index `index`, into a segment register. */
export function segmentFromGdtEntry(entry: bigint, index: number): SegmentRegister {
  const base = Number(((entry >> 32n) & 0xff00_0000n) | ((entry >> 16n) & 0x00ff_ffffn));
  const rawLimit = Number(((entry >> 32n) & 0xf_0000n) | (entry & 0xffffn));
  const g = bit(entry, 55);
  const present = bit(entry, 47);
  return {
    base,
    limit: g ? rawLimit * 0x1000 + 0xfff : rawLimit,
    selector: index * 8,
    type: Number((entry >> 40n) & 0xfn),
    present,
    dpl: Number((entry >> 45n) & 3n),
    db: bit(entry, 54),
    s: bit(entry, 44),
    l: bit(entry, 53),
    g,
    avl: bit(entry, 52),
    unusable: present ? 0 : 1,
  };
}

/** The boot segment registers: CS = __BOOT_CS, DS/ES/FS/GS/SS = __BOOT_DS, TR = the TSS. */
export function bootSegments(): {
  cs: SegmentRegister;
  ds: SegmentRegister;
  es: SegmentRegister;
  fs: SegmentRegister;
  gs: SegmentRegister;
  ss: SegmentRegister;
  tr: SegmentRegister;
} {
  const code = segmentFromGdtEntry(BOOT_GDT[BOOT_CS_INDEX]!, BOOT_CS_INDEX);
  const data = segmentFromGdtEntry(BOOT_GDT[BOOT_DS_INDEX]!, BOOT_DS_INDEX);
  const tss = segmentFromGdtEntry(BOOT_GDT[BOOT_TSS_INDEX]!, BOOT_TSS_INDEX);
  return { cs: code, ds: data, es: data, fs: data, gs: data, ss: data, tr: tss };
}

/** GDTR value for the boot GDT. */
export const BOOT_GDTR: DescriptorTable = { base: GDT_ADDRESS, limit: GDT_ENTRY_COUNT * 8 - 1 };
/** IDTR value: one null gate. Interrupts are disabled at entry and Linux loads its IDT before enabling them. */
export const BOOT_IDTR: DescriptorTable = { base: IDT_ADDRESS, limit: 8 - 1 };

/** Writes the boot GDT and the (null) IDT into guest memory. */
export function writeGdtAndIdt(memory: GuestMemory): void {
  if (BOOT_GDT.length !== GDT_ENTRY_COUNT) throw new Error('GDT_ENTRY_COUNT does not match BOOT_GDT');
  BOOT_GDT.forEach((entry, i) => memory.writeU64(GDT_ADDRESS + i * 8, entry));
  memory.writeU64(IDT_ADDRESS, 0);
}
