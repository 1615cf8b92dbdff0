/**
 * Guest RAM backed by a V8-owned SharedArrayBuffer.
 *
 * Why: Electron's V8 memory cage forbids ArrayBuffers over external memory
 * (an mmap'd region), but a buffer V8 allocated itself lives inside the cage
 * and works everywhere. Its page-aligned window is registered with KVM, so a
 * guest store is visible in the typed array with no copy, and worker threads
 * share it. See docs/guest-memory.md.
 *
 * The buffer must stay referenced for as long as KVM maps it: this object
 * holds it, and the VM holds this object for its whole life.
 */
import { addressOf } from '../kvm/libc.js';
import { GuestMemory } from './guest-memory.js';

export const PAGE_SIZE = 4096;

export interface GuestRam {
  readonly memory: GuestMemory;
  /** The host virtual address of guest physical address 0 (page-aligned). */
  readonly hostAddress: bigint;
  readonly size: number;
  /** The whole buffer (over-allocated by one page for alignment). */
  readonly buffer: SharedArrayBuffer;
  /** Byte offset of guest address 0 inside `buffer`. */
  readonly offset: number;
}

export class GuestRamError extends Error {
  override name = 'GuestRamError';
}

export function allocateGuestRam(size: number): GuestRam {
  if (!Number.isSafeInteger(size) || size <= 0 || size % PAGE_SIZE !== 0) {
    throw new GuestRamError(`guest RAM size must be a positive multiple of ${PAGE_SIZE} bytes, got ${size}`);
  }
  let buffer: SharedArrayBuffer;
  try {
    buffer = new SharedArrayBuffer(size + PAGE_SIZE);
  } catch (error) {
    throw new GuestRamError(
      `cannot allocate ${Math.round(size / 2 ** 20)} MiB of guest RAM: ${(error as Error).message}. Ask for less memory.`,
    );
  }
  const base = addressOf(new Uint8Array(buffer));
  const misalignment = Number(base % BigInt(PAGE_SIZE));
  const offset = misalignment === 0 ? 0 : PAGE_SIZE - misalignment;
  const bytes = new Uint8Array(buffer, offset, size);
  return { memory: new GuestMemory(bytes), hostAddress: base + BigInt(offset), size, buffer, offset };
}
