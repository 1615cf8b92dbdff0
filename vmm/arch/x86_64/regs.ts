/**
 * Initial vCPU register state for Linux's 64-bit boot protocol, as plain
 * objects the KVM binding copies into kvm_regs, kvm_sregs and kvm_fpu.
 *
 * The boot CPU starts in long mode with paging on (the identity map from
 * page-tables.ts), flat segments from gdt.ts, interrupts disabled,
 * rsi = the zero page. Application processors are not set up here: KVM holds
 * them in wait-for-SIPI and Linux starts them itself.
 */

import type { DescriptorTable, SegmentRegister } from './gdt.js';
import { BOOT_GDTR, BOOT_IDTR, bootSegments } from './gdt.js';
import { BOOT_STACK_POINTER, PML4_ADDRESS, ZERO_PAGE_ADDRESS } from './layout.js';

/** CR0 bit 0: protected mode. */
export const CR0_PE = 1 << 0;
/** CR0 bit 4: extension type (always 1 on anything since the 486). */
export const CR0_ET = 1 << 4;
/** CR0 bit 31: paging. */
export const CR0_PG = 0x8000_0000;
/** CR4 bit 5: physical address extension (required for long mode). */
export const CR4_PAE = 1 << 5;
/** EFER bit 8: long mode enable. */
export const EFER_LME = 1 << 8;
/** EFER bit 10: long mode active (KVM wants it consistent with LME and CR0.PG). */
export const EFER_LMA = 1 << 10;
/** RFLAGS bit 1 is reserved and always 1; IF (bit 9) clear: interrupts disabled at entry. */
export const RFLAGS_RESERVED_1 = 0x2;

/** struct kvm_regs. Every value fits a number (all below 2^53). */
export interface KvmRegs {
  readonly rax: number;
  readonly rbx: number;
  readonly rcx: number;
  readonly rdx: number;
  readonly rsi: number;
  readonly rdi: number;
  readonly rsp: number;
  readonly rbp: number;
  readonly r8: number;
  readonly r9: number;
  readonly r10: number;
  readonly r11: number;
  readonly r12: number;
  readonly r13: number;
  readonly r14: number;
  readonly r15: number;
  readonly rip: number;
  readonly rflags: number;
}

/** General registers at the kernel's 64-bit entry `entry` (LoadedKernel.entry). */
export function bootRegs(entry: number): KvmRegs {
  return {
    rax: 0,
    rbx: 0,
    rcx: 0,
    rdx: 0,
    rsi: ZERO_PAGE_ADDRESS, // the boot protocol: rsi = &boot_params
    rdi: 0,
    rsp: BOOT_STACK_POINTER,
    rbp: BOOT_STACK_POINTER,
    r8: 0,
    r9: 0,
    r10: 0,
    r11: 0,
    r12: 0,
    r13: 0,
    r14: 0,
    r15: 0,
    rip: entry,
    rflags: RFLAGS_RESERVED_1,
  };
}

/**
 * The kvm_sregs fields to set. Fields not listed (ldt, cr2, cr8, apic_base,
 * interrupt_bitmap) keep what KVM_GET_SREGS returned for the fresh vCPU.
 */
export interface BootSregs {
  readonly cs: SegmentRegister;
  readonly ds: SegmentRegister;
  readonly es: SegmentRegister;
  readonly fs: SegmentRegister;
  readonly gs: SegmentRegister;
  readonly ss: SegmentRegister;
  readonly tr: SegmentRegister;
  readonly gdt: DescriptorTable;
  readonly idt: DescriptorTable;
  readonly cr0: number;
  readonly cr3: number;
  readonly cr4: number;
  readonly efer: number;
}

/** Special registers for long mode with the boot GDT and identity page tables. */
export function bootSregs(): BootSregs {
  return {
    ...bootSegments(),
    gdt: BOOT_GDTR,
    idt: BOOT_IDTR,
    cr0: (CR0_PE | CR0_ET | CR0_PG) >>> 0, // >>> 0: bit 31 would make the bitwise result negative
    cr3: PML4_ADDRESS,
    cr4: CR4_PAE,
    efer: EFER_LME | EFER_LMA,
  };
}

/** struct kvm_fpu fields that differ from zero: the x87 and SSE power-on control words. */
export interface BootFpu {
  /** x87 control word: all exceptions masked, 64-bit precision, round to nearest (FNINIT's value). */
  readonly fcw: number;
  /** MXCSR: all SSE exceptions masked, round to nearest (the reset value). */
  readonly mxcsr: number;
}

export const BOOT_FPU: BootFpu = { fcw: 0x37f, mxcsr: 0x1f80 };
