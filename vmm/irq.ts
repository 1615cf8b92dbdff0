/** An interrupt line of KVM's in-kernel irqchip (PIC + IOAPIC), driven with KVM_IRQ_LINE. */
import type { IrqLine } from './devices/bus.js';
import type { VmFd } from './kvm/kvm.js';

export class KvmIrqLine implements IrqLine {
  constructor(
    private readonly vm: VmFd,
    readonly gsi: number,
  ) {}

  setLevel(level: boolean): void {
    this.vm.setIrqLine(this.gsi, level);
  }

  pulse(): void {
    this.vm.setIrqLine(this.gsi, true);
    this.vm.setIrqLine(this.gsi, false);
  }
}
