/**
 * Just enough of the i8042 keyboard controller for a guest to reset the
 * machine: Linux's `reboot=k` path waits for an empty input buffer (status
 * bit 1 clear), then writes the "pulse reset line" command 0xFE to port 0x64.
 * No keyboard is attached (input comes through virtio-input), and the ACPI
 * tables announce no PS/2 controller, so Linux's i8042 driver stays away.
 */
import type { BusDevice } from '../bus.js';

/** Offsets from port 0x60: data port, and command/status port (0x64). */
export const I8042_DATA_OFFSET = 0;
export const I8042_COMMAND_OFFSET = 4;
export const I8042_PORT_COUNT = 5;
const COMMAND_PULSE_RESET = 0xfe;
/** Status: nothing to read, input buffer empty, system flag set (POST passed). */
const STATUS_IDLE = 0x04;

export class I8042 implements BusDevice {
  constructor(private readonly onReset: () => void) {}

  read(offset: number, data: Uint8Array): void {
    data.fill(0);
    if (offset === I8042_COMMAND_OFFSET && data.length === 1) data[0] = STATUS_IDLE;
  }

  write(offset: number, data: Uint8Array): void {
    if (offset === I8042_COMMAND_OFFSET && data.length === 1 && data[0] === COMMAND_PULSE_RESET) this.onReset();
  }
}
