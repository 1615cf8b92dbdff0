/**
 * The narrow interfaces between device models and the VM.
 *
 * A device sees guest RAM only through `GuestMemory`, raises interrupts only
 * through an `IrqLine`, and is reached by the guest only through a bus
 * (MMIO or port I/O). That keeps every device unit-testable without KVM.
 */

/** A device register window. `offset` is relative to the window's base. */
export interface BusDevice {
  /** Fill `data` (1, 2, 4 or 8 bytes, little-endian) with the register value. */
  read(offset: number, data: Uint8Array): void;
  /** `data` holds the value the guest wrote (1, 2, 4 or 8 bytes, little-endian). */
  write(offset: number, data: Uint8Array): void;
}

/** One interrupt input of the VM's interrupt controller. */
export interface IrqLine {
  /** Level-triggered: asserted while `level` is true. */
  setLevel(level: boolean): void;
  /** Edge-triggered: one pulse. */
  pulse(): void;
}

interface Mapping {
  readonly base: number;
  readonly size: number;
  readonly device: BusDevice;
  readonly name: string;
}

/**
 * An address space (MMIO or port I/O) mapping ranges to devices.
 * Accesses that hit no device read as all-ones and are otherwise ignored,
 * like an unpopulated bus on real hardware.
 */
export class Bus {
  private readonly mappings: Mapping[] = [];

  constructor(readonly name: string) {}

  insert(name: string, base: number, size: number, device: BusDevice): void {
    if (size <= 0) throw new Error(`${this.name}: empty range for ${name}`);
    for (const m of this.mappings) {
      if (base < m.base + m.size && m.base < base + size) {
        throw new Error(`${this.name}: ${name} at 0x${base.toString(16)} overlaps ${m.name}`);
      }
    }
    this.mappings.push({ base, size, device, name });
    this.mappings.sort((a, b) => a.base - b.base);
  }

  private find(address: number, length: number): Mapping | undefined {
    for (const m of this.mappings) {
      if (address >= m.base && address + length <= m.base + m.size) return m;
    }
    return undefined;
  }

  /** Returns false when no device claimed the access. */
  read(address: number, data: Uint8Array): boolean {
    const m = this.find(address, data.length);
    if (!m) {
      data.fill(0xff);
      return false;
    }
    m.device.read(address - m.base, data);
    return true;
  }

  write(address: number, data: Uint8Array): boolean {
    const m = this.find(address, data.length);
    if (!m) return false;
    m.device.write(address - m.base, data);
    return true;
  }
}
