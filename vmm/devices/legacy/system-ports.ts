/**
 * Small port-I/O devices through which the guest reports its own lifecycle:
 * - ACPI sleep control/status registers of a hardware-reduced platform: the
 *   guest powers off by writing SLP_TYP(S5) | SLP_EN to the control register;
 * - pvpanic: the guest's pvpanic driver writes PANICKED when the kernel panics;
 * - the boot marker: the guest's init writes a byte to say "init reached",
 *   which the VMM timestamps (boot-time measurements).
 */
import type { BusDevice } from '../bus.js';
import {
  ACPI_S5_SLEEP_TYPE,
  ACPI_SLEEP_CONTROL_SLP_EN,
  ACPI_SLEEP_CONTROL_SLP_TYP_MASK,
  ACPI_SLEEP_CONTROL_SLP_TYP_SHIFT,
  PVPANIC_CRASH_LOADED,
  PVPANIC_PANICKED,
} from '../../arch/x86_64/layout.js';

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
    const sleepType = (value & ACPI_SLEEP_CONTROL_SLP_TYP_MASK) >> ACPI_SLEEP_CONTROL_SLP_TYP_SHIFT;
    if (value & ACPI_SLEEP_CONTROL_SLP_EN && sleepType === ACPI_S5_SLEEP_TYPE) this.onPowerOff();
  }
}

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
