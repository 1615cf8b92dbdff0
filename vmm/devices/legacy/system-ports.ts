/**
 * Small port-I/O devices through which the guest reports its own lifecycle:
 * - ACPI sleep control/status registers of a hardware-reduced platform: the
 *   guest powers off by writing SLP_TYP(S5) | SLP_EN to the control register;
 * - pvpanic: the guest's pvpanic driver writes PANICKED when the kernel panics;
 * - the boot marker: the guest's init writes a byte to say "init reached",
 *   which the VMM timestamps (boot-time measurements).
 */
import type { BusDevice } from '../bus.js';

/** ACPI 6.x, 4.8.3.7: sleep control register fields. */
const SLEEP_TYPE_SHIFT = 2;
const SLEEP_TYPE_MASK = 0x1c;
const SLEEP_ENABLE = 0x20;
/** The SLP_TYP value the DSDT's `_S5_` package gives for soft-off. */
export const ACPI_S5_SLEEP_TYPE = 5;

/** Control register at offset 0, status register at offset 1 (8 bits each). */
export const ACPI_SLEEP_PORT_COUNT = 2;

export class AcpiSleepRegisters implements BusDevice {
  constructor(private readonly onPowerOff: () => void) {}

  read(_offset: number, data: Uint8Array): void {
    data.fill(0);
  }

  write(offset: number, data: Uint8Array): void {
    if (offset !== 0 || data.length !== 1) return;
    const value = data[0]!;
    const sleepType = (value & SLEEP_TYPE_MASK) >> SLEEP_TYPE_SHIFT;
    if (value & SLEEP_ENABLE && sleepType === ACPI_S5_SLEEP_TYPE) this.onPowerOff();
  }
}

/** pvpanic event bits (QEMU's pvpanic spec). */
export const PVPANIC_PANICKED = 1 << 0;
export const PVPANIC_CRASH_LOADED = 1 << 1;

export class PvPanic implements BusDevice {
  constructor(private readonly onEvent: (event: 'panicked' | 'crash-loaded') => void) {}

  /** Reading tells the guest which events are supported. */
  read(_offset: number, data: Uint8Array): void {
    data.fill(0);
    data[0] = PVPANIC_PANICKED | PVPANIC_CRASH_LOADED;
  }

  write(_offset: number, data: Uint8Array): void {
    const value = data[0] ?? 0;
    if (value & PVPANIC_PANICKED) this.onEvent('panicked');
    else if (value & PVPANIC_CRASH_LOADED) this.onEvent('crash-loaded');
  }
}

export class BootMarker implements BusDevice {
  constructor(private readonly onMark: (value: number) => void) {}

  read(_offset: number, data: Uint8Array): void {
    data.fill(0);
  }

  write(_offset: number, data: Uint8Array): void {
    if (data.length === 1) this.onMark(data[0]!);
  }
}
