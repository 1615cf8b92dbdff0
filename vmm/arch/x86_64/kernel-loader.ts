/**
 * Loads a Linux kernel image into guest memory for a direct 64-bit boot.
 *
 * Two formats:
 *  - bzImage (what distributions ship, e.g. Debian's vmlinuz): a real-mode
 *    setup part, then the compressed protected-mode kernel. We copy only the
 *    protected-mode part and enter it at its 64-bit entry point (+0x200),
 *    following Documentation/arch/x86/boot.rst, "64-bit boot protocol".
 *  - ELF64 vmlinux (uncompressed, as Firecracker prefers): PT_LOAD segments
 *    are copied to their physical addresses.
 *
 * Everything is validated against the file size and the RAM size before a
 * byte is written; problems raise `KernelLoadError` with a stable `code`.
 */

import type { GuestMemory } from '../../memory/guest-memory.js';
import { HIGH_MEMORY_START, KERNEL_64BIT_ENTRY_OFFSET, KERNEL_LOAD_ADDRESS, MAX_GUEST_RAM } from './layout.js';

export type KernelLoadErrorCode =
  /** Neither an ELF file nor a bzImage ("HdrS" missing, or boot_flag is not 0xAA55). */
  | 'bad-magic'
  /** The header names more bytes than the file has. */
  | 'truncated'
  /** Boot protocol older than 2.12 (no xloadflags, so no 64-bit entry to rely on). */
  | 'old-protocol'
  /** The kernel has no 64-bit entry point (XLF_KERNEL_64 clear, or a 32-bit ELF). */
  | 'not-64-bit'
  /** A kernel we cannot place: not a bzImage (LOADED_HIGH clear), non-x86-64 ELF, bad alignment. */
  | 'unsupported'
  /** The kernel (with the room it needs to decompress, init_size) does not fit in guest RAM. */
  | 'too-big';

export class KernelLoadError extends Error {
  constructor(
    readonly code: KernelLoadErrorCode,
    message: string,
  ) {
    super(`kernel: ${message}`);
    this.name = 'KernelLoadError';
  }
}

// --- bzImage setup header (offsets are from the start of the file = boot_params) ---

/** Offset of the setup header in the file and in boot_params. */
export const SETUP_HEADER_OFFSET = 0x1f1;
/** End (exclusive) of the room for the setup header in boot_params (edd_mbr_sig_buffer follows). */
export const SETUP_HEADER_MAX_END = 0x290;

export const HDR_SETUP_SECTS = 0x1f1; // u8: 512-byte sectors of real-mode setup code (0 means 4)
export const HDR_SYSSIZE = 0x1f4; // u32: protected-mode code size in 16-byte paragraphs
export const HDR_BOOT_FLAG = 0x1fe; // u16: 0xAA55
export const HDR_JUMP = 0x200; // u16: a short jmp; its second byte gives the header's end
export const HDR_HEADER = 0x202; // u32: "HdrS"
export const HDR_VERSION = 0x206; // u16: boot protocol version, e.g. 0x020f
export const HDR_TYPE_OF_LOADER = 0x210; // u8
export const HDR_LOADFLAGS = 0x211; // u8
export const HDR_RAMDISK_IMAGE = 0x218; // u32
export const HDR_RAMDISK_SIZE = 0x21c; // u32
export const HDR_HEAP_END_PTR = 0x224; // u16
export const HDR_CMD_LINE_PTR = 0x228; // u32
export const HDR_INITRD_ADDR_MAX = 0x22c; // u32: highest address the initrd may occupy
export const HDR_KERNEL_ALIGNMENT = 0x230; // u32
export const HDR_RELOCATABLE_KERNEL = 0x234; // u8
export const HDR_XLOADFLAGS = 0x236; // u16
export const HDR_CMDLINE_SIZE = 0x238; // u32: longest command line, NUL excluded
export const HDR_PREF_ADDRESS = 0x258; // u64
export const HDR_INIT_SIZE = 0x260; // u32: bytes the kernel needs from its load address to run

/** "HdrS" read as a little-endian u32. */
export const SETUP_HEADER_MAGIC = 0x5372_6448;
export const BOOT_FLAG_MAGIC = 0xaa55;
/** Oldest boot protocol we accept: 2.12 brought xloadflags (XLF_KERNEL_64). */
export const MIN_BOOT_PROTOCOL = 0x020c;

/** loadflags bit 0: the protected-mode code is loaded at 0x100000 or above (a bzImage). */
export const LOADFLAGS_LOADED_HIGH = 0x01;
/** loadflags bit 7: heap_end_ptr is valid. */
export const LOADFLAGS_CAN_USE_HEAP = 0x80;
/** xloadflags bit 0: the kernel has the 64-bit entry point at +0x200. */
export const XLF_KERNEL_64 = 0x0001;
/** xloadflags bit 1: kernel, boot_params, cmdline and ramdisk may sit above 4 GiB. */
export const XLF_CAN_BE_LOADED_ABOVE_4G = 0x0002;

const SECTOR_SIZE = 512;

// --- ELF64 ---

const ELF_MAGIC = 0x464c_457f; // "\x7fELF" as a little-endian u32
const ELFCLASS64 = 2;
const ELFDATA2LSB = 1;
const EM_X86_64 = 62;
const PT_LOAD = 1;
const ELF64_HEADER_SIZE = 64;
const ELF64_PHDR_SIZE = 56;

export interface LoadedKernel {
  readonly format: 'bzImage' | 'elf';
  /** Guest physical address of the 64-bit entry point: rip at boot. */
  readonly entry: number;
  /** Lowest guest physical address written. */
  readonly loadAddress: number;
  /**
   * First guest physical address the kernel does not need: load address +
   * init_size for a bzImage (it decompresses in place), end of the highest
   * segment for ELF. Nothing else (initrd) may be placed below it.
   */
  readonly kernelEnd: number;
  /**
   * The bzImage's setup header, file bytes [0x1f1, end of header), to be
   * copied into boot_params at 0x1f1. Null for ELF (boot-params.ts synthesizes one).
   */
  readonly setupHeader: Uint8Array | null;
}

export interface LoadKernelOptions {
  /** Override the load address of a relocatable bzImage (must honour its kernel_alignment). */
  readonly loadAddress?: number;
}

/** Loads `image` (the whole kernel file) into `memory`; detects the format. */
export function loadKernel(memory: GuestMemory, image: Uint8Array, options: LoadKernelOptions = {}): LoadedKernel {
  if (image.length >= 4 && readU32(image, 0) === ELF_MAGIC) return loadElfKernel(memory, image);
  return loadBzImage(memory, image, options);
}

/** Reads and checks a bzImage's setup header without touching guest memory. */
export interface BzImageInfo {
  readonly protocolVersion: number;
  readonly setupSize: number;
  readonly protectedModeSize: number;
  readonly loadflags: number;
  readonly xloadflags: number;
  readonly relocatable: boolean;
  readonly kernelAlignment: number;
  readonly prefAddress: number;
  readonly initSize: number;
  readonly initrdAddrMax: number;
  readonly cmdlineSize: number;
  readonly headerEnd: number;
}

export function parseBzImage(image: Uint8Array): BzImageInfo {
  if (image.length < HDR_HEADER + 4) {
    throw new KernelLoadError('bad-magic', `file of ${image.length} bytes is too short to be a kernel`);
  }
  if (readU32(image, HDR_HEADER) !== SETUP_HEADER_MAGIC || readU16(image, HDR_BOOT_FLAG) !== BOOT_FLAG_MAGIC) {
    throw new KernelLoadError('bad-magic', 'not a Linux kernel image (no "HdrS" setup header, no ELF magic)');
  }
  const headerEnd = HDR_HEADER + image[HDR_JUMP + 1]!;
  if (headerEnd > image.length) {
    throw new KernelLoadError('truncated', `setup header ends at 0x${hex(headerEnd)}, file has ${image.length} bytes`);
  }
  const protocolVersion = readU16(image, HDR_VERSION);
  if (protocolVersion < MIN_BOOT_PROTOCOL) {
    throw new KernelLoadError(
      'old-protocol',
      `boot protocol ${protocolText(protocolVersion)} is older than the required ${protocolText(MIN_BOOT_PROTOCOL)}`,
    );
  }
  if (headerEnd < HDR_INIT_SIZE + 4) {
    throw new KernelLoadError('truncated', `setup header ends at 0x${hex(headerEnd)}, before init_size`);
  }
  const loadflags = image[HDR_LOADFLAGS]!;
  if ((loadflags & LOADFLAGS_LOADED_HIGH) === 0) {
    throw new KernelLoadError('unsupported', 'a zImage (LOADED_HIGH clear), not a bzImage');
  }
  const xloadflags = readU16(image, HDR_XLOADFLAGS);
  if ((xloadflags & XLF_KERNEL_64) === 0) {
    throw new KernelLoadError('not-64-bit', 'xloadflags has no XLF_KERNEL_64: the kernel has no 64-bit entry point');
  }
  const setupSectors = image[HDR_SETUP_SECTS]! === 0 ? 4 : image[HDR_SETUP_SECTS]!;
  const setupSize = (setupSectors + 1) * SECTOR_SIZE;
  const protectedModeSize = readU32(image, HDR_SYSSIZE) * 16;
  if (protectedModeSize === 0) throw new KernelLoadError('truncated', 'syssize is 0: no protected-mode kernel');
  if (setupSize + protectedModeSize > image.length) {
    throw new KernelLoadError(
      'truncated',
      `header describes ${setupSize + protectedModeSize} bytes (setup ${setupSize} + kernel ${protectedModeSize}), file has ${image.length}`,
    );
  }
  const kernelAlignment = readU32(image, HDR_KERNEL_ALIGNMENT);
  const prefAddress = readU64(image, HDR_PREF_ADDRESS);
  return {
    protocolVersion,
    setupSize,
    protectedModeSize,
    loadflags,
    xloadflags,
    relocatable: image[HDR_RELOCATABLE_KERNEL]! !== 0,
    kernelAlignment,
    prefAddress,
    initSize: readU32(image, HDR_INIT_SIZE),
    initrdAddrMax: readU32(image, HDR_INITRD_ADDR_MAX),
    cmdlineSize: readU32(image, HDR_CMDLINE_SIZE),
    headerEnd,
  };
}

/**
 * Chooses where the protected-mode kernel goes. A non-relocatable kernel must
 * sit at pref_address. A relocatable one goes at pref_address too when that is
 * sane (Debian: 16 MiB, which is also our default), else at our default; in
 * both cases rounded up to kernel_alignment.
 */
export function chooseBzImageLoadAddress(info: BzImageInfo, requested?: number): number {
  const alignment = info.kernelAlignment;
  if (info.relocatable && alignment !== 0 && (alignment & (alignment - 1)) !== 0) {
    throw new KernelLoadError('unsupported', `kernel_alignment 0x${hex(alignment)} is not a power of two`);
  }
  if (!info.relocatable) {
    if (requested !== undefined && requested !== info.prefAddress) {
      throw new KernelLoadError(
        'unsupported',
        `kernel is not relocatable: it must load at 0x${hex(info.prefAddress)}, not 0x${hex(requested)}`,
      );
    }
    if (info.prefAddress < HIGH_MEMORY_START || !Number.isSafeInteger(info.prefAddress)) {
      throw new KernelLoadError('unsupported', `non-relocatable kernel wants 0x${hex(info.prefAddress)}`);
    }
    return info.prefAddress;
  }
  if (requested !== undefined) {
    if (!Number.isSafeInteger(requested) || requested < HIGH_MEMORY_START || (alignment > 0 && requested % alignment)) {
      throw new KernelLoadError(
        'unsupported',
        `load address 0x${hex(requested)} is below 1 MiB or not aligned to kernel_alignment 0x${hex(alignment)}`,
      );
    }
    return requested;
  }
  const preferred =
    Number.isSafeInteger(info.prefAddress) && info.prefAddress >= HIGH_MEMORY_START && info.prefAddress < MAX_GUEST_RAM
      ? info.prefAddress
      : KERNEL_LOAD_ADDRESS;
  return alignment > 1 ? Math.ceil(preferred / alignment) * alignment : preferred;
}

export function loadBzImage(memory: GuestMemory, image: Uint8Array, options: LoadKernelOptions = {}): LoadedKernel {
  const info = parseBzImage(image);
  const loadAddress = chooseBzImageLoadAddress(info, options.loadAddress);
  const needed = Math.max(info.initSize, info.protectedModeSize);
  const kernelEnd = loadAddress + needed;
  if (kernelEnd > memory.size) {
    throw new KernelLoadError(
      'too-big',
      `kernel needs 0x${hex(loadAddress)}–0x${hex(kernelEnd)} (init_size ${needed} bytes) but RAM ends at 0x${hex(memory.size)}`,
    );
  }
  memory.write(loadAddress, image.subarray(info.setupSize, info.setupSize + info.protectedModeSize));
  const headerEnd = Math.min(info.headerEnd, SETUP_HEADER_MAX_END);
  return {
    format: 'bzImage',
    entry: loadAddress + KERNEL_64BIT_ENTRY_OFFSET,
    loadAddress,
    kernelEnd,
    setupHeader: image.slice(SETUP_HEADER_OFFSET, headerEnd),
  };
}

interface ElfSegment {
  readonly offset: number;
  /** Virtual addresses of kernels live at 0xffffffff8…, beyond exact numbers: kept as bigint. */
  readonly vaddr: bigint;
  readonly paddr: number;
  readonly fileSize: number;
  readonly memSize: number;
}

export function loadElfKernel(memory: GuestMemory, image: Uint8Array): LoadedKernel {
  if (image.length < ELF64_HEADER_SIZE || readU32(image, 0) !== ELF_MAGIC) {
    throw new KernelLoadError('bad-magic', 'not an ELF file');
  }
  if (image[4] !== ELFCLASS64) throw new KernelLoadError('not-64-bit', 'ELF file is not ELF64');
  if (image[5] !== ELFDATA2LSB) throw new KernelLoadError('unsupported', 'ELF file is not little-endian');
  const machine = readU16(image, 0x12);
  if (machine !== EM_X86_64) throw new KernelLoadError('unsupported', `ELF machine ${machine} is not x86-64 (62)`);
  const entryAddress = readU64Big(image, 0x18);
  const phoff = readU64(image, 0x20);
  const phentsize = readU16(image, 0x36);
  const phnum = readU16(image, 0x38);
  if (phentsize < ELF64_PHDR_SIZE) throw new KernelLoadError('unsupported', `ELF phentsize ${phentsize} < 56`);
  if (!Number.isSafeInteger(phoff) || phoff + phnum * phentsize > image.length) {
    throw new KernelLoadError('truncated', 'ELF program headers lie beyond the end of the file');
  }

  const segments: ElfSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const at = phoff + i * phentsize;
    if (readU32(image, at) !== PT_LOAD) continue;
    const segment: ElfSegment = {
      offset: readU64(image, at + 0x08),
      vaddr: readU64Big(image, at + 0x10),
      paddr: readU64(image, at + 0x18),
      fileSize: readU64(image, at + 0x20),
      memSize: readU64(image, at + 0x28),
    };
    if (segment.fileSize > segment.memSize) {
      throw new KernelLoadError('unsupported', `ELF segment ${i} has filesz > memsz`);
    }
    if (!Number.isSafeInteger(segment.offset + segment.fileSize) || segment.offset + segment.fileSize > image.length) {
      throw new KernelLoadError('truncated', `ELF segment ${i} lies beyond the end of the file`);
    }
    if (segment.paddr < HIGH_MEMORY_START) {
      throw new KernelLoadError(
        'unsupported',
        `ELF segment ${i} at 0x${hex(segment.paddr)} would overwrite the boot structures below 1 MiB`,
      );
    }
    if (!Number.isSafeInteger(segment.paddr + segment.memSize) || segment.paddr + segment.memSize > memory.size) {
      throw new KernelLoadError(
        'too-big',
        `ELF segment ${i} needs 0x${hex(segment.paddr)}–0x${hex(segment.paddr + segment.memSize)} but RAM ends at 0x${hex(memory.size)}`,
      );
    }
    segments.push(segment);
  }
  if (segments.length === 0) throw new KernelLoadError('unsupported', 'ELF file has no PT_LOAD segment');

  const entry = physicalEntry(entryAddress, segments);
  for (const s of segments) {
    memory.write(s.paddr, image.subarray(s.offset, s.offset + s.fileSize));
    memory.fill(s.paddr + s.fileSize, s.memSize - s.fileSize);
  }
  return {
    format: 'elf',
    entry,
    loadAddress: Math.min(...segments.map((s) => s.paddr)),
    kernelEnd: Math.max(...segments.map((s) => s.paddr + s.memSize)),
    setupHeader: null,
  };
}

/**
 * vmlinux's e_entry is already physical (its linker script says
 * ENTRY(phys_startup_64)); other ELF kernels give a virtual entry, which we
 * translate through the segment containing it.
 */
function physicalEntry(entry: bigint, segments: readonly ElfSegment[]): number {
  for (const s of segments) {
    if (entry >= BigInt(s.paddr) && entry < BigInt(s.paddr + s.memSize)) return Number(entry);
  }
  for (const s of segments) {
    if (entry >= s.vaddr && entry < s.vaddr + BigInt(s.memSize)) return Number(entry - s.vaddr) + s.paddr;
  }
  throw new KernelLoadError('unsupported', `ELF entry 0x${entry.toString(16)} lies in no PT_LOAD segment`);
}

// --- little-endian readers over the file bytes (bounds are checked by the callers) ---

function readU16(bytes: Uint8Array, at: number): number {
  return bytes[at]! | (bytes[at + 1]! << 8);
}
function readU32(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0;
}
/** A u64 as a number; values ≥ 2^53 come back as Infinity so every range check on them fails. */
function readU64(bytes: Uint8Array, at: number): number {
  const value = readU32(bytes, at + 4) * 0x1_0000_0000 + readU32(bytes, at);
  return Number.isSafeInteger(value) ? value : Infinity;
}

function readU64Big(bytes: Uint8Array, at: number): bigint {
  return (BigInt(readU32(bytes, at + 4)) << 32n) | BigInt(readU32(bytes, at));
}

function hex(value: number): string {
  return Number.isFinite(value) ? value.toString(16) : 'ffffffffffffffff+';
}

function protocolText(version: number): string {
  return `${version >> 8}.${(version & 0xff).toString().padStart(2, '0')}`;
}
