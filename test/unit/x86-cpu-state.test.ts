import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory } from '../../vmm/memory/guest-memory.js';
import {
  BOOT_CS_SELECTOR,
  BOOT_DS_SELECTOR,
  BOOT_GDT,
  BOOT_GDTR,
  BOOT_IDTR,
  BOOT_TSS_SELECTOR,
  gdtEntry,
  segmentFromGdtEntry,
  writeGdtAndIdt,
} from '../../vmm/arch/x86_64/gdt.js';
import { BOOT_MSRS, MSR_IA32_MISC_ENABLE, MSR_MTRR_DEF_TYPE } from '../../vmm/arch/x86_64/msrs.js';
import { identityPdEntry, writeIdentityPageTables } from '../../vmm/arch/x86_64/page-tables.js';
import { BOOT_FPU, bootRegs, bootSregs } from '../../vmm/arch/x86_64/regs.js';
import {
  BOOT_STACK_POINTER,
  GDT_ADDRESS,
  IDT_ADDRESS,
  PD_ADDRESS,
  PDPT_ADDRESS,
  PML4_ADDRESS,
  ZERO_PAGE_ADDRESS,
} from '../../vmm/arch/x86_64/layout.js';

const MiB = 1024 * 1024;

test('page tables identity-map the first 1 GiB with 2 MiB pages', () => {
  const mem = GuestMemory.allocate(2 * MiB);
  mem.fill(PD_ADDRESS, 4096, 0xff);
  const cr3 = writeIdentityPageTables(mem);
  assert.equal(cr3, PML4_ADDRESS);
  assert.equal(mem.readU64(PML4_ADDRESS), PDPT_ADDRESS | 0x3, 'PML4[0] → PDPT, present + writable');
  assert.equal(mem.readU64(PML4_ADDRESS + 8), 0);
  assert.equal(mem.readU64(PDPT_ADDRESS), PD_ADDRESS | 0x3, 'PDPT[0] → PD');
  assert.equal(mem.readU64(PDPT_ADDRESS + 8), 0, 'only the first GiB');
  for (let i = 0; i < 512; i++) {
    const pde = mem.readU64(PD_ADDRESS + i * 8);
    assert.equal(pde & 0x1, 1, 'present');
    assert.equal(pde & 0x2, 2, 'writable');
    assert.equal(pde & 0x80, 0x80, 'PS: a 2 MiB page');
    assert.equal(pde - (pde % 0x20_0000), i * 0x20_0000, 'identity');
  }
  assert.equal(mem.readU64(PD_ADDRESS + 511 * 8), 0x3fe0_0083);
  assert.equal(identityPdEntry(1), 0x20_0083);
  // Walk one address through the tables: 0x1234_5678 → itself.
  const va = 0x1234_5678;
  const pde = mem.readU64(PD_ADDRESS + Math.floor(va / 0x20_0000) * 8);
  assert.equal(pde - (pde % 0x20_0000) + (va % 0x20_0000), va);
});

test('the boot structures do not overlap each other or the zero page', () => {
  const ranges: [string, number, number][] = [
    ['GDT', GDT_ADDRESS, BOOT_GDTR.limit + 1],
    ['IDT', IDT_ADDRESS, BOOT_IDTR.limit + 1],
    ['zero page', ZERO_PAGE_ADDRESS, 4096],
    ['stack', BOOT_STACK_POINTER - 0xff0, 0x1000],
    ['PML4', PML4_ADDRESS, 4096],
    ['PDPT', PDPT_ADDRESS, 4096],
    ['PD', PD_ADDRESS, 4096],
  ];
  ranges.sort((a, b) => a[1] - b[1]);
  for (let i = 1; i < ranges.length; i++) {
    const [prevName, prevStart, prevSize] = ranges[i - 1]!;
    assert.ok(ranges[i]![1] >= prevStart + prevSize, `${ranges[i]![0]} overlaps ${prevName}`);
  }
});

test('GDT descriptors encode like the kernel GDT_ENTRY() macro', () => {
  assert.equal(gdtEntry(0xa09b, 0, 0xfffff), 0x00af_9b00_0000_ffffn);
  assert.equal(gdtEntry(0xc093, 0, 0xfffff), 0x00cf_9300_0000_ffffn);
  assert.equal(gdtEntry(0x808b, 0, 0xfffff), 0x008f_8b00_0000_ffffn);
  assert.equal(gdtEntry(0xa09b, 0x1234_5678, 0xabcde), 0x12aa_9b34_5678_bcden);
  const mem = GuestMemory.allocate(MiB);
  writeGdtAndIdt(mem);
  assert.equal(mem.readU64Big(GDT_ADDRESS), 0n);
  assert.equal(mem.readU64Big(GDT_ADDRESS + 8), 0n);
  assert.equal(mem.readU64Big(GDT_ADDRESS + BOOT_CS_SELECTOR), 0x00af_9b00_0000_ffffn);
  assert.equal(mem.readU64Big(GDT_ADDRESS + BOOT_DS_SELECTOR), 0x00cf_9300_0000_ffffn);
  assert.equal(mem.readU64Big(GDT_ADDRESS + BOOT_TSS_SELECTOR), 0x008f_8b00_0000_ffffn);
  assert.equal(mem.readU64Big(GDT_ADDRESS + BOOT_TSS_SELECTOR + 8), 0n);
  assert.equal(mem.readU64Big(IDT_ADDRESS), 0n);
  assert.equal(BOOT_GDTR.limit, BOOT_GDT.length * 8 - 1);
  assert.equal(BOOT_IDTR.limit, 7);
});

test("selectors match Linux's boot protocol (__BOOT_CS 0x10, __BOOT_DS 0x18)", () => {
  assert.equal(BOOT_CS_SELECTOR, 0x10);
  assert.equal(BOOT_DS_SELECTOR, 0x18);
  const cs = segmentFromGdtEntry(BOOT_GDT[2]!, 2);
  assert.deepEqual(cs, {
    base: 0,
    limit: 0xffff_ffff,
    selector: 0x10,
    type: 0xb,
    present: 1,
    dpl: 0,
    db: 0,
    s: 1,
    l: 1,
    g: 1,
    avl: 0,
    unusable: 0,
  });
  const ds = segmentFromGdtEntry(BOOT_GDT[3]!, 3);
  assert.deepEqual(ds, { ...cs, selector: 0x18, type: 0x3, db: 1, l: 0 });
  const tr = segmentFromGdtEntry(BOOT_GDT[4]!, 4);
  assert.deepEqual(tr, { ...cs, selector: 0x20, type: 0xb, s: 0, l: 0 });
  const nul = segmentFromGdtEntry(0n, 0);
  assert.equal(nul.unusable, 1);
  const odd = segmentFromGdtEntry(gdtEntry(0x4093, 0x1234_5678, 0xabcde), 7);
  assert.equal(odd.base, 0x1234_5678);
  assert.equal(odd.limit, 0xabcde, 'byte granular: limit not scaled');
  assert.equal(odd.selector, 56);
});

test('special registers put the CPU in long mode on the boot GDT and page tables', () => {
  const s = bootSregs();
  assert.equal(s.cs.selector, 0x10);
  for (const seg of [s.ds, s.es, s.fs, s.gs, s.ss]) assert.equal(seg.selector, 0x18);
  assert.equal(s.tr.selector, 0x20);
  assert.equal(s.cs.l, 1);
  assert.deepEqual(s.gdt, { base: GDT_ADDRESS, limit: 47 });
  assert.deepEqual(s.idt, { base: IDT_ADDRESS, limit: 7 });
  assert.equal(s.cr0, 0x8000_0011, 'PG | ET | PE');
  assert.ok(s.cr0 > 0);
  assert.equal(s.cr3, PML4_ADDRESS);
  assert.equal(s.cr4, 0x20, 'PAE');
  assert.equal(s.efer, 0x500, 'LME | LMA');
});

test('general registers: rip = entry, rsi = zero page, interrupts off', () => {
  const r = bootRegs(0x100_0200);
  assert.equal(r.rip, 0x100_0200);
  assert.equal(r.rsi, ZERO_PAGE_ADDRESS);
  assert.equal(r.rsp, BOOT_STACK_POINTER);
  assert.equal(r.rbp, BOOT_STACK_POINTER);
  assert.equal(r.rflags, 2);
  assert.equal(r.rsp % 16, 0);
  for (const key of ['rax', 'rbx', 'rcx', 'rdx', 'rdi', 'r8', 'r15'] as const) assert.equal(r[key], 0);
});

test('FPU and MSR boot values', () => {
  assert.deepEqual(BOOT_FPU, { fcw: 0x37f, mxcsr: 0x1f80 });
  const msrs = new Map(BOOT_MSRS.map((m) => [m.index, m.value]));
  assert.equal(msrs.size, 11);
  for (const index of [0x174, 0x175, 0x176, 0xc000_0081, 0xc000_0082, 0xc000_0083, 0xc000_0084, 0xc000_0102, 0x10]) {
    assert.equal(msrs.get(index), 0n, `MSR 0x${index.toString(16)}`);
  }
  assert.equal(msrs.get(MSR_IA32_MISC_ENABLE), 1n, 'fast strings');
  assert.equal(msrs.get(MSR_MTRR_DEF_TYPE), 0x806n, 'MTRRs enabled, default write-back');
});
