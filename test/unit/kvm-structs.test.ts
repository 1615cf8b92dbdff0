import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SIZEOF, KVM_RUN, KVM_SET_USER_MEMORY_REGION, KVM_GET_SREGS, KVM_SET_CPUID2 } from '../../vmm/kvm/constants.js';
import {
  REG_NAMES,
  decodeCpuid,
  decodeRegs,
  decodeSregs,
  encodeCpuid,
  encodeFpu,
  encodeMsrs,
  encodeRegs,
  encodeSregs,
  encodeUserMemoryRegion,
  type Regs,
  type Segment,
  type Sregs,
} from '../../vmm/kvm/structs.js';

test('ioctl numbers match linux/kvm.h', () => {
  // Values as the C headers compute them (_IO/_IOW/_IOR with KVMIO 0xAE).
  assert.equal(KVM_RUN, 0xae80);
  assert.equal(KVM_SET_USER_MEMORY_REGION, 0x4020ae46);
  assert.equal(KVM_GET_SREGS, 0x8138ae83);
  assert.equal(KVM_SET_CPUID2, 0x4008ae90);
});

test('kvm_regs round-trips every register, in header order', () => {
  const regs = Object.fromEntries(REG_NAMES.map((name, i) => [name, BigInt(i + 1) << 40n])) as Regs;
  const bytes = encodeRegs(regs);
  assert.equal(bytes.length, SIZEOF.regs);
  assert.deepEqual(decodeRegs(bytes), regs);
  // rip is the 17th u64.
  assert.equal(new DataView(bytes.buffer).getBigUint64(16 * 8, true), 17n << 40n);
});

test('kvm_sregs round-trips segments, tables and control registers at their offsets', () => {
  const segment = (n: number): Segment => ({
    base: BigInt(n) * 0x1000n,
    limit: 0xfffff,
    selector: n * 8,
    type: 11,
    present: 1,
    dpl: 0,
    db: 0,
    s: 1,
    l: 1,
    g: 1,
    avl: 0,
    unusable: 0,
  });
  const sregs: Sregs = {
    cs: segment(2),
    ds: segment(3),
    es: segment(3),
    fs: segment(3),
    gs: segment(3),
    ss: segment(3),
    tr: segment(4),
    ldt: segment(0),
    gdt: { base: 0x500n, limit: 47 },
    idt: { base: 0x540n, limit: 7 },
    cr0: 0x80000011n,
    cr2: 0n,
    cr3: 0x9000n,
    cr4: 0x20n,
    cr8: 0n,
    efer: 0x500n,
    apicBase: 0xfee00900n,
    interruptBitmap: [0n, 0n, 0n, 1n],
  };
  const bytes = encodeSregs(sregs);
  assert.equal(bytes.length, SIZEOF.sregs);
  assert.deepEqual(decodeSregs(bytes), sregs);
  const view = new DataView(bytes.buffer);
  assert.equal(view.getBigUint64(8 * 24 + 2 * 16 + 2 * 8, true), 0x9000n, 'cr3 after 8 segments, 2 tables, cr0, cr2');
  assert.equal(view.getUint16(12, true), 0x10, 'cs.selector');
});

test('kvm_fpu, kvm_msrs, kvm_cpuid2 and the memory region use the header layout', () => {
  const fpu = new DataView(encodeFpu({ fcw: 0x37f, mxcsr: 0x1f80 }).buffer);
  assert.equal(fpu.byteLength, SIZEOF.fpu);
  assert.equal(fpu.getUint16(128, true), 0x37f);
  assert.equal(fpu.getUint32(408, true), 0x1f80);

  const msrs = new DataView(encodeMsrs([{ index: 0x2ff, value: 0x806n }]).buffer);
  assert.equal(msrs.getUint32(0, true), 1);
  assert.equal(msrs.getUint32(8, true), 0x2ff);
  assert.equal(msrs.getBigUint64(16, true), 0x806n);

  const entries = [{ function: 1, index: 0, flags: 0, eax: 1, ebx: 2, ecx: 0x80000000, edx: 4 }];
  const cpuid = encodeCpuid(entries);
  assert.equal(cpuid.length, SIZEOF.cpuid2Header + SIZEOF.cpuidEntry2);
  assert.deepEqual(decodeCpuid(cpuid), entries);

  const region = new DataView(encodeUserMemoryRegion(0, 0x100000, 0x200000, 0x7f00_0000_0000n).buffer);
  assert.equal(region.getBigUint64(8, true), 0x100000n);
  assert.equal(region.getBigUint64(16, true), 0x200000n);
  assert.equal(region.getBigUint64(24, true), 0x7f00_0000_0000n);
});
