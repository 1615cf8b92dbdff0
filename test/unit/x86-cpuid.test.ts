import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  CpuidError,
  KVM_CPUID_FLAG_SIGNIFICANT_INDEX,
  L1_ECX_HYPERVISOR,
  L1_ECX_TSC_DEADLINE,
  L1_ECX_VMX,
  L6_EAX_ARAT,
  LX1_ECX_SVM,
  LX1_ECX_TOPOEXT,
  cpuVendor,
  getField,
  normalizeCpuid,
  setField,
} from '../../vmm/arch/x86_64/cpuid.js';
import type { CpuidEntry } from '../../vmm/arch/x86_64/cpuid.js';

const SIG = KVM_CPUID_FLAG_SIGNIFICANT_INDEX;

function e(fn: number, index: number, regs: Partial<CpuidEntry> = {}, flags = 0): CpuidEntry {
  return { function: fn, index, flags, eax: 0, ebx: 0, ecx: 0, edx: 0, ...regs };
}

/** Roughly what KVM_GET_SUPPORTED_CPUID returns on an Intel host (Linux ≥ 6.2: leaf 0xB subleaf 0 only). */
function intelSupported(): CpuidEntry[] {
  return [
    e(0x0, 0, { eax: 0x1f, ebx: 0x756e6547, edx: 0x49656e69, ecx: 0x6c65746e }),
    e(0x1, 0, { eax: 0x000906ea, ebx: 0x00100800, ecx: 0xf7fa3203 | L1_ECX_VMX | (1 << 15), edx: 0x0f8bfbff }),
    e(0x4, 0, { eax: 0x1c004121 }, SIG), // L1d
    e(0x4, 1, { eax: 0x1c004122 }, SIG), // L1i
    e(0x4, 2, { eax: 0x1c004143 }, SIG), // L2
    e(0x4, 3, { eax: 0x1c03c163 }, SIG), // L3, shared by 16
    e(0x4, 4, {}, SIG), // no more caches
    e(0x6, 0, { eax: 0x4 | 0x2 | 0x80, ecx: 0x9 }),
    e(0x7, 0, { ebx: 0x029c6fbf, ecx: 0x40000020 | (1 << 5), edx: 0xbc000400 | (1 << 29) }, SIG),
    e(0xa, 0, { eax: 0x07300402, edx: 0x603 }),
    e(0xb, 0, { eax: 1, ebx: 2, ecx: 0x100, edx: 7 }, SIG),
    e(0x1f, 0, { eax: 1, ebx: 2, ecx: 0x100, edx: 7 }, SIG),
    e(0x1f, 1, { eax: 4, ebx: 8, ecx: 0x201, edx: 7 }, SIG),
    e(0x1f, 2, { eax: 6, ebx: 16, ecx: 0x502, edx: 7 }, SIG),
    e(0x4000_0000, 0, { eax: 0x4000_0001, ebx: 0x4b4d564b, ecx: 0x564b4d56, edx: 0x4d }),
    e(0x4000_0001, 0, { eax: 0x01007afb }),
    e(0x8000_0000, 0, { eax: 0x8000_0008 }),
    e(0x8000_0001, 0, { ecx: 0x121, edx: 0x2c100800 }),
    e(0x8000_0008, 0, { eax: 0x3027 }),
  ];
}

/** Roughly what KVM reports on an AMD EPYC host (the lab's L1: EPYC-Rome with SVM). */
function amdSupported(): CpuidEntry[] {
  return [
    e(0x0, 0, { eax: 0x10, ebx: 0x68747541, edx: 0x69746e65, ecx: 0x444d4163 }),
    e(0x1, 0, { eax: 0x00830f10, ebx: 0x00040800, ecx: 0xf6d83203, edx: 0x178bfbff }),
    e(0x6, 0, { eax: 0x4, ecx: 0x1 }),
    e(0x7, 0, { ebx: 0x219c91a9, ecx: 0x4, edx: 1 << 29 }, SIG),
    e(0xa, 0, {}),
    e(0x4000_0000, 0, { eax: 0x4000_0001, ebx: 0x4b4d564b, ecx: 0x564b4d56, edx: 0x4d }),
    e(0x8000_0000, 0, { eax: 0x8000_001f }),
    e(0x8000_0001, 0, { ecx: 0x75c237ff | LX1_ECX_SVM | LX1_ECX_TOPOEXT | (1 << 23), edx: 0x2fd3fbff }),
    e(0x8000_0008, 0, { eax: 0x3030, ecx: 0x400f }),
    e(0x8000_001d, 0, { eax: 0x00004121 }, SIG), // L1d
    e(0x8000_001d, 1, { eax: 0x00004122 }, SIG), // L1i
    e(0x8000_001d, 2, { eax: 0x00004143 }, SIG), // L2
    e(0x8000_001d, 3, { eax: 0x0001c163 }, SIG), // L3
    e(0x8000_001d, 4, {}, SIG),
    e(0x8000_001e, 0, {}),
  ];
}

function get(entries: readonly CpuidEntry[], fn: number, index = 0): CpuidEntry {
  const found = entries.find((x) => x.function === fn && x.index === index);
  assert.ok(found, `leaf 0x${fn.toString(16)}.${index} present`);
  return found;
}

test('bit-field helpers', () => {
  assert.equal(setField(0xffff_ffff, { shift: 24, width: 8 }, 3), 0x03ff_ffff);
  assert.equal(getField(0x03ff_ffff, { shift: 24, width: 8 }), 3);
  assert.equal(setField(0, { shift: 14, width: 12 }, 0xfff), 0x03ff_c000);
  assert.throws(() => setField(0, { shift: 0, width: 4 }, 16), RangeError);
});

test('vendor detection from leaf 0', () => {
  assert.equal(cpuVendor(intelSupported()), 'intel');
  assert.equal(cpuVendor(amdSupported()), 'amd');
  assert.equal(cpuVendor([]), 'other');
});

test('leaf 1: hypervisor bit, APIC id, logical count, CLFLUSH, HTT, no PDCM/VMX', () => {
  const input = intelSupported();
  const before = JSON.stringify(input);
  const out = normalizeCpuid(input, { vcpuIndex: 2, vcpuCount: 3 });
  assert.equal(JSON.stringify(input), before, 'input not modified');
  const leaf1 = get(out, 1);
  assert.ok(leaf1.ecx & L1_ECX_HYPERVISOR, 'hypervisor bit (31) set: Linux finds kvm-clock');
  assert.equal(leaf1.ecx >>> 31, 1);
  assert.equal(leaf1.ebx >>> 24, 2, 'initial APIC id = vCPU index');
  assert.equal((leaf1.ebx >>> 16) & 0xff, 4, 'addressable ids: next power of two ≥ 3');
  assert.equal((leaf1.ebx >>> 8) & 0xff, 8, 'CLFLUSH 64 bytes');
  assert.equal(leaf1.ebx & 0xff, 0, 'brand index kept');
  assert.equal((leaf1.edx >>> 28) & 1, 1, 'HTT with several vCPUs');
  assert.equal((leaf1.ecx >>> 15) & 1, 0, 'no PDCM');
  assert.equal((leaf1.ecx >>> 5) & 1, 0, 'no VMX');
  assert.equal(leaf1.eax, 0x000906ea, 'signature kept');

  const single = get(normalizeCpuid(input, { vcpuIndex: 0, vcpuCount: 1 }), 1);
  assert.equal((single.edx >>> 28) & 1, 0, 'no HTT with one vCPU');
  assert.equal((single.ebx >>> 16) & 0xff, 1);
});

test('leaf 1 TSC-deadline follows the KVM capability when given', () => {
  const input = intelSupported().map((x) =>
    x.function === 1 ? { ...x, ecx: (x.ecx & ~L1_ECX_TSC_DEADLINE) >>> 0 } : x,
  );
  assert.equal(input[1]!.ecx & L1_ECX_TSC_DEADLINE, 0);
  const kept = get(normalizeCpuid(input, { vcpuIndex: 0, vcpuCount: 1 }), 1);
  assert.equal(kept.ecx & L1_ECX_TSC_DEADLINE, 0, 'undefined keeps KVM value');
  const on = get(normalizeCpuid(input, { vcpuIndex: 0, vcpuCount: 1, tscDeadlineTimer: true }), 1);
  assert.ok(on.ecx & L1_ECX_TSC_DEADLINE);
  const withBit = input.map((x) => (x.function === 1 ? { ...x, ecx: (x.ecx | L1_ECX_TSC_DEADLINE) >>> 0 } : x));
  const off = get(normalizeCpuid(withBit, { vcpuIndex: 0, vcpuCount: 1, tscDeadlineTimer: false }), 1);
  assert.equal(off.ecx & L1_ECX_TSC_DEADLINE, 0);
});

test('leaf 4 (Intel): caches per core, L3 per package, cores per package', () => {
  const out = normalizeCpuid(intelSupported(), { vcpuIndex: 0, vcpuCount: 4 });
  for (const index of [0, 1, 2]) {
    const eax = get(out, 4, index).eax;
    assert.equal((eax >>> 14) & 0xfff, 0, `cache ${index}: one thread`);
    assert.equal(eax >>> 26, 3, 'cores per package - 1');
    assert.equal(eax & 0x3fff, get(intelSupported(), 4, index).eax & 0x3fff, 'type/level bits kept');
  }
  assert.equal((get(out, 4, 3).eax >>> 14) & 0xfff, 3, 'L3 shared by all 4');
  assert.equal(get(out, 4, 4).eax, 0, 'terminator untouched');
});

test('leaf 6 keeps only ARAT; leaf 0xA (PMU) is zeroed; leaf 7 loses WAITPKG', () => {
  const out = normalizeCpuid(intelSupported(), { vcpuIndex: 0, vcpuCount: 1 });
  const leaf6 = get(out, 6);
  assert.equal(leaf6.eax, L6_EAX_ARAT, 'no turbo (bit 1), no HWP (bit 7); ARAT (bit 2) kept');
  assert.equal(leaf6.ecx, 0, 'no energy-perf bias');
  const leafA = get(out, 0xa);
  assert.deepEqual([leafA.eax, leafA.ebx, leafA.ecx, leafA.edx], [0, 0, 0, 0]);
  const leaf7 = get(out, 7);
  assert.equal((leaf7.ecx >>> 5) & 1, 0, 'WAITPKG cleared');
  assert.equal((leaf7.edx >>> 29) & 1, 1, 'ARCH_CAPABILITIES kept on Intel');
  assert.equal(get(out, 0x4000_0001).eax, 0x01007afb, 'KVM paravirt features kept');
});

test('leaf 0xB: SMT and core levels with the x2APIC id, subleaf 1 added', () => {
  const out = normalizeCpuid(intelSupported(), { vcpuIndex: 5, vcpuCount: 6 });
  const smt = get(out, 0xb, 0);
  assert.deepEqual(
    { eax: smt.eax, ebx: smt.ebx, ecx: smt.ecx, edx: smt.edx, flags: smt.flags },
    { eax: 0, ebx: 1, ecx: 0x100, edx: 5, flags: SIG },
  );
  const core = get(out, 0xb, 1);
  assert.deepEqual(
    { eax: core.eax, ebx: core.ebx, ecx: core.ecx, edx: core.edx, flags: core.flags },
    { eax: 3, ebx: 6, ecx: 0x201, edx: 5, flags: SIG },
    'shift 3 (8 ids ≥ 6 vCPUs), 6 logical processors, level 1 type core',
  );
  // 0x1F mirrors 0xB; the host's extra die level is gone.
  const v2 = out.filter((x) => x.function === 0x1f);
  assert.equal(v2.length, 2);
  assert.deepEqual(
    v2.map((x) => [x.index, x.eax, x.ebx, x.ecx, x.edx]),
    [
      [0, 0, 1, 0x100, 5],
      [1, 3, 6, 0x201, 5],
    ],
  );
  // Entries of one leaf stay together.
  const order = out.map((x) => x.function);
  assert.equal(order.lastIndexOf(0xb) - order.indexOf(0xb), 1);
});

test('AMD: topology leaves, no SVM, no PMU, no ARCH_CAPABILITIES', () => {
  const out = normalizeCpuid(amdSupported(), { vcpuIndex: 1, vcpuCount: 2 });
  const ext1 = get(out, 0x8000_0001);
  assert.equal(ext1.ecx & LX1_ECX_SVM, 0, 'no nested SVM');
  assert.equal((ext1.ecx >>> 23) & 1, 0, 'no core perf counters');
  assert.ok(ext1.ecx & LX1_ECX_TOPOEXT, 'topology extensions kept: 0x8000001D/1E are filled in');
  const ext8 = get(out, 0x8000_0008);
  assert.equal(ext8.ecx & 0xff, 1, 'NC = cores - 1');
  assert.equal((ext8.ecx >>> 12) & 0xf, 1, 'ApicIdSize: 1 bit for 2 cores');
  assert.equal(ext8.eax, 0x3030, 'address sizes kept');
  assert.equal((get(out, 0x8000_001d, 2).eax >>> 14) & 0xfff, 0, 'L2 per core');
  assert.equal((get(out, 0x8000_001d, 3).eax >>> 14) & 0xfff, 1, 'L3 shared by both');
  const ext1e = get(out, 0x8000_001e);
  assert.equal(ext1e.eax, 1, 'extended APIC id');
  assert.equal(ext1e.ebx, 1, 'core id 1, one thread per core');
  assert.equal(ext1e.ecx, 0, 'node 0');
  assert.equal((get(out, 7).edx >>> 29) & 1, 0, 'ARCH_CAPABILITIES cleared on AMD');
  assert.ok(get(out, 1).ecx & L1_ECX_HYPERVISOR);
  assert.equal(get(out, 1).ebx >>> 24, 1);
  assert.equal(get(out, 6).eax, L6_EAX_ARAT);
});

test('AMD: TOPOEXT without the leaves in range is withdrawn', () => {
  const input = amdSupported().map((x) => (x.function === 0x8000_0000 ? { ...x, eax: 0x8000_0008 } : x));
  const out = normalizeCpuid(input, { vcpuIndex: 0, vcpuCount: 1 });
  assert.equal(get(out, 0x8000_0001).ecx & LX1_ECX_TOPOEXT, 0);
});

test('AMD: a missing 0x8000001E is added when TOPOEXT stays', () => {
  const input = amdSupported().filter((x) => x.function !== 0x8000_001e);
  const out = normalizeCpuid(input, { vcpuIndex: 1, vcpuCount: 2 });
  assert.equal(get(out, 0x8000_001e).eax, 1);
});

test('bad vCPU numbers and a list without leaf 1 are refused', () => {
  assert.throws(() => normalizeCpuid(intelSupported(), { vcpuIndex: 2, vcpuCount: 2 }), CpuidError);
  assert.throws(() => normalizeCpuid(intelSupported(), { vcpuIndex: 0, vcpuCount: 0 }), CpuidError);
  assert.throws(() => normalizeCpuid(intelSupported(), { vcpuIndex: 0, vcpuCount: 129 }), CpuidError);
  assert.throws(() => normalizeCpuid([e(0, 0)], { vcpuIndex: 0, vcpuCount: 1 }), CpuidError);
});
