/**
 * The Linux zero page (struct boot_params) and the e820 memory map.
 *
 * Offsets follow Documentation/arch/x86/zero-page.rst and boot.rst. The page
 * starts zeroed: fields we do not set stay 0, which Linux reads as "absent",
 * and the sentinel at 0x1ef stays 0 so Linux does not scrub the header.
 */

import type { GuestMemory } from '../../memory/guest-memory.js';
import {
  BOOT_FLAG_MAGIC,
  HDR_BOOT_FLAG,
  HDR_CMDLINE_SIZE,
  HDR_CMD_LINE_PTR,
  HDR_HEADER,
  HDR_HEAP_END_PTR,
  HDR_INITRD_ADDR_MAX,
  HDR_JUMP,
  HDR_KERNEL_ALIGNMENT,
  HDR_LOADFLAGS,
  HDR_RAMDISK_IMAGE,
  HDR_RAMDISK_SIZE,
  HDR_TYPE_OF_LOADER,
  HDR_VERSION,
  LOADFLAGS_CAN_USE_HEAP,
  LOADFLAGS_LOADED_HIGH,
  MIN_BOOT_PROTOCOL,
  SETUP_HEADER_MAGIC,
  SETUP_HEADER_MAX_END,
  SETUP_HEADER_OFFSET,
} from './kernel-loader.js';
import {
  CMDLINE_ADDRESS,
  CMDLINE_MAX_SIZE,
  HIGH_MEMORY_START,
  INITRD_ALIGNMENT,
  LOW_MEMORY_END,
  MAX_GUEST_RAM,
  MMIO_GAP_START,
  ZERO_PAGE_ADDRESS,
  ZERO_PAGE_SIZE,
} from './layout.js';

// --- zero page offsets outside the setup header (zero-page.rst) ---
export const BP_ACPI_RSDP_ADDR = 0x070; // u64
export const BP_EXT_RAMDISK_IMAGE = 0x0c0; // u32: high 32 bits of ramdisk_image
export const BP_EXT_RAMDISK_SIZE = 0x0c4; // u32
export const BP_EXT_CMD_LINE_PTR = 0x0c8; // u32
export const BP_E820_ENTRIES = 0x1e8; // u8
export const BP_SENTINEL = 0x1ef; // u8: must stay 0
export const BP_E820_TABLE = 0x2d0; // 128 × struct boot_e820_entry
export const E820_ENTRY_SIZE = 20; // u64 addr, u64 size, u32 type
export const E820_MAX_ENTRIES = 128;

/** type_of_loader: 0xff = "undefined" boot loader (we have no assigned id). */
export const LOADER_TYPE_UNDEFINED = 0xff;
/** heap_end_ptr: end of the real-mode setup heap, 0xfe00 as boot.rst suggests (unused by a 64-bit entry). */
export const SETUP_HEAP_END = 0xfe00;
/** Linux's COMMAND_LINE_SIZE on x86 (2048) minus the NUL: the cmdline_size we put in a synthesized header. */
export const DEFAULT_CMDLINE_SIZE = 2047;
/** initrd_addr_max of every kernel since protocol 2.03 that does not say otherwise. */
export const DEFAULT_INITRD_ADDR_MAX = 0x7fff_ffff;
/** kernel_alignment of a synthesized header (vmlinux ignores it; 16 MiB matches our load address). */
const SYNTHESIZED_KERNEL_ALIGNMENT = 0x100_0000;

export const E820_RAM = 1;
export const E820_RESERVED = 2;

export interface E820Entry {
  readonly addr: number;
  readonly size: number;
  readonly type: typeof E820_RAM | typeof E820_RESERVED;
}

export type BootParamsErrorCode = 'ram-size' | 'cmdline-too-long' | 'cmdline-invalid' | 'initrd-too-big' | 'bad-header';

export class BootParamsError extends Error {
  constructor(
    readonly code: BootParamsErrorCode,
    message: string,
  ) {
    super(`boot params: ${message}`);
    this.name = 'BootParamsError';
  }
}

/** Smallest RAM we lay out a VM in: the low boot structures plus some high memory. */
export const MIN_GUEST_RAM = 2 * HIGH_MEMORY_START;

function checkRamSize(ramSize: number): void {
  if (!Number.isSafeInteger(ramSize) || ramSize < MIN_GUEST_RAM || ramSize > MAX_GUEST_RAM) {
    throw new BootParamsError(
      'ram-size',
      `RAM size ${ramSize} outside ${MIN_GUEST_RAM}..${MAX_GUEST_RAM} (RAM stops at the MMIO gap)`,
    );
  }
}

/**
 * The guest's physical memory map: low RAM up to the EBDA, the legacy hole
 * 640 KiB–1 MiB reserved (EBDA, VGA, BIOS area with our ACPI tables), RAM from
 * 1 MiB to the end. RAM never reaches the MMIO gap.
 */
export function e820Map(ramSize: number): E820Entry[] {
  checkRamSize(ramSize);
  return [
    { addr: 0, size: LOW_MEMORY_END, type: E820_RAM },
    { addr: LOW_MEMORY_END, size: HIGH_MEMORY_START - LOW_MEMORY_END, type: E820_RESERVED },
    { addr: HIGH_MEMORY_START, size: ramSize - HIGH_MEMORY_START, type: E820_RAM },
  ];
}

export interface InitrdPlacement {
  readonly ramSize: number;
  readonly initrdSize: number;
  /** First address past the kernel (LoadedKernel.kernelEnd); the initrd must not overlap it. */
  readonly kernelEnd: number;
  /** The kernel's initrd_addr_max (highest byte the initrd may occupy). */
  readonly initrdAddrMax?: number;
}

/**
 * Where the initrd goes: as high as possible (out of the kernel's way while it
 * decompresses), page-aligned, ending at or below RAM end, initrd_addr_max + 1
 * and the MMIO gap.
 */
export function placeInitrd(p: InitrdPlacement): number {
  checkRamSize(p.ramSize);
  if (!Number.isSafeInteger(p.initrdSize) || p.initrdSize <= 0) {
    throw new BootParamsError('initrd-too-big', `initrd size ${p.initrdSize} is not a positive size`);
  }
  const addrMax = p.initrdAddrMax ?? DEFAULT_INITRD_ADDR_MAX;
  const limit = Math.min(p.ramSize, addrMax + 1, MMIO_GAP_START);
  const address = Math.floor((limit - p.initrdSize) / INITRD_ALIGNMENT) * INITRD_ALIGNMENT;
  const floor = Math.max(p.kernelEnd, HIGH_MEMORY_START);
  if (address < floor) {
    throw new BootParamsError(
      'initrd-too-big',
      `initrd of ${p.initrdSize} bytes does not fit between the kernel end 0x${floor.toString(16)} and 0x${limit.toString(16)}`,
    );
  }
  return address;
}

/**
 * A minimal setup header for a kernel that came without one (ELF vmlinux):
 * boot_flag, "HdrS", protocol 2.12, cmdline_size, initrd_addr_max. Bytes are
 * relative to 0x1f1, like the header a bzImage carries.
 */
export function synthesizeSetupHeader(): Uint8Array {
  const header = new Uint8Array(SETUP_HEADER_MAX_END - SETUP_HEADER_OFFSET);
  const view = new DataView(header.buffer);
  const at = (offset: number): number => offset - SETUP_HEADER_OFFSET;
  view.setUint16(at(HDR_BOOT_FLAG), BOOT_FLAG_MAGIC, true);
  view.setUint8(at(HDR_JUMP + 1), 0x6a); // header ends at 0x26c, as in protocol 2.15 kernels
  view.setUint32(at(HDR_HEADER), SETUP_HEADER_MAGIC, true);
  view.setUint16(at(HDR_VERSION), MIN_BOOT_PROTOCOL, true);
  view.setUint8(at(HDR_LOADFLAGS), LOADFLAGS_LOADED_HIGH);
  view.setUint32(at(HDR_INITRD_ADDR_MAX), DEFAULT_INITRD_ADDR_MAX, true);
  view.setUint32(at(HDR_KERNEL_ALIGNMENT), SYNTHESIZED_KERNEL_ALIGNMENT, true);
  view.setUint32(at(HDR_CMDLINE_SIZE), DEFAULT_CMDLINE_SIZE, true);
  return header;
}

/** Reads a field of a setup header given as bytes from 0x1f1; undefined when the header is too short. */
export function setupHeaderU32(header: Uint8Array, offset: number): number | undefined {
  const at = offset - SETUP_HEADER_OFFSET;
  if (at < 0 || at + 4 > header.length) return undefined;
  return new DataView(header.buffer, header.byteOffset, header.byteLength).getUint32(at, true);
}

export interface BootParamsConfig {
  /** LoadedKernel.setupHeader: the bzImage's header, or null to synthesize one (ELF). */
  readonly setupHeader: Uint8Array | null;
  readonly ramSize: number;
  /** The kernel command line (ASCII). */
  readonly cmdline: string;
  /** Where the initrd was written (see placeInitrd) and its size. */
  readonly initrd?: { readonly address: number; readonly size: number };
  /** Guest physical address of the RSDP (writeAcpiTables' result). */
  readonly rsdpAddress?: number;
}

/** Encodes and length-checks the command line against the kernel's cmdline_size. NUL not included. */
export function encodeCmdline(cmdline: string, setupHeader: Uint8Array | null): Uint8Array {
  if ([...cmdline].some((c) => c.charCodeAt(0) < 0x20 || c.charCodeAt(0) > 0x7e)) {
    throw new BootParamsError('cmdline-invalid', 'command line must be printable ASCII');
  }
  const bytes = new TextEncoder().encode(cmdline);
  const kernelLimit = (setupHeader && setupHeaderU32(setupHeader, HDR_CMDLINE_SIZE)) ?? DEFAULT_CMDLINE_SIZE;
  const limit = Math.min(kernelLimit, CMDLINE_MAX_SIZE - 1);
  if (bytes.length > limit) {
    throw new BootParamsError(
      'cmdline-too-long',
      `command line of ${bytes.length} bytes exceeds the kernel's cmdline_size ${limit}`,
    );
  }
  return bytes;
}

/** Builds the 4 KiB zero page. Pure: writes nothing to guest memory. */
export function buildBootParams(config: BootParamsConfig): Uint8Array {
  checkRamSize(config.ramSize);
  const page = new Uint8Array(ZERO_PAGE_SIZE);
  const view = new DataView(page.buffer);

  const header = config.setupHeader ?? synthesizeSetupHeader();
  if (header.length > SETUP_HEADER_MAX_END - SETUP_HEADER_OFFSET) {
    throw new BootParamsError('bad-header', `setup header of ${header.length} bytes overruns boot_params`);
  }
  page.set(header, SETUP_HEADER_OFFSET);
  if (view.getUint32(HDR_HEADER, true) !== SETUP_HEADER_MAGIC) {
    throw new BootParamsError('bad-header', 'setup header has no "HdrS" magic');
  }

  encodeCmdline(config.cmdline, header); // length check against the kernel's cmdline_size
  view.setUint8(HDR_TYPE_OF_LOADER, LOADER_TYPE_UNDEFINED);
  view.setUint8(HDR_LOADFLAGS, view.getUint8(HDR_LOADFLAGS) | LOADFLAGS_CAN_USE_HEAP);
  view.setUint16(HDR_HEAP_END_PTR, SETUP_HEAP_END, true);
  view.setUint32(HDR_CMD_LINE_PTR, CMDLINE_ADDRESS, true);
  view.setUint32(BP_EXT_CMD_LINE_PTR, 0, true);
  if (config.setupHeader === null) view.setUint32(HDR_CMDLINE_SIZE, DEFAULT_CMDLINE_SIZE, true);

  if (config.initrd) {
    const { address, size } = config.initrd;
    if (address < HIGH_MEMORY_START || address + size > config.ramSize || !Number.isSafeInteger(address + size)) {
      throw new BootParamsError('initrd-too-big', `initrd 0x${address.toString(16)}+${size} is not inside RAM`);
    }
    view.setUint32(HDR_RAMDISK_IMAGE, address, true);
    view.setUint32(HDR_RAMDISK_SIZE, size, true);
    view.setUint32(BP_EXT_RAMDISK_IMAGE, 0, true);
    view.setUint32(BP_EXT_RAMDISK_SIZE, 0, true);
  }

  if (config.rsdpAddress !== undefined) view.setBigUint64(BP_ACPI_RSDP_ADDR, BigInt(config.rsdpAddress), true);

  const e820 = e820Map(config.ramSize);
  view.setUint8(BP_E820_ENTRIES, e820.length);
  e820.forEach((entry, i) => {
    const at = BP_E820_TABLE + i * E820_ENTRY_SIZE;
    view.setBigUint64(at, BigInt(entry.addr), true);
    view.setBigUint64(at + 8, BigInt(entry.size), true);
    view.setUint32(at + 16, entry.type, true);
  });
  view.setUint8(BP_SENTINEL, 0);
  return page;
}

/** Writes the zero page at ZERO_PAGE_ADDRESS and the NUL-terminated command line at CMDLINE_ADDRESS. */
export function writeBootParams(memory: GuestMemory, config: BootParamsConfig): void {
  const page = buildBootParams(config);
  const cmdline = encodeCmdline(config.cmdline, config.setupHeader ?? synthesizeSetupHeader());
  memory.write(ZERO_PAGE_ADDRESS, page);
  memory.fill(CMDLINE_ADDRESS, CMDLINE_MAX_SIZE);
  memory.write(CMDLINE_ADDRESS, cmdline);
}
