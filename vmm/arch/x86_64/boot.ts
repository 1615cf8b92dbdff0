/**
 * Everything a Linux guest needs in memory before its first instruction, in
 * one call: kernel, initrd, ACPI tables, zero page + command line, GDT/IDT
 * and page tables. Returns the register values for the boot vCPU; the KVM
 * binding copies them into kvm_regs/kvm_sregs/kvm_fpu/kvm_msrs.
 *
 * Order matters only in that the zero page needs the kernel's setup header,
 * the initrd's place and the RSDP address.
 */

import type { GuestMemory } from '../../memory/guest-memory.js';
import type { AcpiConfig, AcpiVirtioDevice } from './acpi/tables.js';
import { writeAcpiTables } from './acpi/tables.js';
import { DEFAULT_INITRD_ADDR_MAX, placeInitrd, setupHeaderU32, writeBootParams } from './boot-params.js';
import { writeGdtAndIdt } from './gdt.js';
import type { LoadedKernel, LoadKernelOptions } from './kernel-loader.js';
import { HDR_INITRD_ADDR_MAX, KernelLoadError, loadKernel } from './kernel-loader.js';
import { IDENTITY_MAPPED_SIZE } from './layout.js';
import type { MsrEntry } from './msrs.js';
import { BOOT_MSRS } from './msrs.js';
import { writeIdentityPageTables } from './page-tables.js';
import type { BootFpu, BootSregs, KvmRegs } from './regs.js';
import { BOOT_FPU, bootRegs, bootSregs } from './regs.js';

export interface LinuxBootConfig {
  /** The kernel file (bzImage or ELF vmlinux). */
  readonly kernel: Uint8Array;
  readonly initrd?: Uint8Array;
  readonly cmdline: string;
  readonly vcpus: number;
  readonly virtioSlots: readonly AcpiVirtioDevice[];
  /** ACPI options besides vCPUs and devices (serial, pvpanic, i8042, irq0Override). */
  readonly acpi?: Omit<AcpiConfig, 'vcpus' | 'virtioSlots'>;
  readonly kernelOptions?: LoadKernelOptions;
}

export interface LinuxBootSetup {
  readonly kernel: LoadedKernel;
  /** Where the initrd was written, or null. */
  readonly initrdAddress: number | null;
  readonly rsdpAddress: number;
  /** For the boot vCPU (index 0) only; the others wait for Linux's INIT/SIPI. */
  readonly regs: KvmRegs;
  readonly sregs: BootSregs;
  /** For every vCPU. */
  readonly fpu: BootFpu;
  /** For every vCPU. */
  readonly msrs: readonly MsrEntry[];
}

export function setupLinuxBoot(memory: GuestMemory, config: LinuxBootConfig): LinuxBootSetup {
  const kernel = loadKernel(memory, config.kernel, config.kernelOptions);
  if (kernel.kernelEnd > IDENTITY_MAPPED_SIZE) {
    throw new KernelLoadError('too-big', 'kernel extends beyond the identity-mapped first 1 GiB');
  }

  let initrdAddress: number | null = null;
  if (config.initrd && config.initrd.length > 0) {
    const header = kernel.setupHeader;
    initrdAddress = placeInitrd({
      ramSize: memory.size,
      initrdSize: config.initrd.length,
      kernelEnd: kernel.kernelEnd,
      initrdAddrMax: (header && setupHeaderU32(header, HDR_INITRD_ADDR_MAX)) || DEFAULT_INITRD_ADDR_MAX,
    });
    memory.write(initrdAddress, config.initrd);
  }

  const rsdpAddress = writeAcpiTables(memory, { ...config.acpi, vcpus: config.vcpus, virtioSlots: config.virtioSlots });
  writeBootParams(memory, {
    setupHeader: kernel.setupHeader,
    ramSize: memory.size,
    cmdline: config.cmdline,
    ...(initrdAddress !== null && config.initrd
      ? { initrd: { address: initrdAddress, size: config.initrd.length } }
      : {}),
    rsdpAddress,
  });
  writeGdtAndIdt(memory);
  writeIdentityPageTables(memory);

  return {
    kernel,
    initrdAddress,
    rsdpAddress,
    regs: bootRegs(kernel.entry),
    sregs: bootSregs(),
    fpu: BOOT_FPU,
    msrs: BOOT_MSRS,
  };
}
