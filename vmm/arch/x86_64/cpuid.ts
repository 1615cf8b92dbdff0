/**
 * CPUID as one vCPU sees it: the entries KVM_GET_SUPPORTED_CPUID returned,
 * normalised for this vCPU before KVM_SET_CPUID2.
 *
 * KVM's list says what the host can virtualise, not what our VM looks like:
 * it has no APIC id, no topology, and claims features we do not provide. We
 * describe one package with `vcpuCount` cores of one thread each, APIC id =
 * vCPU index, no PMU, no power management, no nested virtualisation, and we
 * set the hypervisor bit (without it Linux does not look for KVM's leaves,
 * finds no kvm-clock and falls back to PIT calibration, which stalls the boot).
 *
 * The common parts follow Firecracker's cpuid normalisation
 * (src/vmm/src/cpu_config/x86_64/cpuid/normalize.rs and its intel/amd files);
 * host-CPUID passthrough (brand string, AMD cache leaves) is left out: this is
 * a pure function of KVM's list.
 */

import { MAX_VCPUS } from './layout.js';

import type { CpuidEntry } from '../../kvm/structs.js';
export type { CpuidEntry };

/** kvm_cpuid_entry2.flags bit 0: `index` selects the subleaf. */
export const KVM_CPUID_FLAG_SIGNIFICANT_INDEX = 1;

// --- leaf numbers ---
export const LEAF_VENDOR = 0x0;
export const LEAF_FEATURES = 0x1;
export const LEAF_CACHE_PARAMS = 0x4;
export const LEAF_THERMAL_POWER = 0x6;
export const LEAF_EXTENDED_FEATURES = 0x7;
export const LEAF_PERF_MONITORING = 0xa;
export const LEAF_EXTENDED_TOPOLOGY = 0xb;
export const LEAF_EXTENDED_TOPOLOGY_V2 = 0x1f;
export const LEAF_EXT_MAX = 0x8000_0000;
export const LEAF_EXT_FEATURES = 0x8000_0001;
export const LEAF_EXT_ADDRESS_SIZES = 0x8000_0008;
export const LEAF_AMD_CACHE_TOPOLOGY = 0x8000_001d;
export const LEAF_AMD_EXTENDED_APIC_ID = 0x8000_001e;

// --- leaf 1 ---
/** CPUID.1:EBX[15:8]: CLFLUSH line size in 8-byte units. */
export const L1_EBX_CLFLUSH_SIZE = { shift: 8, width: 8 } as const;
/** CPUID.1:EBX[23:16]: addressable logical processor ids in the package (a power of two). */
export const L1_EBX_MAX_LOGICAL_IDS = { shift: 16, width: 8 } as const;
/** CPUID.1:EBX[31:24]: initial APIC id of this logical processor. */
export const L1_EBX_INITIAL_APIC_ID = { shift: 24, width: 8 } as const;
/** CPUID.1:ECX[5] VMX: Intel VT-x. Cleared: no nested virtualisation in a sandbox. */
export const L1_ECX_VMX = 1 << 5;
/** CPUID.1:ECX[15] PDCM: IA32_PERF_CAPABILITIES exists. Cleared: no PMU. */
export const L1_ECX_PDCM = 1 << 15;
/** CPUID.1:ECX[24] TSC-Deadline: the local APIC timer has TSC-deadline mode. */
export const L1_ECX_TSC_DEADLINE = 1 << 24;
/** CPUID.1:ECX[31] hypervisor present. Linux then reads the KVM leaves at 0x40000000 (kvm-clock). */
export const L1_ECX_HYPERVISOR = 0x8000_0000;
/** CPUID.1:EDX[28] HTT: EBX[23:16] is valid (more than one logical processor in the package). */
export const L1_EDX_HTT = 1 << 28;

// --- leaf 4 (Intel deterministic cache parameters, one subleaf per cache) ---
/** CPUID.4:EAX[4:0] cache type; 0 = no more caches. */
export const L4_EAX_CACHE_TYPE = { shift: 0, width: 5 } as const;
/** CPUID.4:EAX[7:5] cache level (1, 2, 3). */
export const L4_EAX_CACHE_LEVEL = { shift: 5, width: 3 } as const;
/** CPUID.4:EAX[25:14]: logical processors sharing this cache, minus 1. */
export const L4_EAX_SHARING_MINUS_1 = { shift: 14, width: 12 } as const;
/** CPUID.4:EAX[31:26]: processor cores in the package, minus 1. */
export const L4_EAX_CORES_MINUS_1 = { shift: 26, width: 6 } as const;

// --- leaf 6 (thermal and power management) ---
/** CPUID.6:EAX[2] ARAT: the APIC timer keeps running in deep C-states. Kept: without it Linux wants a broadcast timer. */
export const L6_EAX_ARAT = 1 << 2;

// --- leaf 7 subleaf 0 ---
/** CPUID.(7,0):ECX[5] WAITPKG (UMONITOR/UMWAIT/TPAUSE): would let the guest idle the physical CPU. Cleared (Intel). */
export const L7_ECX_WAITPKG = 1 << 5;
/** CPUID.(7,0):EDX[29] IA32_ARCH_CAPABILITIES. KVM sets it on AMD hosts, where the MSR does not exist. Cleared (AMD). */
export const L7_EDX_ARCH_CAPABILITIES = 1 << 29;

// --- leaf 0xB / 0x1F (extended topology) ---
/** CPUID.B:EAX[4:0]: right-shift of the x2APIC id to get the next level's id. */
export const LB_EAX_SHIFT = { shift: 0, width: 5 } as const;
/** CPUID.B:EBX[15:0]: logical processors at this level. */
export const LB_EBX_COUNT = { shift: 0, width: 16 } as const;
/** CPUID.B:ECX[7:0]: the subleaf number. */
export const LB_ECX_LEVEL_NUMBER = { shift: 0, width: 8 } as const;
/** CPUID.B:ECX[15:8]: level type. */
export const LB_ECX_LEVEL_TYPE = { shift: 8, width: 8 } as const;
export const TOPOLOGY_LEVEL_INVALID = 0;
export const TOPOLOGY_LEVEL_SMT = 1;
export const TOPOLOGY_LEVEL_CORE = 2;

// --- AMD extended leaves ---
/** CPUID.80000001:ECX[2] SVM: AMD-V. Cleared: no nested virtualisation. */
export const LX1_ECX_SVM = 1 << 2;
/** CPUID.80000001:ECX[22] TopologyExtensions: leaves 0x8000001D/0x8000001E are valid. */
export const LX1_ECX_TOPOEXT = 1 << 22;
/** CPUID.80000001:ECX[23] PerfCtrExtCore: AMD core performance counters. Cleared: no PMU. */
export const LX1_ECX_PERFCTR_CORE = 1 << 23;
/** CPUID.80000008:ECX[7:0] NC: cores in the package, minus 1. */
export const LX8_ECX_NC = { shift: 0, width: 8 } as const;
/** CPUID.80000008:ECX[15:12] ApicIdSize: bits of the APIC id that number cores in the package. */
export const LX8_ECX_APIC_ID_SIZE = { shift: 12, width: 4 } as const;
/** CPUID.8000001D:EAX[7:5]: cache level. */
export const LX1D_EAX_CACHE_LEVEL = { shift: 5, width: 3 } as const;
/** CPUID.8000001D:EAX[25:14]: logical processors sharing this cache, minus 1. */
export const LX1D_EAX_SHARING_MINUS_1 = { shift: 14, width: 12 } as const;
/** CPUID.8000001E:EBX[7:0] compute unit (core) id. */
export const LX1E_EBX_CORE_ID = { shift: 0, width: 8 } as const;
/** CPUID.8000001E:EBX[15:8]: threads per compute unit, minus 1. */
export const LX1E_EBX_THREADS_MINUS_1 = { shift: 8, width: 8 } as const;

export interface BitField {
  readonly shift: number;
  readonly width: number;
}

export function getField(value: number, field: BitField): number {
  return Math.floor((value >>> 0) / 2 ** field.shift) % 2 ** field.width;
}

export function setField(value: number, field: BitField, fieldValue: number): number {
  const max = 2 ** field.width;
  if (!Number.isInteger(fieldValue) || fieldValue < 0 || fieldValue >= max) {
    throw new RangeError(`value ${fieldValue} does not fit a ${field.width}-bit CPUID field`);
  }
  const mask = ((max - 1) * 2 ** field.shift) >>> 0;
  return ((value & ~mask) | (fieldValue * 2 ** field.shift)) >>> 0;
}

function setBit(value: number, mask: number, on: boolean): number {
  return (on ? value | mask : value & ~mask) >>> 0;
}

export type CpuVendor = 'intel' | 'amd' | 'other';

// Vendor strings as CPUID leaf 0 returns them in EBX, EDX, ECX.
const VENDOR_INTEL = [0x756e_6547, 0x4965_6e69, 0x6c65_746e] as const; // "Genu" "ineI" "ntel"
const VENDOR_AMD = [0x6874_7541, 0x6974_6e65, 0x444d_4163] as const; // "Auth" "enti" "cAMD"
const VENDOR_HYGON = [0x6f67_7948, 0x6e65_476e, 0x656e_6975] as const; // "Hygo" "nGen" "uine"

export function cpuVendor(entries: readonly CpuidEntry[]): CpuVendor {
  const leaf0 = entries.find((e) => e.function === LEAF_VENDOR);
  if (!leaf0) return 'other';
  const id = [leaf0.ebx >>> 0, leaf0.edx >>> 0, leaf0.ecx >>> 0];
  const is = (v: readonly number[]): boolean => v.every((word, i) => word === id[i]);
  if (is(VENDOR_INTEL)) return 'intel';
  if (is(VENDOR_AMD) || is(VENDOR_HYGON)) return 'amd';
  return 'other';
}

export interface CpuidNormalizeOptions {
  /** This vCPU's index, which is also its APIC id. */
  readonly vcpuIndex: number;
  readonly vcpuCount: number;
  /**
   * Whether KVM emulates the TSC-deadline timer (KVM_CAP_TSC_DEADLINE_TIMER).
   * true sets CPUID.1:ECX[24], false clears it, undefined keeps KVM's value.
   */
  readonly tscDeadlineTimer?: boolean;
}

export class CpuidError extends Error {
  constructor(message: string) {
    super(`cpuid: ${message}`);
    this.name = 'CpuidError';
  }
}

type MutableEntry = { -readonly [K in keyof CpuidEntry]: CpuidEntry[K] };

/** Bits needed to number `count` items (0 for one item). */
function bitsFor(count: number): number {
  return count <= 1 ? 0 : Math.ceil(Math.log2(count));
}

/** Returns the normalised entries for one vCPU; the input is not modified. */
export function normalizeCpuid(entries: readonly CpuidEntry[], options: CpuidNormalizeOptions): CpuidEntry[] {
  const { vcpuIndex, vcpuCount } = options;
  if (!Number.isInteger(vcpuCount) || vcpuCount < 1 || vcpuCount > MAX_VCPUS) {
    throw new CpuidError(`vCPU count ${vcpuCount} outside 1..${MAX_VCPUS}`);
  }
  if (!Number.isInteger(vcpuIndex) || vcpuIndex < 0 || vcpuIndex >= vcpuCount) {
    throw new CpuidError(`vCPU index ${vcpuIndex} outside 0..${vcpuCount - 1}`);
  }
  const vendor = cpuVendor(entries);
  const out: MutableEntry[] = entries.map((e) => ({ ...e }));
  const find = (fn: number, index = 0): MutableEntry | undefined =>
    out.find((e) => e.function === fn && (e.index === index || (e.flags & KVM_CPUID_FLAG_SIGNIFICANT_INDEX) === 0));
  const subleaves = (fn: number): MutableEntry[] =>
    out.filter((e) => e.function === fn).sort((a, b) => a.index - b.index);
  const insertAfter = (entry: MutableEntry): void => {
    let at = -1;
    out.forEach((e, i) => {
      if (e.function === entry.function) at = i;
    });
    out.splice(at < 0 ? out.length : at + 1, 0, entry);
  };

  const apicId = vcpuIndex;
  const coreBits = bitsFor(vcpuCount);

  // Leaf 1: identity of this logical processor and feature flags.
  const leaf1 = find(LEAF_FEATURES);
  if (!leaf1) throw new CpuidError('leaf 0x1 missing from the supported CPUID');
  leaf1.ebx = setField(leaf1.ebx, L1_EBX_CLFLUSH_SIZE, 8); // 64-byte lines
  leaf1.ebx = setField(leaf1.ebx, L1_EBX_MAX_LOGICAL_IDS, 1 << coreBits);
  leaf1.ebx = setField(leaf1.ebx, L1_EBX_INITIAL_APIC_ID, apicId);
  leaf1.ecx = setBit(leaf1.ecx, L1_ECX_HYPERVISOR, true);
  leaf1.ecx = setBit(leaf1.ecx, L1_ECX_PDCM, false);
  leaf1.ecx = setBit(leaf1.ecx, L1_ECX_VMX, false);
  if (options.tscDeadlineTimer !== undefined) {
    leaf1.ecx = setBit(leaf1.ecx, L1_ECX_TSC_DEADLINE, options.tscDeadlineTimer);
  }
  leaf1.edx = setBit(leaf1.edx, L1_EDX_HTT, vcpuCount > 1);

  // Leaf 4 (Intel): cache sharing and cores per package. Stops at the first null cache.
  if (vendor === 'intel') {
    for (const sub of subleaves(LEAF_CACHE_PARAMS)) {
      if (getField(sub.eax, L4_EAX_CACHE_TYPE) === 0) break;
      const level = getField(sub.eax, L4_EAX_CACHE_LEVEL);
      // L1/L2 belong to one core (one thread); L3 is shared by the whole package.
      sub.eax = setField(sub.eax, L4_EAX_SHARING_MINUS_1, level >= 3 ? vcpuCount - 1 : 0);
      sub.eax = setField(sub.eax, L4_EAX_CORES_MINUS_1, Math.min(vcpuCount - 1, 63));
    }
  }

  // Leaf 6: no turbo, HWP, energy-bias or thermal features; keep ARAT.
  const leaf6 = find(LEAF_THERMAL_POWER);
  if (leaf6) {
    leaf6.eax &= L6_EAX_ARAT;
    leaf6.ebx = 0;
    leaf6.ecx = 0;
    leaf6.edx = 0;
  }

  // Leaf 7: features that reach around the hypervisor or do not exist.
  const leaf7 = find(LEAF_EXTENDED_FEATURES, 0);
  if (leaf7 && vendor === 'intel') leaf7.ecx = setBit(leaf7.ecx, L7_ECX_WAITPKG, false);
  if (leaf7 && vendor === 'amd') leaf7.edx = setBit(leaf7.edx, L7_EDX_ARCH_CAPABILITIES, false);

  // Leaf 0xA: architectural performance monitoring. All zero = no PMU.
  const leafA = find(LEAF_PERF_MONITORING);
  if (leafA) leafA.eax = leafA.ebx = leafA.ecx = leafA.edx = 0;

  // Leaf 0xB: level 0 = SMT (one thread per core), level 1 = core (all vCPUs in one package).
  if (subleaves(LEAF_EXTENDED_TOPOLOGY).length > 0) {
    for (const index of [0, 1]) {
      if (!subleaves(LEAF_EXTENDED_TOPOLOGY).some((e) => e.index === index)) {
        // KVM stopped reporting subleaf 1 in Linux 6.2; the guest needs it to find the core level.
        insertAfter(blank(LEAF_EXTENDED_TOPOLOGY, index));
      }
    }
    for (const sub of subleaves(LEAF_EXTENDED_TOPOLOGY)) writeTopologyLevel(sub, apicId, vcpuCount, coreBits);
    // Leaf 0x1F is the preferred superset of 0xB; we have no other levels, so it mirrors 0xB.
    if (subleaves(LEAF_EXTENDED_TOPOLOGY_V2).length > 0) {
      for (const old of subleaves(LEAF_EXTENDED_TOPOLOGY_V2)) out.splice(out.indexOf(old), 1);
      for (const sub of subleaves(LEAF_EXTENDED_TOPOLOGY)) insertAfter({ ...sub, function: LEAF_EXTENDED_TOPOLOGY_V2 });
    }
  }

  // Extended leaves.
  const ext1 = find(LEAF_EXT_FEATURES);
  if (ext1) {
    ext1.ecx = setBit(ext1.ecx, LX1_ECX_SVM, false);
    ext1.ecx = setBit(ext1.ecx, LX1_ECX_PERFCTR_CORE, false);
  }
  if (vendor === 'amd') normalizeAmdTopology(find, subleaves, insertAfter, apicId, vcpuCount, coreBits);
  // Registers as unsigned 32-bit values, whatever sign the bit operations left them with.
  return out.map((x) => ({ ...x, eax: x.eax >>> 0, ebx: x.ebx >>> 0, ecx: x.ecx >>> 0, edx: x.edx >>> 0 }));
}

function blank(fn: number, index: number): MutableEntry {
  return { function: fn, index, flags: KVM_CPUID_FLAG_SIGNIFICANT_INDEX, eax: 0, ebx: 0, ecx: 0, edx: 0 };
}

function writeTopologyLevel(sub: MutableEntry, apicId: number, vcpuCount: number, coreBits: number): void {
  sub.flags |= KVM_CPUID_FLAG_SIGNIFICANT_INDEX;
  sub.eax = 0;
  sub.ebx = 0;
  sub.ecx = setField(0, LB_ECX_LEVEL_NUMBER, sub.index & 0xff);
  sub.edx = apicId >>> 0; // x2APIC id of this logical processor, at every level
  if (sub.index === 0) {
    sub.eax = setField(0, LB_EAX_SHIFT, 0); // one thread per core: no SMT bits in the APIC id
    sub.ebx = setField(0, LB_EBX_COUNT, 1);
    sub.ecx = setField(sub.ecx, LB_ECX_LEVEL_TYPE, TOPOLOGY_LEVEL_SMT);
  } else if (sub.index === 1) {
    sub.eax = setField(0, LB_EAX_SHIFT, coreBits); // shifting out the core bits leaves the package id (0)
    sub.ebx = setField(0, LB_EBX_COUNT, vcpuCount);
    sub.ecx = setField(sub.ecx, LB_ECX_LEVEL_TYPE, TOPOLOGY_LEVEL_CORE);
  } else {
    sub.ecx = setField(sub.ecx, LB_ECX_LEVEL_TYPE, TOPOLOGY_LEVEL_INVALID);
  }
}

function normalizeAmdTopology(
  find: (fn: number, index?: number) => MutableEntry | undefined,
  subleaves: (fn: number) => MutableEntry[],
  insertAfter: (entry: MutableEntry) => void,
  apicId: number,
  vcpuCount: number,
  coreBits: number,
): void {
  // 0x80000008: cores per package the legacy way (NC) and APIC-id bits per package.
  const ext8 = find(LEAF_EXT_ADDRESS_SIZES);
  if (ext8) {
    ext8.ecx = setField(ext8.ecx, LX8_ECX_NC, vcpuCount - 1);
    ext8.ecx = setField(ext8.ecx, LX8_ECX_APIC_ID_SIZE, coreBits);
  }

  const ext1 = find(LEAF_EXT_FEATURES);
  const maxExtended = find(LEAF_EXT_MAX)?.eax ?? 0;
  if (!ext1 || (ext1.ecx & LX1_ECX_TOPOEXT) === 0) return;
  if (maxExtended >>> 0 < LEAF_AMD_EXTENDED_APIC_ID) {
    // Topology extensions claimed but their leaves are out of range: do not claim them.
    ext1.ecx = setBit(ext1.ecx, LX1_ECX_TOPOEXT, false);
    return;
  }

  // 0x8000001D: per-cache sharing, as for Intel's leaf 4.
  for (const sub of subleaves(LEAF_AMD_CACHE_TOPOLOGY)) {
    if (getField(sub.eax, L4_EAX_CACHE_TYPE) === 0) break;
    const level = getField(sub.eax, LX1D_EAX_CACHE_LEVEL);
    sub.eax = setField(sub.eax, LX1D_EAX_SHARING_MINUS_1, level >= 3 ? vcpuCount - 1 : 0);
  }

  // 0x8000001E: extended APIC id, core id, one thread per core, one node. KVM reports it zeroed.
  let apicLeaf = find(LEAF_AMD_EXTENDED_APIC_ID);
  if (!apicLeaf) {
    apicLeaf = { ...blank(LEAF_AMD_EXTENDED_APIC_ID, 0), flags: 0 };
    insertAfter(apicLeaf);
  }
  apicLeaf.eax = apicId >>> 0;
  apicLeaf.ebx = setField(setField(0, LX1E_EBX_CORE_ID, apicId & 0xff), LX1E_EBX_THREADS_MINUS_1, 0);
  apicLeaf.ecx = 0; // node id 0, one node per processor
  apicLeaf.edx = 0;
}
