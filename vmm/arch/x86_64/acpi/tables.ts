/**
 * The ACPI tables of a Belljar VM: RSDP → XSDT → {FADT → DSDT, MADT}.
 *
 * Why ACPI at all: Debian's kernel finds virtio-mmio devices only through
 * ACPI (LNRO0005 devices in the DSDT; `virtio_mmio.device=` is compiled out),
 * learns the vCPUs and the IOAPIC from the MADT, and can power off only
 * through ACPI S5. The platform is "hardware-reduced" ACPI (no PM timer, no
 * SCI, no GPEs, no fixed-feature registers): the FADT carries only the DSDT
 * pointer, boot-architecture flags and the two sleep registers.
 *
 * All tables are written into the reserved BIOS area [ACPI_REGION_START,
 * ACPI_REGION_END), the RSDP first at a 16-byte boundary so a scan finds it.
 */

import type { GuestMemory } from '../../../memory/guest-memory.js';
import {
  ACPI_REGION_END,
  ACPI_S5_SLEEP_TYPE,
  ACPI_SLEEP_CONTROL_PORT,
  ACPI_SLEEP_STATUS_PORT,
  IOAPIC_ADDRESS,
  IOAPIC_PIN_COUNT,
  LAPIC_ADDRESS,
  MAX_VCPUS,
  MMIO_GAP_END,
  MMIO_GAP_START,
  PIT_IRQ,
  PVPANIC_PORT,
  RSDP_ADDRESS,
  SERIAL_COM1_IRQ,
  SERIAL_COM1_PORT,
  SERIAL_PORT_COUNT,
} from '../layout.js';
import {
  concat,
  device,
  eisaId,
  integer,
  interrupt,
  io,
  irqNoFlags,
  memory32Fixed,
  name,
  pkg,
  resourceTemplate,
  scope,
  string,
} from './aml.js';

export class AcpiError extends Error {
  constructor(message: string) {
    super(`acpi: ${message}`);
    this.name = 'AcpiError';
  }
}

/** OEMID in every table (6 bytes). */
export const OEM_ID = 'BELLJR';
/** OEM table id in every table (8 bytes). */
export const OEM_TABLE_ID = 'BELLJAR ';
export const OEM_REVISION = 1;
/** Creator id: the "ASL compiler" that made the tables, i.e. us (4 bytes). */
export const CREATOR_ID = 'BLJR';
export const CREATOR_REVISION = 1;
/** FADT hypervisor vendor identity (8 bytes). */
export const HYPERVISOR_VENDOR_ID = 'BELLJAR\0';

export const SDT_HEADER_SIZE = 36;
export const RSDP_SIZE = 36;
/** Offset of the checksum byte in a table header. */
export const SDT_CHECKSUM_OFFSET = 9;
const TABLE_ALIGNMENT = 16;

// --- FADT (ACPI 6.5 §5.2.9), revision 6 = ACPI 6.x, 276 bytes ---
export const FADT_SIZE = 276;
export const FADT_REVISION = 6;
export const FADT_MINOR_REVISION = 3; // ACPI 6.3
export const FADT_IAPC_BOOT_ARCH_OFFSET = 109;
export const FADT_FLAGS_OFFSET = 112;
export const FADT_MINOR_VERSION_OFFSET = 131;
export const FADT_X_DSDT_OFFSET = 140;
export const FADT_SLEEP_CONTROL_REG_OFFSET = 244;
export const FADT_SLEEP_STATUS_REG_OFFSET = 256;
export const FADT_HYPERVISOR_VENDOR_OFFSET = 268;

/** FADT flags bit 4: no fixed-feature power button (in HW-reduced mode it would be a device). */
export const FADT_F_PWR_BUTTON = 1 << 4;
/** FADT flags bit 5: no fixed-feature sleep button. */
export const FADT_F_SLP_BUTTON = 1 << 5;
/** FADT flags bit 20: hardware-reduced ACPI — no PM1/GPE/PM-timer blocks, no SCI, no SMI_CMD. */
export const FADT_F_HW_REDUCED_ACPI = 1 << 20;

/** IA-PC boot architecture bit 1: an 8042 keyboard controller exists (Linux probes i8042 only then). */
export const IAPC_BOOT_ARCH_8042 = 1 << 1;
/** Bit 2: VGA not present: Linux leaves the legacy VGA ports and memory alone. */
export const IAPC_BOOT_ARCH_VGA_NOT_PRESENT = 1 << 2;
/** Bit 3: MSI not supported: we have no PCI. */
export const IAPC_BOOT_ARCH_MSI_NOT_SUPPORTED = 1 << 3;
/** Bit 5: CMOS RTC not present: Linux registers no rtc_cmos device and never touches ports 0x70/0x71. */
export const IAPC_BOOT_ARCH_CMOS_RTC_NOT_PRESENT = 1 << 5;

/** Generic Address Structure address space: system I/O ports. */
export const GAS_SYSTEM_IO = 1;
/** GAS access size: byte. */
export const GAS_ACCESS_BYTE = 1;

// --- MADT (ACPI 6.5 §5.2.12) ---
export const MADT_REVISION = 5;
/** MADT flags bit 0: the system also has dual 8259 PICs (KVM's in-kernel irqchip has them); Linux masks them. */
export const MADT_PCAT_COMPAT = 1;
export const MADT_TYPE_LOCAL_APIC = 0;
export const MADT_TYPE_IO_APIC = 1;
export const MADT_TYPE_INTERRUPT_SOURCE_OVERRIDE = 2;
export const MADT_TYPE_LOCAL_APIC_NMI = 4;
/** Processor Local APIC flags bit 0: enabled. */
export const MADT_LAPIC_ENABLED = 1;
/** IOAPIC id in the MADT; KVM's in-kernel IOAPIC resets its id register to 0. */
export const IOAPIC_ID = 0;
/** Local APIC NMI: processor UID 0xff = all processors. */
const ALL_PROCESSORS = 0xff;
/** Local APIC NMI arrives on LINT1, as on every PC. */
const NMI_LINT = 1;
/** The IOAPIC pin the PIT's IRQ 0 reaches with a QEMU-style GSI routing (not KVM's default). */
export const PIT_GSI_WITH_OVERRIDE = 2;

export const DSDT_REVISION = 2; // 2: integers are 64 bits
export const XSDT_REVISION = 1;
export const RSDP_REVISION = 2; // ACPI 2.0+: has the XSDT pointer and extended checksum

/** Every virtio-mmio device the DSDT announces. */
export interface AcpiVirtioDevice {
  readonly base: number;
  readonly size: number;
  readonly gsi: number;
}

export interface AcpiConfig {
  /** Number of vCPUs: APIC ids and ACPI processor UIDs 0..vcpus-1. */
  readonly vcpus: number;
  /** virtio-mmio devices in slot order; device n gets _UID n. */
  readonly virtioSlots: readonly AcpiVirtioDevice[];
  /** Describe COM1 (PNP0501) in the DSDT. Default true. */
  readonly serial?: boolean;
  /** Describe the pvpanic device (QEMU0001). Default true. */
  readonly pvpanic?: boolean;
  /**
   * Announce an i8042 in the FADT. Default false: Linux then skips the i8042
   * probe (saving boot time); its reboot fallback still writes 0xfe to port 0x64.
   */
  readonly i8042?: boolean;
  /**
   * Add an Interrupt Source Override IRQ 0 → GSI 2, as QEMU does. Only correct
   * when the VMM installs QEMU's GSI routing (GSI 0 → IOAPIC pin 2); KVM's
   * default routing sends the PIT to pin 0, which is what Linux assumes without
   * an override. Default false. (With kvm-clock Linux skips its timer check.)
   */
  readonly irq0Override?: boolean;
}

/** Sum of all bytes mod 256 — ACPI tables must sum to 0. */
export function checksum(bytes: Uint8Array): number {
  let sum = 0;
  for (const b of bytes) sum = (sum + b) & 0xff;
  return sum;
}

function ascii(text: string, length: number): Uint8Array {
  if (text.length !== length || [...text].some((c) => c.charCodeAt(0) > 0x7f)) {
    throw new AcpiError(`"${text}" is not ${length} ASCII characters`);
  }
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

/** A complete table: 36-byte header + body, checksum filled in. */
export function sdt(signature: string, revision: number, body: Uint8Array): Uint8Array {
  const table = new Uint8Array(SDT_HEADER_SIZE + body.length);
  const view = new DataView(table.buffer);
  table.set(ascii(signature, 4), 0);
  view.setUint32(4, table.length, true);
  view.setUint8(8, revision);
  table.set(ascii(OEM_ID, 6), 10);
  table.set(ascii(OEM_TABLE_ID, 8), 16);
  view.setUint32(24, OEM_REVISION, true);
  table.set(ascii(CREATOR_ID, 4), 28);
  view.setUint32(32, CREATOR_REVISION, true);
  table.set(body, SDT_HEADER_SIZE);
  table[SDT_CHECKSUM_OFFSET] = (256 - checksum(table)) & 0xff;
  return table;
}

/** RSDP (ACPI 2.0+, 36 bytes) pointing at the XSDT; the RSDT pointer stays 0. */
export function buildRsdp(xsdtAddress: number): Uint8Array {
  const rsdp = new Uint8Array(RSDP_SIZE);
  const view = new DataView(rsdp.buffer);
  rsdp.set(ascii('RSD PTR ', 8), 0);
  rsdp.set(ascii(OEM_ID, 6), 9);
  view.setUint8(15, RSDP_REVISION);
  view.setUint32(16, 0, true); // RsdtAddress: none, XSDT only
  view.setUint32(20, RSDP_SIZE, true);
  view.setBigUint64(24, BigInt(xsdtAddress), true);
  rsdp[8] = (256 - checksum(rsdp.subarray(0, 20))) & 0xff; // ACPI 1.0 checksum: first 20 bytes
  rsdp[32] = (256 - checksum(rsdp)) & 0xff; // extended checksum: all 36 bytes
  return rsdp;
}

export function buildXsdt(entries: readonly number[]): Uint8Array {
  const body = new Uint8Array(8 * entries.length);
  const view = new DataView(body.buffer);
  entries.forEach((address, i) => view.setBigUint64(8 * i, BigInt(address), true));
  return sdt('XSDT', XSDT_REVISION, body);
}

/** A 12-byte Generic Address Structure for a byte-wide I/O port. */
function gasIoByte(port: number): Uint8Array {
  const gas = new Uint8Array(12);
  const view = new DataView(gas.buffer);
  gas[0] = GAS_SYSTEM_IO;
  gas[1] = 8; // register bit width
  gas[2] = 0; // register bit offset
  gas[3] = GAS_ACCESS_BYTE;
  view.setBigUint64(4, BigInt(port), true);
  return gas;
}

export function buildFadt(dsdtAddress: number, options: { i8042?: boolean } = {}): Uint8Array {
  const body = new Uint8Array(FADT_SIZE - SDT_HEADER_SIZE);
  const view = new DataView(body.buffer);
  const at = (offset: number): number => offset - SDT_HEADER_SIZE;
  // FIRMWARE_CTRL/DSDT (32-bit), SCI_INT, SMI_CMD, PM blocks…: all 0, ignored on a HW-reduced platform.
  const iapc =
    IAPC_BOOT_ARCH_VGA_NOT_PRESENT |
    IAPC_BOOT_ARCH_MSI_NOT_SUPPORTED |
    IAPC_BOOT_ARCH_CMOS_RTC_NOT_PRESENT |
    (options.i8042 ? IAPC_BOOT_ARCH_8042 : 0);
  view.setUint16(at(FADT_IAPC_BOOT_ARCH_OFFSET), iapc, true);
  view.setUint32(at(FADT_FLAGS_OFFSET), FADT_F_HW_REDUCED_ACPI | FADT_F_PWR_BUTTON | FADT_F_SLP_BUTTON, true);
  view.setUint8(at(FADT_MINOR_VERSION_OFFSET), FADT_MINOR_REVISION);
  view.setBigUint64(at(FADT_X_DSDT_OFFSET), BigInt(dsdtAddress), true);
  // Linux offers ACPI power-off on a HW-reduced platform only if both sleep registers are present.
  body.set(gasIoByte(ACPI_SLEEP_CONTROL_PORT), at(FADT_SLEEP_CONTROL_REG_OFFSET));
  body.set(gasIoByte(ACPI_SLEEP_STATUS_PORT), at(FADT_SLEEP_STATUS_REG_OFFSET));
  body.set(ascii(HYPERVISOR_VENDOR_ID, 8), at(FADT_HYPERVISOR_VENDOR_OFFSET));
  return sdt('FACP', FADT_REVISION, body);
}

export function buildMadt(vcpus: number, options: { irq0Override?: boolean } = {}): Uint8Array {
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > MAX_VCPUS) {
    throw new AcpiError(`vCPU count ${vcpus} outside 1..${MAX_VCPUS}`);
  }
  const parts: Uint8Array[] = [];
  const fixed = new Uint8Array(8);
  new DataView(fixed.buffer).setUint32(0, LAPIC_ADDRESS, true);
  new DataView(fixed.buffer).setUint32(4, MADT_PCAT_COMPAT, true);
  parts.push(fixed);
  for (let i = 0; i < vcpus; i++) {
    // Processor Local APIC: type, length, ACPI processor UID, APIC id, flags (u32).
    parts.push(Uint8Array.of(MADT_TYPE_LOCAL_APIC, 8, i, i, MADT_LAPIC_ENABLED, 0, 0, 0));
  }
  const ioapic = new Uint8Array(12);
  const ioView = new DataView(ioapic.buffer);
  ioapic.set([MADT_TYPE_IO_APIC, 12, IOAPIC_ID, 0]);
  ioView.setUint32(4, IOAPIC_ADDRESS, true);
  ioView.setUint32(8, 0, true); // GSI base: pins 0–23 are GSIs 0–23
  parts.push(ioapic);
  if (options.irq0Override) {
    // Interrupt Source Override: bus 0 (ISA), source IRQ, GSI (u32), flags (u16) 0 = conforms to the bus.
    const iso = new Uint8Array(10);
    iso.set([MADT_TYPE_INTERRUPT_SOURCE_OVERRIDE, 10, 0, PIT_IRQ]);
    new DataView(iso.buffer).setUint32(4, PIT_GSI_WITH_OVERRIDE, true);
    parts.push(iso);
  }
  // Local APIC NMI: all processors, flags 0 (conforms), LINT1.
  parts.push(Uint8Array.of(MADT_TYPE_LOCAL_APIC_NMI, 6, ALL_PROCESSORS, 0, 0, NMI_LINT));
  return sdt('APIC', MADT_REVISION, concat(...parts));
}

/** _HID of a virtio-mmio device in ACPI (Linaro's id, what Linux's virtio_mmio driver matches). */
export const VIRTIO_MMIO_HID = 'LNRO0005';
/** _HID of QEMU's pvpanic ISA device. */
export const PVPANIC_HID = 'QEMU0001';
/** _HID of a 16550-compatible UART. */
export const SERIAL_HID = 'PNP0501';

/** The AML body of the DSDT (without the table header). */
export function buildDsdtAml(config: AcpiConfig): Uint8Array {
  const devices: Uint8Array[] = [];
  if (config.serial ?? true) {
    devices.push(
      device('COM1', [
        name('_HID', integer(eisaId(SERIAL_HID))),
        name('_UID', integer(0)),
        name(
          '_CRS',
          resourceTemplate([
            io(SERIAL_COM1_PORT, SERIAL_COM1_PORT, 0, SERIAL_PORT_COUNT),
            irqNoFlags([SERIAL_COM1_IRQ]),
          ]),
        ),
      ]),
    );
  }
  if (config.pvpanic ?? true) {
    devices.push(
      device('PEVT', [
        name('_HID', string(PVPANIC_HID)),
        name('_CRS', resourceTemplate([io(PVPANIC_PORT, PVPANIC_PORT, 1, 1)])),
      ]),
    );
  }
  config.virtioSlots.forEach((slot, n) => {
    devices.push(
      device(`VR${n.toString(16).toUpperCase().padStart(2, '0')}`, [
        name('_HID', string(VIRTIO_MMIO_HID)),
        name('_UID', integer(n)),
        name('_CCA', integer(1)), // cache-coherent DMA
        name(
          '_CRS',
          resourceTemplate([
            memory32Fixed(slot.base, slot.size),
            interrupt({ edgeTriggered: false, activeLow: false, shared: false }, [slot.gsi]),
          ]),
        ),
      ]),
    );
  });
  // \_S5_: {SLP_TYPa, SLP_TYPb, reserved, reserved}. Its presence makes Linux offer ACPI power-off.
  const s5 = name('_S5_', pkg([integer(ACPI_S5_SLEEP_TYPE), integer(0), integer(0), integer(0)]));
  return concat(scope('_SB_', devices), s5);
}

export function buildDsdt(config: AcpiConfig): Uint8Array {
  return sdt('DSDT', DSDT_REVISION, buildDsdtAml(config));
}

function validate(config: AcpiConfig): void {
  if (config.virtioSlots.length > 255) throw new AcpiError('too many virtio-mmio devices');
  const used = new Set<number>([SERIAL_COM1_IRQ]);
  for (const [n, slot] of config.virtioSlots.entries()) {
    if (slot.base < MMIO_GAP_START || slot.base + slot.size > MMIO_GAP_END || slot.size <= 0) {
      throw new AcpiError(`virtio-mmio device ${n} window 0x${slot.base.toString(16)} is not inside the MMIO gap`);
    }
    if (!Number.isInteger(slot.gsi) || slot.gsi < 0 || slot.gsi >= IOAPIC_PIN_COUNT || used.has(slot.gsi)) {
      throw new AcpiError(`virtio-mmio device ${n} GSI ${slot.gsi} is out of range or already used`);
    }
    used.add(slot.gsi);
  }
}

function align(value: number): number {
  return Math.ceil(value / TABLE_ALIGNMENT) * TABLE_ALIGNMENT;
}

export interface AcpiTableLocation {
  readonly signature: string;
  readonly address: number;
  readonly length: number;
}

/** Writes RSDP, DSDT, FADT, MADT and XSDT; returns where each went (RSDP first). */
export function writeAcpiTableSet(memory: GuestMemory, config: AcpiConfig): AcpiTableLocation[] {
  validate(config);
  const dsdt = buildDsdt(config);
  const madt = buildMadt(config.vcpus, { irq0Override: config.irq0Override ?? false });
  const dsdtAddress = align(RSDP_ADDRESS + RSDP_SIZE);
  const fadtAddress = align(dsdtAddress + dsdt.length);
  const fadt = buildFadt(dsdtAddress, { i8042: config.i8042 ?? false });
  const madtAddress = align(fadtAddress + fadt.length);
  const xsdtAddress = align(madtAddress + madt.length);
  const xsdt = buildXsdt([fadtAddress, madtAddress]);
  if (xsdtAddress + xsdt.length > ACPI_REGION_END) {
    throw new AcpiError(`tables need ${xsdtAddress + xsdt.length - RSDP_ADDRESS} bytes, more than the ACPI region`);
  }
  const rsdp = buildRsdp(xsdtAddress);
  const placed: [string, number, Uint8Array][] = [
    ['RSD PTR ', RSDP_ADDRESS, rsdp],
    ['DSDT', dsdtAddress, dsdt],
    ['FACP', fadtAddress, fadt],
    ['APIC', madtAddress, madt],
    ['XSDT', xsdtAddress, xsdt],
  ];
  memory.fill(RSDP_ADDRESS, ACPI_REGION_END - RSDP_ADDRESS);
  for (const [, address, bytes] of placed) memory.write(address, bytes);
  return placed.map(([signature, address, bytes]) => ({ signature, address, length: bytes.length }));
}

/** Writes all ACPI tables; returns the RSDP's address (for boot_params.acpi_rsdp_addr). */
export function writeAcpiTables(memory: GuestMemory, config: AcpiConfig): number {
  writeAcpiTableSet(memory, config);
  return RSDP_ADDRESS;
}
