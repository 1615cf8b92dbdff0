/**
 * /dev/kvm, a VM and its vCPUs as small typed objects over koffi ioctls.
 * Every failure becomes a KvmError that says what failed and what to do.
 */
import * as C from './constants.js';
import * as libc from './libc.js';
import {
  cpuidBuffer,
  decodeCpuid,
  decodeRegs,
  decodeSregs,
  encodeCpuid,
  encodeFpu,
  encodeIoeventfd,
  encodeIrqLevel,
  encodeIrqfd,
  encodeMsrs,
  encodePitConfig,
  encodeRegs,
  encodeSregs,
  encodeUserMemoryRegion,
  type CpuidEntry,
  type FpuState,
  type MsrEntry,
  type Regs,
  type Sregs,
} from './structs.js';

export const KVM_DEVICE = '/dev/kvm';

/** Room for KVM_GET_SUPPORTED_CPUID; KVM answers E2BIG when too small. */
const MAX_CPUID_ENTRIES = 256;

export class KvmError extends Error {
  constructor(
    message: string,
    readonly errno?: number,
  ) {
    super(message);
    this.name = 'KvmError';
  }
}

function ioctl(fd: number, request: number, arg: libc.PointerArg | number, what: string): number {
  const result = typeof arg === 'number' ? libc.ioctlInt(fd, request, arg) : libc.ioctlPtr(fd, request, arg);
  if (result < 0) {
    const errno = libc.errno();
    throw new KvmError(`${what} failed: ${libc.strerror(errno)} (errno ${errno})`, errno);
  }
  return result;
}

export class Kvm {
  private constructor(readonly fd: number) {}

  static open(path = KVM_DEVICE): Kvm {
    const fd = libc.open(path, libc.O_RDWR | libc.O_CLOEXEC, 0);
    if (fd < 0) {
      const errno = libc.errno();
      if (errno === libc.ENOENT) {
        throw new KvmError(
          `${path} does not exist: this machine has no KVM. Enable hardware virtualization (VT-x/AMD-V) in the firmware and load the kvm_intel or kvm_amd module.`,
          errno,
        );
      }
      if (errno === libc.EACCES) {
        throw new KvmError(
          `${path} is not accessible to this user: add the user to the 'kvm' group (sudo usermod -aG kvm $USER) and log in again.`,
          errno,
        );
      }
      throw new KvmError(`cannot open ${path}: ${libc.strerror(errno)} (errno ${errno})`, errno);
    }
    const version = libc.ioctlInt(fd, C.KVM_GET_API_VERSION, 0);
    if (version < 0) {
      const errno = libc.errno();
      libc.close(fd);
      throw new KvmError(`${path} is not a KVM device (KVM_GET_API_VERSION: ${libc.strerror(errno)})`, errno);
    }
    if (version !== C.KVM_API_VERSION) {
      libc.close(fd);
      throw new KvmError(`${path} speaks KVM API ${version}, expected ${C.KVM_API_VERSION}`);
    }
    return new Kvm(fd);
  }

  checkExtension(capability: number): number {
    return ioctl(this.fd, C.KVM_CHECK_EXTENSION, capability, 'KVM_CHECK_EXTENSION');
  }

  /** Fails with a clear message when a capability the VMM needs is missing. */
  requireExtensions(capabilities: Readonly<Record<string, number>>): void {
    const missing = Object.entries(capabilities).filter(([, cap]) => this.checkExtension(cap) <= 0);
    if (missing.length > 0) {
      throw new KvmError(`this KVM lacks required capabilities: ${missing.map(([name]) => name).join(', ')}`);
    }
  }

  vcpuMmapSize(): number {
    return ioctl(this.fd, C.KVM_GET_VCPU_MMAP_SIZE, 0, 'KVM_GET_VCPU_MMAP_SIZE');
  }

  supportedCpuid(): CpuidEntry[] {
    const buffer = cpuidBuffer(MAX_CPUID_ENTRIES);
    ioctl(this.fd, C.KVM_GET_SUPPORTED_CPUID, buffer, 'KVM_GET_SUPPORTED_CPUID');
    return decodeCpuid(buffer);
  }

  createVm(): VmFd {
    return new VmFd(ioctl(this.fd, C.KVM_CREATE_VM, 0, 'KVM_CREATE_VM'), this.vcpuMmapSize());
  }

  close(): void {
    libc.close(this.fd);
  }
}

export class VmFd {
  private closed = false;

  constructor(
    readonly fd: number,
    private readonly vcpuMmapSize: number,
  ) {}

  /** Maps `size` bytes at host address `hostAddress` into the guest at `guestPhysAddr`. */
  setUserMemoryRegion(slot: number, guestPhysAddr: number, size: number, hostAddress: bigint): void {
    ioctl(
      this.fd,
      C.KVM_SET_USER_MEMORY_REGION,
      encodeUserMemoryRegion(slot, guestPhysAddr, size, hostAddress),
      'KVM_SET_USER_MEMORY_REGION',
    );
  }

  setTssAddress(address: number): void {
    ioctl(this.fd, C.KVM_SET_TSS_ADDR, address, 'KVM_SET_TSS_ADDR');
  }

  setIdentityMapAddress(address: number): void {
    const arg = new Uint8Array(8);
    new DataView(arg.buffer).setBigUint64(0, BigInt(address), true);
    ioctl(this.fd, C.KVM_SET_IDENTITY_MAP_ADDR, arg, 'KVM_SET_IDENTITY_MAP_ADDR');
  }

  createIrqchip(): void {
    ioctl(this.fd, C.KVM_CREATE_IRQCHIP, 0, 'KVM_CREATE_IRQCHIP');
  }

  createPit2(flags = C.KVM_PIT_SPEAKER_DUMMY): void {
    ioctl(this.fd, C.KVM_CREATE_PIT2, encodePitConfig(flags), 'KVM_CREATE_PIT2');
  }

  /** Sets the level of an interrupt line of the in-kernel irqchip (PIC + IOAPIC). */
  setIrqLine(irq: number, level: boolean): void {
    ioctl(this.fd, C.KVM_IRQ_LINE, encodeIrqLevel(irq, level), 'KVM_IRQ_LINE');
  }

  /** Routes writes to `eventFd` into interrupt `gsi`. */
  irqfd(eventFd: number, gsi: number): void {
    ioctl(this.fd, C.KVM_IRQFD, encodeIrqfd(eventFd, gsi), 'KVM_IRQFD');
  }

  /** Guest writes of `length` bytes to `address` signal `eventFd` instead of exiting to userspace. */
  ioeventfd(address: number, length: number, eventFd: number, flags: number, datamatch?: bigint): void {
    ioctl(this.fd, C.KVM_IOEVENTFD, encodeIoeventfd(address, length, eventFd, flags, datamatch), 'KVM_IOEVENTFD');
  }

  createVcpu(id: number): VcpuFd {
    const fd = ioctl(this.fd, C.KVM_CREATE_VCPU, id, `KVM_CREATE_VCPU ${id}`);
    const run = libc.mmap(null, this.vcpuMmapSize, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_SHARED, fd, 0);
    if (run === libc.MAP_FAILED || run === -1n) {
      const errno = libc.errno();
      libc.close(fd);
      throw new KvmError(`mmap of vCPU ${id}'s kvm_run failed: ${libc.strerror(errno)}`, errno);
    }
    return new VcpuFd(id, fd, run, this.vcpuMmapSize);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    libc.close(this.fd);
  }
}

export class VcpuFd {
  private closed = false;

  constructor(
    readonly id: number,
    readonly fd: number,
    /** Address of the mmap'd `struct kvm_run`. */
    readonly runAddress: bigint,
    readonly runSize: number,
  ) {}

  setCpuid(entries: readonly CpuidEntry[]): void {
    ioctl(this.fd, C.KVM_SET_CPUID2, encodeCpuid(entries), 'KVM_SET_CPUID2');
  }

  getRegs(): Regs {
    const buffer = new Uint8Array(C.SIZEOF.regs);
    ioctl(this.fd, C.KVM_GET_REGS, buffer, 'KVM_GET_REGS');
    return decodeRegs(buffer);
  }

  /** The vCPU's multiprocessing state (KVM_MP_STATE); only while it is outside KVM_RUN. */
  getMpState(): number {
    const buffer = new Uint8Array(C.SIZEOF.mpState);
    ioctl(this.fd, C.KVM_GET_MP_STATE, buffer, 'KVM_GET_MP_STATE');
    return new DataView(buffer.buffer).getUint32(0, true);
  }

  /** The guest-physical address of guest-virtual `address` in the vCPU's current mode, or null if unmapped. */
  translate(address: bigint): bigint | null {
    const buffer = new Uint8Array(C.SIZEOF.translation);
    const view = new DataView(buffer.buffer);
    view.setBigUint64(C.KVM_TRANSLATION_OFFSET.linearAddress, address, true);
    ioctl(this.fd, C.KVM_TRANSLATE, buffer, 'KVM_TRANSLATE');
    return buffer[C.KVM_TRANSLATION_OFFSET.valid]
      ? view.getBigUint64(C.KVM_TRANSLATION_OFFSET.physicalAddress, true)
      : null;
  }

  /** True when the vCPU is in an interrupt shadow (right after STI or MOV SS): no interrupt is taken there. */
  inInterruptShadow(): boolean {
    const buffer = new Uint8Array(C.SIZEOF.vcpuEvents);
    ioctl(this.fd, C.KVM_GET_VCPU_EVENTS, buffer, 'KVM_GET_VCPU_EVENTS');
    return buffer[C.KVM_VCPU_EVENTS_INTERRUPT_SHADOW_OFFSET] !== 0;
  }

  /** The local APIC's requested (IRR) and in-service (ISR) interrupt vectors. */
  lapicVectors(): { requested: number[]; inService: number[] } {
    const buffer = new Uint8Array(C.SIZEOF.lapicState);
    ioctl(this.fd, C.KVM_GET_LAPIC, buffer, 'KVM_GET_LAPIC');
    const view = new DataView(buffer.buffer);
    const vectors = (base: number) => {
      const set: number[] = [];
      for (let vector = 0; vector < 256; vector++) {
        const register = view.getUint32(base + (vector >> 5) * C.LAPIC_VECTOR_REGISTER_STRIDE, true);
        if (register & (1 << (vector & 31))) set.push(vector);
      }
      return set;
    };
    return { requested: vectors(C.LAPIC_IRR_OFFSET), inService: vectors(C.LAPIC_ISR_OFFSET) };
  }

  setRegs(regs: Regs): void {
    ioctl(this.fd, C.KVM_SET_REGS, encodeRegs(regs), 'KVM_SET_REGS');
  }

  getSregs(): Sregs {
    const buffer = new Uint8Array(C.SIZEOF.sregs);
    ioctl(this.fd, C.KVM_GET_SREGS, buffer, 'KVM_GET_SREGS');
    return decodeSregs(buffer);
  }

  setSregs(sregs: Sregs): void {
    ioctl(this.fd, C.KVM_SET_SREGS, encodeSregs(sregs), 'KVM_SET_SREGS');
  }

  setFpu(fpu: FpuState): void {
    ioctl(this.fd, C.KVM_SET_FPU, encodeFpu(fpu), 'KVM_SET_FPU');
  }

  setMsrs(entries: readonly MsrEntry[]): void {
    const written = ioctl(this.fd, C.KVM_SET_MSRS, encodeMsrs(entries), 'KVM_SET_MSRS');
    if (written !== entries.length) {
      const failed = entries[written];
      throw new KvmError(`KVM_SET_MSRS stopped at MSR 0x${failed?.index.toString(16)} (${written}/${entries.length})`);
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    libc.munmap(this.runAddress, this.runSize);
    libc.close(this.fd);
  }
}
