/**
 * A tiny KVM guest: a few real-mode instructions that write "OK" to a port,
 * then HLT. It proves the whole path Node → koffi → /dev/kvm → guest → exit
 * works, and is the lab's self-test and the host's "can KVM run code" probe.
 */
import { KVM_EXIT, KVM_EXIT_IO_OUT, KVM_RUN, KVM_RUN_HEADER_COPY, KVM_RUN_OFFSET } from './constants.js';
import { Kvm, KvmError } from './kvm.js';
import * as libc from './libc.js';
import { allocateGuestRam } from '../memory/guest-ram.js';

/** Where the probe code sits in guest memory (real mode, CS base 0). */
const PROBE_CODE_ADDRESS = 0x1000;
const PROBE_RAM_SIZE = 0x10000;
/** The port the probe writes to (COM1's data register, for familiarity). */
export const PROBE_PORT = 0x3f8;
/** Real-mode RFLAGS with only the always-one bit 1 set. */
const RFLAGS_RESERVED = 0x2n;
/** Stop a misbehaving probe guest after this many exits. */
const PROBE_MAX_EXITS = 100;

// mov dx, 0x3f8; mov al, 'O'; out dx, al; mov al, 'K'; out dx, al; hlt
const PROBE_CODE = [0xba, 0xf8, 0x03, 0xb0, 0x4f, 0xee, 0xb0, 0x4b, 0xee, 0xf4];

export interface ProbeResult {
  /** Bytes the guest wrote to PROBE_PORT, as text. */
  readonly output: string;
  /** The guest ended with HLT (KVM_EXIT_HLT). */
  readonly halted: boolean;
  readonly exits: number;
  readonly milliseconds: number;
}

export function runProbeGuest(devicePath?: string): ProbeResult {
  const started = performance.now();
  const kvm = Kvm.open(devicePath);
  const vm = kvm.createVm();
  const ram = allocateGuestRam(PROBE_RAM_SIZE);
  vm.setUserMemoryRegion(0, 0, ram.size, ram.hostAddress);
  const vcpu = vm.createVcpu(0);
  try {
    ram.memory.write(PROBE_CODE_ADDRESS, Uint8Array.from(PROBE_CODE));
    const sregs = vcpu.getSregs();
    sregs.cs = { ...sregs.cs, base: 0n, selector: 0 };
    vcpu.setSregs(sregs);
    const regs = vcpu.getRegs();
    vcpu.setRegs({ ...regs, rip: BigInt(PROBE_CODE_ADDRESS), rflags: RFLAGS_RESERVED });

    const header = new Uint8Array(KVM_RUN_HEADER_COPY);
    const view = new DataView(header.buffer);
    const byte = new Uint8Array(1);
    let output = '';
    let exits = 0;
    for (; exits < PROBE_MAX_EXITS;) {
      if (libc.ioctlInt(vcpu.fd, KVM_RUN, 0) < 0) {
        const errno = libc.errno();
        if (errno === libc.EINTR) continue;
        throw new KvmError(`KVM_RUN failed: ${libc.strerror(errno)}`, errno);
      }
      exits++;
      libc.memcpy(header, vcpu.runAddress, KVM_RUN_HEADER_COPY);
      const reason = view.getUint32(KVM_RUN_OFFSET.exitReason, true);
      if (reason === KVM_EXIT.HLT) return { output, halted: true, exits, milliseconds: performance.now() - started };
      if (reason !== KVM_EXIT.IO) {
        throw new KvmError(`probe guest stopped with unexpected KVM exit reason ${reason}`);
      }
      const port = view.getUint16(KVM_RUN_OFFSET.ioPort, true);
      const direction = view.getUint8(KVM_RUN_OFFSET.ioDirection);
      if (port === PROBE_PORT && direction === KVM_EXIT_IO_OUT) {
        const dataOffset = Number(view.getBigUint64(KVM_RUN_OFFSET.ioDataOffset, true));
        libc.memcpy(byte, vcpu.runAddress + BigInt(dataOffset), 1);
        output += String.fromCharCode(byte[0]!);
      }
    }
    return { output, halted: false, exits, milliseconds: performance.now() - started };
  } finally {
    vcpu.close();
    vm.close();
    kvm.close();
  }
}
