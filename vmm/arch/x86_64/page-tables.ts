/**
 * The boot page tables: an identity map of the first 1 GiB with 2 MiB pages,
 * as the 64-bit boot protocol requires (the kernel, zero page and command line
 * must be identity-mapped at entry). Linux replaces them within microseconds.
 *
 *   CR3 → PML4[0] → PDPT[0] → PD[0..511], PD[i] maps [i·2 MiB, (i+1)·2 MiB)
 */

import type { GuestMemory } from '../../memory/guest-memory.js';
import { IDENTITY_MAPPED_SIZE, PAGE_SIZE, PD_ADDRESS, PDPT_ADDRESS, PML4_ADDRESS } from './layout.js';

/** Page-table entry bit 0: the entry is valid. */
export const PTE_PRESENT = 1 << 0;
/** Bit 1: writes allowed. */
export const PTE_WRITABLE = 1 << 1;
/** Bit 7 in a page-directory entry: it maps a 2 MiB page instead of pointing to a page table. */
export const PTE_PAGE_SIZE = 1 << 7;

/** Bytes mapped by one page-directory entry with PS set. */
export const LARGE_PAGE_SIZE = 2 * 1024 * 1024;
/** Entries in one 4 KiB table. */
export const ENTRIES_PER_TABLE = 512;

/** Value of PD entry `index`: 2 MiB page at index · 2 MiB, present, writable, PS. */
export function identityPdEntry(index: number): number {
  return index * LARGE_PAGE_SIZE + (PTE_PRESENT | PTE_WRITABLE | PTE_PAGE_SIZE);
}

/** Writes PML4, PDPT and PD. Returns the value for CR3 (the PML4's address). */
export function writeIdentityPageTables(memory: GuestMemory): number {
  const pdEntries = IDENTITY_MAPPED_SIZE / LARGE_PAGE_SIZE;
  if (pdEntries > ENTRIES_PER_TABLE) throw new RangeError('identity map larger than one page directory');
  for (const table of [PML4_ADDRESS, PDPT_ADDRESS, PD_ADDRESS]) memory.fill(table, PAGE_SIZE);
  memory.writeU64(PML4_ADDRESS, PDPT_ADDRESS | PTE_PRESENT | PTE_WRITABLE);
  memory.writeU64(PDPT_ADDRESS, PD_ADDRESS | PTE_PRESENT | PTE_WRITABLE);
  for (let i = 0; i < pdEntries; i++) memory.writeU64(PD_ADDRESS + i * 8, identityPdEntry(i));
  return PML4_ADDRESS;
}
