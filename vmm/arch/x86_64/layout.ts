/**
 * The x86-64 guest physical memory map and I/O port map of a Belljar microVM.
 *
 * Every guest physical address, port and interrupt number the VMM hands to
 * the guest is named here, once, with the reason it sits where it does.
 * Nothing else in the VMM may spell out one of these numbers.
 *
 *   0x0000_0000  ┌ real-mode IVT + BIOS data area (left zero)
 *   0x0000_0500  │ boot GDT, IDT
 *   0x0000_7000  │ zero page (struct boot_params)
 *   0x0000_8000  │ boot stack (grows down from 0x8ff0)
 *   0x0000_9000  │ PML4, PDPT, PD (identity map of the first 1 GiB)
 *   0x0002_0000  │ kernel command line (64 KiB reserved)
 *                │ … usable low RAM …
 *   0x0009_fc00  ├ EBDA ─┐
 *   0x000a_0000  │ VGA  │ reserved in e820 (never handed to the guest allocator)
 *   0x000e_0000  │ ACPI │ RSDP + XSDT/FADT/MADT/DSDT (BIOS scan area)
 *   0x0010_0000  ├ high memory ─ usable RAM
 *   0x0100_0000  │ bzImage protected-mode kernel (16 MiB)
 *                │ … initrd at the top of RAM …
 *   0xc000_0000  ├ MMIO gap (RAM never reaches past here)
 *   0xd000_0000  │ virtio-mmio slots
 *   0xfec0_0000  │ IOAPIC
 *   0xfee0_0000  │ local APIC
 *   0xfffb_c000  │ KVM identity-map page + TSS (Intel VMX only)
 *   0x1_0000_0000└
 */

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;
export const PAGE_SIZE = 4 * KiB;

// ---------------------------------------------------------------------------
// Low memory: boot structures the VMM writes before the first instruction.
// ---------------------------------------------------------------------------

/** Boot GDT. Above the real-mode IVT (0x0–0x3ff) and BIOS data area (0x400–0x4ff), the first free bytes. */
export const GDT_ADDRESS = 0x500;
/** Entries in the boot GDT (null, null, code, data, TSS low, TSS high): see gdt.ts. */
export const GDT_ENTRY_COUNT = 6;
/** Boot IDT: a single null gate (interrupts stay disabled until Linux loads its own). Right after the GDT. */
export const IDT_ADDRESS = 0x540;

/** The zero page (struct boot_params, 4 KiB); rsi points here at entry, as the 64-bit boot protocol requires. */
export const ZERO_PAGE_ADDRESS = 0x7000;
/** Size of struct boot_params. */
export const ZERO_PAGE_SIZE = PAGE_SIZE;

/** The page holding the boot CPU's initial stack (Linux switches to its own stack almost at once). */
export const BOOT_STACK_ADDRESS = 0x8000;
/** Initial rsp/rbp: near the top of the stack page, 16-byte aligned. */
export const BOOT_STACK_POINTER = 0x8ff0;

/** Page-map level 4: the root of the boot page tables (CR3). */
export const PML4_ADDRESS = 0x9000;
/** Page-directory-pointer table: one entry, covering the first 1 GiB. */
export const PDPT_ADDRESS = 0xa000;
/** Page directory: 512 entries of 2 MiB pages = identity map of [0, 1 GiB). */
export const PD_ADDRESS = 0xb000;
/** Bytes mapped by the boot page tables. Covers the zero page, command line and the kernel (16 MiB + init_size). */
export const IDENTITY_MAPPED_SIZE = 1 * GiB;

/** Kernel command line, NUL-terminated. Out of the way of the boot structures and below 640 KiB. */
export const CMDLINE_ADDRESS = 0x20000;
/** Bytes reserved for the command line, NUL included. Linux itself accepts `cmdline_size` (2047 on x86). */
export const CMDLINE_MAX_SIZE = 0x10000;

/** End of usable low memory: the EBDA starts here on a PC, and Linux expects RAM below 640 KiB to stop here. */
export const LOW_MEMORY_END = 0x9fc00;
/** Extended BIOS data area (empty in our VMs, still reserved so the map looks like a PC's). */
export const EBDA_ADDRESS = LOW_MEMORY_END;

/**
 * ACPI tables region. The RSDP must lie on a 16-byte boundary inside the BIOS
 * read-only area 0xe0000–0xfffff so a guest that ignores `acpi_rsdp_addr`
 * still finds it by scanning; the other tables follow it in the same region.
 * The whole range 0x9fc00–0xfffff is reserved in e820.
 */
export const ACPI_REGION_START = 0xe0000;
/** End (exclusive) of the ACPI tables region. */
export const ACPI_REGION_END = 0x100000;
/** The RSDP ("RSD PTR "): first thing in the region, so the scan finds it at once. */
export const RSDP_ADDRESS = ACPI_REGION_START;

/** Start of high memory (1 MiB): everything from here to the end of RAM is usable RAM. */
export const HIGH_MEMORY_START = 0x100000;

/**
 * Where a bzImage's protected-mode kernel is loaded when its header does not
 * ask for something else: 16 MiB, which is Linux's default CONFIG_PHYSICAL_START
 * (so `pref_address`), 2 MiB aligned, and leaves the first 16 MiB to DMA-zone users.
 */
export const KERNEL_LOAD_ADDRESS = 0x100_0000;
/** Offset of the 64-bit entry point (startup_64) from the start of the protected-mode kernel. */
export const KERNEL_64BIT_ENTRY_OFFSET = 0x200;

// ---------------------------------------------------------------------------
// The 32-bit MMIO gap: device windows the guest must never see as RAM.
// ---------------------------------------------------------------------------

/** Start of the MMIO gap below 4 GiB. Guest RAM stops here (no RAM above 4 GiB in our VMs). */
export const MMIO_GAP_START = 0xc000_0000;
/** End (exclusive) of the MMIO gap: 4 GiB. */
export const MMIO_GAP_END = 0x1_0000_0000;
/** Largest guest RAM size: all RAM is one block [0, size) below the MMIO gap. */
export const MAX_GUEST_RAM = MMIO_GAP_START;

/** First virtio-mmio device window. Inside the gap, well clear of the APIC/IOAPIC pages. */
export const VIRTIO_MMIO_BASE = 0xd000_0000;
/** Distance between two virtio-mmio windows (one page each, so each can be mapped separately). */
export const VIRTIO_MMIO_STRIDE = 0x1000;
/** Bytes of each window the virtio-mmio (version 2) register file uses; what _CRS announces. */
export const VIRTIO_MMIO_SIZE = 0x200;
/** Number of virtio-mmio slots. */
export const VIRTIO_MMIO_SLOT_COUNT = 8;
/** GSI of slot 0; slot n uses GSI 16 + n. IOAPIC pins 16–23 are free of every ISA legacy IRQ. */
export const VIRTIO_MMIO_GSI_BASE = 16;
/** virtio-mmio interrupts are level-triggered, active-high (the device holds the line until InterruptACK). */
export const VIRTIO_MMIO_IRQ_LEVEL_TRIGGERED = true;

/** One virtio-mmio slot: its register window and interrupt. */
export interface VirtioMmioSlot {
  readonly index: number;
  readonly base: number;
  readonly size: number;
  readonly gsi: number;
}

/** The window and GSI of virtio-mmio slot `index` (0 ≤ index < VIRTIO_MMIO_SLOT_COUNT). */
export function virtioMmioSlot(index: number): VirtioMmioSlot {
  if (!Number.isInteger(index) || index < 0 || index >= VIRTIO_MMIO_SLOT_COUNT) {
    throw new RangeError(`virtio-mmio slot ${index} out of range 0..${VIRTIO_MMIO_SLOT_COUNT - 1}`);
  }
  return {
    index,
    base: VIRTIO_MMIO_BASE + index * VIRTIO_MMIO_STRIDE,
    size: VIRTIO_MMIO_SIZE,
    gsi: VIRTIO_MMIO_GSI_BASE + index,
  };
}

/** I/O APIC registers (KVM's in-kernel IOAPIC, 24 pins). The PC-standard address Linux expects. */
export const IOAPIC_ADDRESS = 0xfec0_0000;
/** Number of IOAPIC pins (GSIs 0–23) KVM's in-kernel IOAPIC has. */
export const IOAPIC_PIN_COUNT = 24;
/** Local APIC registers (each vCPU's, KVM in-kernel). The architectural default of IA32_APIC_BASE. */
export const LAPIC_ADDRESS = 0xfee0_0000;

/**
 * KVM_SET_TSS_ADDR: three pages Intel VMX needs for real-mode emulation. Just
 * below the BIOS ROM alias at the top of 4 GiB, inside the MMIO gap, never RAM.
 */
export const KVM_TSS_ADDRESS = 0xfffb_d000;
/** KVM_SET_IDENTITY_MAP_ADDR: one page directly below the TSS pages. */
export const KVM_IDENTITY_MAP_ADDRESS = 0xfffb_c000;

/** Largest vCPU count: CPUID leaf 1 EBX[23:16] holds a power of two ≥ the count in 8 bits, xAPIC ids are 8 bits. */
export const MAX_VCPUS = 128;

// ---------------------------------------------------------------------------
// Port I/O and legacy interrupts.
// ---------------------------------------------------------------------------

/** COM1: 16550 UART, eight registers, the kernel console (`console=ttyS0`). */
export const SERIAL_COM1_PORT = 0x3f8;
/** Ports used by the UART (the 16550's register count, defined with the device). */
export { SERIAL_PORT_COUNT } from '../../devices/legacy/serial.js';
/** COM1's ISA IRQ (= GSI 4: no override). */
export const SERIAL_COM1_IRQ = 4;

/** i8042 data port. Only the controller's reset line matters to us (Linux's reboot fallback writes 0xfe to 0x64). */
export const I8042_DATA_PORT = 0x60;
/** i8042 command/status port. */
export const I8042_COMMAND_PORT = 0x64;
/** The keyboard IRQ of the i8042. */
export const I8042_KEYBOARD_IRQ = 1;

/**
 * Hardware-reduced ACPI sleep control register (FADT SLEEP_CONTROL_REG), one
 * byte. The guest writes `SLP_TYP << 2 | SLP_EN` here to power off (S5).
 * 0x600 is where PIIX4/ICH9 put their PM block, so no legacy device lives there.
 */
export const ACPI_SLEEP_CONTROL_PORT = 0x600;
/** Hardware-reduced ACPI sleep status register (FADT SLEEP_STATUS_REG), one byte, right after control. */
export const ACPI_SLEEP_STATUS_PORT = 0x601;
/** SLP_EN, bit 5 of the sleep control register: "enter the sleep state in SLP_TYP now". */
export const ACPI_SLEEP_CONTROL_SLP_EN = 0x20;
/** Bit position of the 3-bit SLP_TYP field in the sleep control register. */
export const ACPI_SLEEP_CONTROL_SLP_TYP_SHIFT = 2;
/** Mask of the SLP_TYP field in the sleep control register. */
export const ACPI_SLEEP_CONTROL_SLP_TYP_MASK = 0x1c;
/** WAK_STS, bit 7 of the sleep status register (the guest clears it by writing 1 before sleeping). */
export const ACPI_SLEEP_STATUS_WAK_STS = 0x80;
/** SLP_TYP value our DSDT's `_S5_` package declares: writing `5 << 2 | SLP_EN` (0x34) means power off. */
export const ACPI_S5_SLEEP_TYPE = 5;

/**
 * pvpanic ISA port (QEMU's default). The guest's pvpanic driver (ACPI _HID
 * QEMU0001) reads the supported-events byte here and writes 1 (panicked) or
 * 2 (crash loaded) when the kernel panics.
 */
export const PVPANIC_PORT = 0x505;
/** pvpanic event bit: the guest panicked. */
export const PVPANIC_PANICKED = 1;
/** pvpanic event bit: the guest loaded a crash kernel. */
export const PVPANIC_CRASH_LOADED = 2;

/**
 * Boot-signal port: the guest's /init writes one byte here (`BOOT_SIGNAL_INIT_REACHED`)
 * the moment it starts, so the VMM can time "VM created → init reached" without
 * parsing the console. From a shell: `printf '\173' | dd of=/dev/port bs=1 seek=1008`.
 *
 * 0x3f0 is the first port of the legacy floppy controller block (0x3f0–0x3f7).
 * We expose no floppy controller and our DSDT declares none (no PNP0700), so
 * Linux never loads floppy.ko; nothing in Linux's boot path touches 0x3f0 (its
 * reserved standard ports are 0x00–0xff), and the port is clear of COM1
 * (0x3f8) and of the IDE control port 0x3f6, which we do not claim either.
 * Firecracker's boot timer is an MMIO page; a port needs no mapping and costs
 * one exit.
 */
export const BOOT_SIGNAL_PORT = 0x3f0;
/** The byte written to `BOOT_SIGNAL_PORT` when /init starts (Firecracker's boot-timer magic value, 123). */
export const BOOT_SIGNAL_INIT_REACHED = 123;

/** ISA IRQ of the i8254 PIT (KVM in-kernel). KVM's default GSI routing sends it to IOAPIC pin 0. */
export const PIT_IRQ = 0;

/** Alignment of an initrd placed at the top of RAM. */
export const INITRD_ALIGNMENT = PAGE_SIZE;
