/**
 * A microVM built from a VmConfig: KVM VM with in-kernel irqchip and PIT,
 * guest RAM, the legacy devices, one virtio-mmio slot per disk (plus
 * virtio-rng), a Linux kernel loaded per the boot protocol, one worker
 * thread per vCPU. It ends when the guest powers off, reboots, panics or
 * faults, or when the host stops it, and releases everything it opened.
 */
import { readFileSync } from 'node:fs';
import { setupLinuxBoot } from './arch/x86_64/boot.js';
import { normalizeCpuid } from './arch/x86_64/cpuid.js';
import {
  ACPI_SLEEP_CONTROL_PORT,
  BOOT_SIGNAL_INIT_REACHED,
  BOOT_SIGNAL_PORT,
  I8042_DATA_PORT,
  KVM_IDENTITY_MAP_ADDRESS,
  KVM_TSS_ADDRESS,
  MiB,
  PVPANIC_PORT,
  SERIAL_COM1_IRQ,
  SERIAL_COM1_PORT,
  virtioMmioSlot,
} from './arch/x86_64/layout.js';
import type { DiskConfig, VmConfig } from './config.js';
import { Bus } from './devices/bus.js';
import { I8042, I8042_PORT_COUNT } from './devices/legacy/i8042.js';
import { Serial, SERIAL_PORT_COUNT } from './devices/legacy/serial.js';
import { ACPI_SLEEP_PORT_COUNT, AcpiSleepRegisters, BootMarker, PvPanic } from './devices/legacy/system-ports.js';
import { FileBlockBackend, VirtioBlock } from './devices/virtio/blk.js';
import { VirtioMmioTransport } from './devices/virtio/mmio-transport.js';
import { MMIO_QUEUE_NOTIFY } from './devices/virtio/constants.js';
import { QueueNotifier } from './kvm/ioevent.js';
import { VirtioRng } from './devices/virtio/rng.js';
import { VirtioGpu } from './devices/virtio/gpu/gpu.js';
import { VirtioInput } from './devices/virtio/input/input.js';
import { VirtioVsock } from './devices/virtio/vsock/device.js';
import type { VirtioDevice } from './devices/virtio/device.js';
import * as C from './kvm/constants.js';
import { cpuHardwareVirtualization } from './kvm/host.js';
import { Kvm, type VcpuFd, type VmFd } from './kvm/kvm.js';
import { KvmIrqLine } from './irq.js';
import { allocateGuestRam, type GuestRam } from './memory/guest-ram.js';
import { REG_NAMES, type Regs, type Segment, type Sregs } from './kvm/structs.js';
import type { SegmentRegister } from './arch/x86_64/gdt.js';
import type { BootSregs, KvmRegs } from './arch/x86_64/regs.js';
import { VcpuThread } from './vcpu/vcpu-thread.js';
import { codeAt, type VcpuLook } from './vcpu/sample.js';
import type { VcpuStop } from './vcpu/exit.js';

/** Capabilities the VMM cannot run without. */
const REQUIRED_CAPABILITIES = {
  KVM_CAP_IRQCHIP: C.KVM_CAP_IRQCHIP,
  KVM_CAP_USER_MEMORY: C.KVM_CAP_USER_MEMORY,
  KVM_CAP_SET_TSS_ADDR: C.KVM_CAP_SET_TSS_ADDR,
  KVM_CAP_PIT2: C.KVM_CAP_PIT2,
  KVM_CAP_EXT_CPUID: C.KVM_CAP_EXT_CPUID,
  KVM_CAP_IMMEDIATE_EXIT: C.KVM_CAP_IMMEDIATE_EXIT,
};
const KVM_CAP_TSC_DEADLINE_TIMER = 72;

export type VmExit =
  | { readonly kind: 'poweroff' }
  | { readonly kind: 'reboot' }
  | { readonly kind: 'triple-fault' }
  | { readonly kind: 'panic' }
  | { readonly kind: 'stopped' }
  | { readonly kind: 'error'; readonly detail: string };

export interface VmDevices {
  readonly gpu?: VirtioGpu;
  readonly keyboard?: VirtioInput;
  readonly pointer?: VirtioInput;
  readonly vsock?: VirtioVsock;
}

/** The display device's name on the MMIO bus (and in `queueProgress`). */
export const DISPLAY_DEVICE_NAME = 'virtio-gpu';

export class VmError extends Error {
  override name = 'VmError';
}

export interface VmIo {
  /** Bytes the guest wrote to its serial console. */
  readonly serialOutput: (bytes: Uint8Array) => void;
}

export interface VmOptions {
  /** The KVM device; default /dev/kvm. */
  readonly kvmDevice?: string;
  /**
   * Refuse to start where the CPU exposes no hardware virtualization: such a
   * KVM (paravirtual, as on our build machines) cannot run a Linux guest at a
   * usable speed. Default true.
   */
  readonly requireHardwareVirtualization?: boolean;
}

export interface VmTimings {
  /** performance.now() when creation started. */
  readonly createdAt: number;
  /** When the vCPUs were started. */
  startedAt: number | null;
  /** When the guest wrote "init reached" to the boot signal port. */
  initReachedAt: number | null;
}

/** The host-side objects of each device, for statistics and tests. */
interface VirtioSlotDevice {
  readonly name: string;
  readonly transport: VirtioMmioTransport;
  readonly close?: () => void;
}

export class Vm {
  readonly timings: VmTimings;
  readonly exit: Promise<VmExit>;
  private resolveExit!: (exit: VmExit) => void;
  private finished = false;
  private readonly threads: VcpuThread[] = [];
  private pendingOutput: Uint8Array[] = [];
  private flushScheduled = false;
  private readonly serial: Serial;
  private readonly virtio: VirtioSlotDevice[] = [];
  private readonly notifiers: QueueNotifier[] = [];

  private constructor(
    private readonly kvm: Kvm,
    private readonly vm: VmFd,
    private readonly ram: GuestRam,
    private readonly vcpus: VcpuFd[],
    private readonly io: VmIo,
    private readonly pio: Bus,
    private readonly mmio: Bus,
    createdAt: number,
    /** The interactive devices, for the app (display frames, input, vsock). */
    readonly devices: VmDevices = {},
  ) {
    this.timings = { createdAt, startedAt: null, initReachedAt: null };
    this.exit = new Promise((resolve) => (this.resolveExit = resolve));
    this.serial = new Serial({ irq: new KvmIrqLine(vm, SERIAL_COM1_IRQ), output: (bytes) => this.queueOutput(bytes) });
    pio.insert('serial', SERIAL_COM1_PORT, SERIAL_PORT_COUNT, this.serial);
    pio.insert('i8042', I8042_DATA_PORT, I8042_PORT_COUNT, new I8042(() => this.finish({ kind: 'reboot' })));
    pio.insert(
      'acpi-sleep',
      ACPI_SLEEP_CONTROL_PORT,
      ACPI_SLEEP_PORT_COUNT,
      new AcpiSleepRegisters(() => this.finish({ kind: 'poweroff' })),
    );
    pio.insert('pvpanic', PVPANIC_PORT, 1, new PvPanic(() => this.finish({ kind: 'panic' })));
    pio.insert(
      'boot-signal',
      BOOT_SIGNAL_PORT,
      1,
      new BootMarker((value) => {
        if (value === BOOT_SIGNAL_INIT_REACHED && this.timings.initReachedAt === null) {
          this.timings.initReachedAt = performance.now();
        }
      }),
    );
  }

  static create(config: VmConfig, io: VmIo, options: VmOptions = {}): Vm {
    const createdAt = performance.now();
    // Everything that depends only on the inputs happens before KVM is
    // touched: bad input fails fast, with a clear message, and leaves nothing.
    const kernel = readInput(config.kernel, 'kernel');
    const initrd = config.initrd === undefined ? undefined : readInput(config.initrd, 'initrd');
    const backends = openDisks(config.disks);
    const cleanup: (() => void)[] = [() => backends.forEach((b) => b.backend.close())];
    try {
      const devices: { name: string; device: VirtioDevice; close?: () => void }[] = backends.map((b, i) => ({
        name: `virtio-blk${i}`,
        device: new VirtioBlock(b.backend, {
          readOnly: b.disk.readOnly,
          ...(b.disk.serial === undefined ? {} : { serial: b.disk.serial }),
        }),
        close: () => b.backend.close(),
      }));
      if (config.rng) devices.push({ name: 'virtio-rng', device: new VirtioRng() });
      const gpu = config.display ? new VirtioGpu(config.display) : undefined;
      if (gpu) devices.push({ name: DISPLAY_DEVICE_NAME, device: gpu });
      const keyboard = config.input ? VirtioInput.keyboard() : undefined;
      const pointer = config.input ? VirtioInput.tablet() : undefined;
      if (keyboard && pointer) {
        devices.push({ name: 'virtio-keyboard', device: keyboard }, { name: 'virtio-pointer', device: pointer });
      }
      const vsock = config.vsockCid === undefined ? undefined : new VirtioVsock({ guestCid: config.vsockCid });
      if (vsock) devices.push({ name: 'virtio-vsock', device: vsock, close: () => vsock.dispose() });
      const slots = devices.map((_, i) => virtioMmioSlot(i));
      const ram = allocateGuestRam(config.memoryMiB * MiB);
      const boot = setupLinuxBoot(ram.memory, {
        kernel,
        ...(initrd ? { initrd } : {}),
        cmdline: config.cmdline,
        vcpus: config.vcpus,
        virtioSlots: slots.map((slot) => ({ base: slot.base, size: slot.size, gsi: slot.gsi })),
      });

      if (options.requireHardwareVirtualization !== false && cpuHardwareVirtualization() === null) {
        throw new VmError(
          'this machine exposes no hardware virtualization (no vmx or svm flag in /proc/cpuinfo): its /dev/kvm ' +
            'cannot run a Linux guest at a usable speed. Use a host with Intel VT-x or AMD-V, or run inside the KVM ' +
            'lab (npm run lab -- npm run vmm -- run …).',
        );
      }
      const kvm = Kvm.open(options.kvmDevice);
      cleanup.push(() => kvm.close());
      kvm.requireExtensions(REQUIRED_CAPABILITIES);
      const supportedCpuid = kvm.supportedCpuid();
      const tscDeadline = kvm.checkExtension(KVM_CAP_TSC_DEADLINE_TIMER) > 0;
      const useIoeventfd = config.ioeventfd && kvm.checkExtension(C.KVM_CAP_IOEVENTFD) > 0;
      const vmFd = kvm.createVm();
      cleanup.push(() => vmFd.close());
      vmFd.setTssAddress(KVM_TSS_ADDRESS);
      vmFd.setIdentityMapAddress(KVM_IDENTITY_MAP_ADDRESS);
      vmFd.createIrqchip();
      vmFd.createPit2();
      vmFd.setUserMemoryRegion(0, 0, ram.size, ram.hostAddress);

      const vm = new Vm(kvm, vmFd, ram, [], io, new Bus('pio'), new Bus('mmio'), createdAt, {
        ...(gpu ? { gpu } : {}),
        ...(keyboard ? { keyboard } : {}),
        ...(pointer ? { pointer } : {}),
        ...(vsock ? { vsock } : {}),
      });
      devices.forEach((d, i) => {
        const slot = slots[i]!;
        const transport = new VirtioMmioTransport(d.device, ram.memory, new KvmIrqLine(vmFd, slot.gsi));
        vm.mmio.insert(d.name, slot.base, VirtioMmioTransport.WINDOW_SIZE, transport);
        vm.virtio.push({ name: d.name, transport, ...(d.close ? { close: d.close } : {}) });
        if (useIoeventfd) {
          for (let queue = 0; queue < transport.queueCount; queue++) {
            const notifier = new QueueNotifier(vmFd, slot.base + MMIO_QUEUE_NOTIFY, queue, () =>
              transport.notifyQueue(queue),
            );
            vm.notifiers.push(notifier);
            cleanup.push(() => notifier.close());
          }
        }
      });
      for (let id = 0; id < config.vcpus; id++) {
        const vcpu = vmFd.createVcpu(id);
        vm.vcpus.push(vcpu);
        cleanup.push(() => vcpu.close());
        vcpu.setCpuid(
          normalizeCpuid(supportedCpuid, { vcpuIndex: id, vcpuCount: config.vcpus, tscDeadlineTimer: tscDeadline }),
        );
        vcpu.setMsrs(boot.msrs);
        vcpu.setFpu(boot.fpu);
        if (id === 0) {
          vcpu.setRegs(toKvmRegs(boot.regs));
          vcpu.setSregs(toKvmSregs(vcpu.getSregs(), boot.sregs));
        }
      }
      return vm;
    } catch (error) {
      for (const undo of cleanup.reverse()) undo();
      throw error;
    }
  }

  /** Starts the vCPUs. */
  start(): void {
    if (this.timings.startedAt !== null) throw new VmError('the VM was already started');
    this.timings.startedAt = performance.now();
    for (const vcpu of this.vcpus) {
      const thread = new VcpuThread(vcpu, { pio: this.pio, mmio: this.mmio }, (gpa) => codeAt(this.ram.memory, gpa));
      this.threads.push(thread);
      void thread.stopped.then((stop) => this.finish(exitFromVcpu(stop)));
    }
  }

  /**
   * Pauses every vCPU (each is kicked out of the guest and waits); devices
   * keep their state. Guest time stands still as far as the vCPUs go.
   */
  pause(): void {
    if (this.finished) return;
    for (const thread of this.threads) thread.pause();
  }

  resume(): void {
    if (this.finished) return;
    for (const thread of this.threads) thread.resume();
  }

  /** Bytes for the guest's serial console; returns how many were taken. */
  serialInput(bytes: Uint8Array): number {
    return this.serial.input(bytes);
  }

  /** Asks the VM to stop (host side); resolves when it has. */
  async stop(): Promise<VmExit> {
    this.finish({ kind: 'stopped' });
    return this.exit;
  }

  /**
   * Where a device's queue stands: `pending` chains the guest has made
   * available and the device has not taken; `taken` counts the ones it took
   * (mod 2^16). Undefined for an unknown device or queue.
   */
  queueProgress(device: string, index: number): { pending: number; taken: number } | undefined {
    const queue = this.virtio.find((d) => d.name === device)?.transport.queue(index);
    return queue ? { pending: queue.pending(), taken: queue.lastAvailIndex } : undefined;
  }

  /** Each vCPU's mailbox counters (a request ahead of its response waits for the main thread). */
  get vcpuMailboxes(): { request: number; response: number; runs: number }[] {
    return this.threads.map((t) => t.mailboxState);
  }

  /** Briefly stops vCPU `id` to see where it is (see VcpuThread.sample). */
  async sampleVcpu(id: number, timeoutMs: number, detail = false): Promise<VcpuLook> {
    const thread = this.threads[id];
    return thread && !this.finished ? thread.sample(timeoutMs, detail) : 'not-running';
  }

  /** Port and MMIO exits handled so far, all vCPUs. */
  get exitCount(): number {
    return this.threads.reduce((sum, t) => sum + t.exits, 0);
  }

  private queueOutput(bytes: Uint8Array): void {
    this.pendingOutput.push(bytes);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flushOutput());
    }
  }

  private flushOutput(): void {
    this.flushScheduled = false;
    if (this.pendingOutput.length === 0) return;
    const chunk = Buffer.concat(this.pendingOutput);
    this.pendingOutput = [];
    this.io.serialOutput(chunk);
  }

  /** The first reason to end wins; stops every vCPU, then releases everything. */
  private finish(exit: VmExit): void {
    if (this.finished) return;
    this.finished = true;
    void (async () => {
      await Promise.all(this.threads.map((t) => t.stop()));
      this.flushOutput();
      for (const notifier of this.notifiers) notifier.close();
      for (const device of this.virtio) device.close?.();
      for (const vcpu of this.vcpus) vcpu.close();
      this.vm.close();
      this.kvm.close();
      this.resolveExit(exit);
    })();
  }

  /** Guest RAM size in bytes. */
  get memorySize(): number {
    return this.ram.size;
  }
}

/** The boot builders use plain numbers (all below 2^53); KVM's structs take exact 64-bit values. */
function toKvmRegs(regs: KvmRegs): Regs {
  const out = {} as Regs;
  for (const name of REG_NAMES) out[name] = BigInt(regs[name]);
  return out;
}

function toKvmSregs(current: Sregs, boot: BootSregs): Sregs {
  const segment = (s: SegmentRegister): Segment => ({ ...s, base: BigInt(s.base) });
  return {
    ...current,
    cs: segment(boot.cs),
    ds: segment(boot.ds),
    es: segment(boot.es),
    fs: segment(boot.fs),
    gs: segment(boot.gs),
    ss: segment(boot.ss),
    tr: segment(boot.tr),
    gdt: { base: BigInt(boot.gdt.base), limit: boot.gdt.limit },
    idt: { base: BigInt(boot.idt.base), limit: boot.idt.limit },
    cr0: BigInt(boot.cr0),
    cr3: BigInt(boot.cr3),
    cr4: BigInt(boot.cr4),
    efer: BigInt(boot.efer),
  };
}

function exitFromVcpu(stop: VcpuStop): VmExit {
  switch (stop.reason) {
    case 'shutdown':
      return { kind: 'poweroff' };
    case 'reset':
      return { kind: 'reboot' };
    case 'triple-fault':
      return { kind: 'triple-fault' };
    case 'crash':
      return { kind: 'panic' };
    case 'stopped':
      return { kind: 'stopped' };
    case 'halted':
      return { kind: 'error', detail: 'a vCPU halted with interrupts off (the guest is stuck)' };
    case 'error':
      return { kind: 'error', detail: stop.detail };
  }
}

function readInput(path: string, what: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason =
      code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (error as Error).message;
    throw new VmError(`cannot read the ${what} ${path}: ${reason}`);
  }
}

function openDisks(disks: readonly DiskConfig[]): { disk: DiskConfig; backend: FileBlockBackend }[] {
  const opened: { disk: DiskConfig; backend: FileBlockBackend }[] = [];
  try {
    for (const disk of disks) {
      try {
        opened.push({ disk, backend: FileBlockBackend.open(disk.path, disk.readOnly) });
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        const reason = code === 'ENOENT' ? 'no such file' : (error as Error).message;
        throw new VmError(`cannot open the disk ${disk.path}${disk.readOnly ? ' (read-only)' : ''}: ${reason}`);
      }
    }
    return opened;
  } catch (error) {
    opened.forEach((o) => o.backend.close());
    throw error;
  }
}
