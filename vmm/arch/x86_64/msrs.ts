/**
 * Model-specific registers set on every vCPU before boot (KVM_SET_MSRS), the
 * same set Firecracker writes: the syscall/sysenter MSRs cleared (Linux
 * programs them itself), the TSC at 0, fast string operations enabled and the
 * default memory type write-back, so the guest does not run uncached until it
 * sets up MTRRs (it never does under KVM).
 */

export const MSR_IA32_TSC = 0x10;
export const MSR_IA32_SYSENTER_CS = 0x174;
export const MSR_IA32_SYSENTER_ESP = 0x175;
export const MSR_IA32_SYSENTER_EIP = 0x176;
export const MSR_IA32_MISC_ENABLE = 0x1a0;
export const MSR_MTRR_DEF_TYPE = 0x2ff;
export const MSR_STAR = 0xc000_0081;
export const MSR_LSTAR = 0xc000_0082;
export const MSR_CSTAR = 0xc000_0083;
export const MSR_SYSCALL_MASK = 0xc000_0084;
export const MSR_KERNEL_GS_BASE = 0xc000_0102;

/** IA32_MISC_ENABLE bit 0: fast-string operations (rep movs/stos) enabled. */
export const MISC_ENABLE_FAST_STRING = 1n << 0n;
/** IA32_MTRR_DEF_TYPE bit 11: MTRRs enabled. */
export const MTRR_ENABLE = 1n << 11n;
/** Memory type write-back (6), in IA32_MTRR_DEF_TYPE bits 7:0. */
export const MTRR_MEM_TYPE_WB = 6n;

import type { MsrEntry } from '../../kvm/structs.js';
export type { MsrEntry };

export const BOOT_MSRS: readonly MsrEntry[] = [
  { index: MSR_IA32_SYSENTER_CS, value: 0n },
  { index: MSR_IA32_SYSENTER_ESP, value: 0n },
  { index: MSR_IA32_SYSENTER_EIP, value: 0n },
  { index: MSR_STAR, value: 0n },
  { index: MSR_CSTAR, value: 0n },
  { index: MSR_KERNEL_GS_BASE, value: 0n },
  { index: MSR_SYSCALL_MASK, value: 0n },
  { index: MSR_LSTAR, value: 0n },
  { index: MSR_IA32_TSC, value: 0n },
  { index: MSR_IA32_MISC_ENABLE, value: MISC_ENABLE_FAST_STRING },
  { index: MSR_MTRR_DEF_TYPE, value: MTRR_ENABLE | MTRR_MEM_TYPE_WB },
];
