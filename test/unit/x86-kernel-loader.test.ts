import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory } from '../../vmm/memory/guest-memory.js';
import {
  KernelLoadError,
  SETUP_HEADER_OFFSET,
  XLF_CAN_BE_LOADED_ABOVE_4G,
  XLF_KERNEL_64,
  loadKernel,
} from '../../vmm/arch/x86_64/kernel-loader.js';
import type { KernelLoadErrorCode } from '../../vmm/arch/x86_64/kernel-loader.js';

const MiB = 1024 * 1024;

interface BzOptions {
  setupSects?: number;
  version?: number;
  loadflags?: number;
  xloadflags?: number;
  kernelBytes?: number;
  initSize?: number;
  relocatable?: boolean;
  alignment?: number;
  prefAddress?: number;
  truncateBy?: number;
  magic?: boolean;
  trailing?: number;
}

/** A synthetic bzImage: a real setup header, a patterned "protected-mode kernel". */
function bzImage(o: BzOptions = {}): Uint8Array {
  const setupSects = o.setupSects ?? 4;
  const kernelBytes = o.kernelBytes ?? 0x4000;
  const setupSize = ((setupSects === 0 ? 4 : setupSects) + 1) * 512;
  const file = new Uint8Array(setupSize + kernelBytes + (o.trailing ?? 0));
  const v = new DataView(file.buffer);
  v.setUint8(0x1f1, setupSects);
  v.setUint32(0x1f4, kernelBytes / 16, true); // syssize
  v.setUint16(0x1fe, 0xaa55, true);
  v.setUint8(0x200, 0xeb); // jmp
  v.setUint8(0x201, 0x6a); // header ends at 0x26c
  if (o.magic ?? true) v.setUint32(0x202, 0x53726448, true); // "HdrS"
  v.setUint16(0x206, o.version ?? 0x020f, true);
  v.setUint8(0x211, o.loadflags ?? 0x01);
  v.setUint32(0x22c, 0x7fffffff, true); // initrd_addr_max
  v.setUint32(0x230, o.alignment ?? 0x200000, true);
  v.setUint8(0x234, (o.relocatable ?? true) ? 1 : 0);
  v.setUint8(0x235, 21); // min_alignment
  v.setUint16(0x236, o.xloadflags ?? XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G, true);
  v.setUint32(0x238, 2047, true); // cmdline_size
  v.setBigUint64(0x258, BigInt(o.prefAddress ?? 0x1000000), true);
  v.setUint32(0x260, o.initSize ?? 0x20000, true);
  for (let i = 0; i < kernelBytes; i++) file[setupSize + i] = (i * 7 + 3) & 0xff;
  return o.truncateBy ? file.subarray(0, file.length - o.truncateBy) : file;
}

function assertLoadError(fn: () => unknown, code: KernelLoadErrorCode): void {
  assert.throws(fn, (error: unknown) => {
    assert.ok(error instanceof KernelLoadError, `expected KernelLoadError, got ${String(error)}`);
    assert.equal(error.code, code);
    return true;
  });
}

test('a bzImage is loaded at 16 MiB with its protected-mode part and entered at +0x200', () => {
  const mem = GuestMemory.allocate(32 * MiB);
  const image = bzImage({ setupSects: 4, kernelBytes: 0x4000, initSize: 0x30000, trailing: 100 });
  const kernel = loadKernel(mem, image);
  assert.equal(kernel.format, 'bzImage');
  assert.equal(kernel.loadAddress, 0x100_0000);
  assert.equal(kernel.entry, 0x100_0200);
  assert.equal(kernel.kernelEnd, 0x100_0000 + 0x30000, 'init_size reserves room to decompress');
  const setupSize = 5 * 512;
  assert.deepEqual(mem.read(0x100_0000, 0x4000), image.subarray(setupSize, setupSize + 0x4000));
  assert.equal(mem.readU8(0x100_0000 + 0x4000), 0, 'trailing bytes (signatures) are not loaded');
  assert.equal(mem.readU8(0x100_0000 - 1), 0, 'nothing written below the load address');
  // The header goes to boot_params as is: 0x1f1 up to 0x202 + byte at 0x201.
  assert.ok(kernel.setupHeader);
  assert.equal(kernel.setupHeader.length, 0x26c - SETUP_HEADER_OFFSET);
  assert.deepEqual(kernel.setupHeader, image.subarray(0x1f1, 0x26c));
});

test('setup_sects 0 means 4', () => {
  const mem = GuestMemory.allocate(32 * MiB);
  const image = bzImage({ setupSects: 0, kernelBytes: 0x100 });
  loadKernel(mem, image);
  assert.deepEqual(mem.read(0x100_0000, 0x100), image.subarray(5 * 512, 5 * 512 + 0x100));
});

test('the load address honours pref_address, kernel_alignment and relocatability', () => {
  const mem = GuestMemory.allocate(64 * MiB);
  // Relocatable: an unaligned pref_address is rounded up to kernel_alignment.
  assert.equal(loadKernel(mem, bzImage({ prefAddress: 0x110_0000, alignment: 0x20_0000 })).loadAddress, 0x120_0000);
  // Relocatable with a nonsense pref_address: our default 16 MiB.
  assert.equal(loadKernel(mem, bzImage({ prefAddress: 0x1000 })).loadAddress, 0x100_0000);
  // Not relocatable: exactly pref_address.
  assert.equal(loadKernel(mem, bzImage({ relocatable: false, prefAddress: 0x100_0000 })).loadAddress, 0x100_0000);
  assert.equal(loadKernel(mem, bzImage({ relocatable: false, prefAddress: 0x20_0000 })).entry, 0x20_0200);
  // An explicit load address must be aligned.
  assert.equal(loadKernel(mem, bzImage(), { loadAddress: 0x200_0000 }).loadAddress, 0x200_0000);
  assertLoadError(() => loadKernel(mem, bzImage(), { loadAddress: 0x200_1000 }), 'unsupported');
  assertLoadError(() => loadKernel(mem, bzImage({ relocatable: false }), { loadAddress: 0x200_0000 }), 'unsupported');
});

test('a file that is no kernel is refused with bad-magic', () => {
  const mem = GuestMemory.allocate(32 * MiB);
  assertLoadError(() => loadKernel(mem, bzImage({ magic: false })), 'bad-magic');
  assertLoadError(() => loadKernel(mem, new Uint8Array(100)), 'bad-magic');
  assertLoadError(() => loadKernel(mem, new TextEncoder().encode('#!/bin/sh\necho hello\n'.repeat(100))), 'bad-magic');
});

test('a truncated bzImage is refused before anything is written', () => {
  const mem = GuestMemory.allocate(32 * MiB);
  assertLoadError(() => loadKernel(mem, bzImage({ truncateBy: 1 })), 'truncated');
  assertLoadError(() => loadKernel(mem, bzImage().subarray(0, 0x210)), 'truncated');
  assert.equal(mem.readU32(0x100_0000), 0);
});

test('boot protocols older than 2.12 are refused', () => {
  const mem = GuestMemory.allocate(32 * MiB);
  assertLoadError(() => loadKernel(mem, bzImage({ version: 0x020b })), 'old-protocol');
  assertLoadError(() => loadKernel(mem, bzImage({ version: 0x0204 })), 'old-protocol');
  assert.equal(loadKernel(mem, bzImage({ version: 0x020c })).format, 'bzImage');
});

test('a kernel without a 64-bit entry point, or a zImage, is refused', () => {
  const mem = GuestMemory.allocate(32 * MiB);
  assertLoadError(() => loadKernel(mem, bzImage({ xloadflags: 0 })), 'not-64-bit');
  assertLoadError(() => loadKernel(mem, bzImage({ loadflags: 0 })), 'unsupported');
});

test('a kernel whose init_size does not fit in RAM is refused', () => {
  const mem = GuestMemory.allocate(32 * MiB);
  assertLoadError(() => loadKernel(mem, bzImage({ initSize: 16 * MiB + 1 })), 'too-big');
  assert.equal(loadKernel(mem, bzImage({ initSize: 16 * MiB })).kernelEnd, 32 * MiB);
  assertLoadError(() => loadKernel(GuestMemory.allocate(8 * MiB), bzImage()), 'too-big');
});

interface Segment {
  paddr: number;
  vaddr: bigint;
  data: Uint8Array;
  memSize: number;
}

/** A synthetic ELF64 x86-64 executable with PT_LOAD segments (and one PT_NOTE to skip). */
function elf(entry: bigint, segments: Segment[], o: { machine?: number; elfClass?: number } = {}): Uint8Array {
  const phoff = 64;
  const phnum = segments.length + 1;
  let dataAt = phoff + phnum * 56;
  const offsets = segments.map((s) => {
    const at = dataAt;
    dataAt += s.data.length;
    return at;
  });
  const file = new Uint8Array(dataAt);
  const v = new DataView(file.buffer);
  file.set([0x7f, 0x45, 0x4c, 0x46, o.elfClass ?? 2, 1, 1], 0);
  v.setUint16(0x10, 2, true); // ET_EXEC
  v.setUint16(0x12, o.machine ?? 62, true);
  v.setUint32(0x14, 1, true);
  v.setBigUint64(0x18, entry, true);
  v.setBigUint64(0x20, BigInt(phoff), true);
  v.setUint16(0x34, 64, true);
  v.setUint16(0x36, 56, true);
  v.setUint16(0x38, phnum, true);
  // Program header 0: PT_NOTE, must be ignored.
  v.setUint32(phoff, 4, true);
  segments.forEach((s, i) => {
    const at = phoff + (i + 1) * 56;
    v.setUint32(at, 1, true); // PT_LOAD
    v.setUint32(at + 4, 7, true);
    v.setBigUint64(at + 0x08, BigInt(offsets[i]!), true);
    v.setBigUint64(at + 0x10, s.vaddr, true);
    v.setBigUint64(at + 0x18, BigInt(s.paddr), true);
    v.setBigUint64(at + 0x20, BigInt(s.data.length), true);
    v.setBigUint64(at + 0x28, BigInt(s.memSize), true);
    file.set(s.data, offsets[i]!);
  });
  return file;
}

const KERNEL_VIRT = 0xffff_ffff_8100_0000n;

test('an ELF vmlinux is loaded by physical address, with its bss zeroed', () => {
  const mem = GuestMemory.allocate(32 * MiB);
  mem.fill(0x100_0000, 0x3000, 0xee); // garbage where the bss will be
  const text = Uint8Array.from({ length: 0x100 }, (_, i) => i);
  const data = Uint8Array.from({ length: 0x80 }, () => 0x55);
  const image = elf(0x100_0000n, [
    { paddr: 0x100_0000, vaddr: KERNEL_VIRT, data: text, memSize: 0x200 },
    { paddr: 0x100_2000, vaddr: KERNEL_VIRT + 0x2000n, data, memSize: 0x1000 },
  ]);
  const kernel = loadKernel(mem, image);
  assert.equal(kernel.format, 'elf');
  assert.equal(kernel.entry, 0x100_0000, 'vmlinux e_entry is already physical');
  assert.equal(kernel.loadAddress, 0x100_0000);
  assert.equal(kernel.kernelEnd, 0x100_3000);
  assert.equal(kernel.setupHeader, null);
  assert.deepEqual(mem.read(0x100_0000, 0x100), text);
  assert.deepEqual(mem.read(0x100_0100, 0x100), new Uint8Array(0x100), 'bss zeroed');
  assert.deepEqual(mem.read(0x100_2000, 0x80), data);
  assert.deepEqual(mem.read(0x100_2080, 0xf80), new Uint8Array(0xf80));
  assert.equal(mem.readU8(0x100_0200), 0xee, 'bytes between segments untouched');
});

test('a virtual ELF entry is translated to its physical address', () => {
  const mem = GuestMemory.allocate(32 * MiB);
  const image = elf(KERNEL_VIRT + 0x10n, [
    { paddr: 0x100_0000, vaddr: KERNEL_VIRT, data: new Uint8Array(64), memSize: 64 },
  ]);
  assert.equal(loadKernel(mem, image).entry, 0x100_0010);
  const outside = elf(0x1234n, [{ paddr: 0x100_0000, vaddr: KERNEL_VIRT, data: new Uint8Array(64), memSize: 64 }]);
  assertLoadError(() => loadKernel(mem, outside), 'unsupported');
});

test('bad ELF kernels are refused with typed errors', () => {
  const mem = GuestMemory.allocate(32 * MiB);
  const seg = (paddr: number, memSize = 64): Segment => ({
    paddr,
    vaddr: BigInt(paddr),
    data: new Uint8Array(64),
    memSize,
  });
  assertLoadError(() => loadKernel(mem, elf(0x100_0000n, [seg(0x100_0000)], { elfClass: 1 })), 'not-64-bit');
  assertLoadError(() => loadKernel(mem, elf(0x100_0000n, [seg(0x100_0000)], { machine: 3 })), 'unsupported');
  assertLoadError(() => loadKernel(mem, elf(0x8000n, [seg(0x8000)])), 'unsupported');
  assertLoadError(() => loadKernel(mem, elf(0x1f0_0000n, [seg(0x1f0_0000, 2 * MiB)])), 'too-big');
  const truncated = elf(0x100_0000n, [seg(0x100_0000)]);
  assertLoadError(() => loadKernel(mem, truncated.subarray(0, truncated.length - 1)), 'truncated');
  assertLoadError(() => loadKernel(mem, elf(0x100_0000n, [])), 'unsupported');
});
