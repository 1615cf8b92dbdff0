import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Serial, SERIAL_RX_CAPACITY } from '../../vmm/devices/legacy/serial.js';
import { I8042, I8042_COMMAND_OFFSET } from '../../vmm/devices/legacy/i8042.js';
import { AcpiSleepRegisters, PvPanic, BootMarker } from '../../vmm/devices/legacy/system-ports.js';
import { ACPI_S5_SLEEP_TYPE } from '../../vmm/arch/x86_64/layout.js';
import type { IrqLine } from '../../vmm/devices/bus.js';

class RecordingIrq implements IrqLine {
  level = false;
  rises = 0;
  setLevel(level: boolean): void {
    if (level && !this.level) this.rises++;
    this.level = level;
  }
  pulse(): void {
    this.rises++;
  }
}

const REG = { data: 0, ier: 1, iir: 2, lcr: 3, mcr: 4, lsr: 5, msr: 6, scratch: 7 };

function uart() {
  const irq = new RecordingIrq();
  const out: number[] = [];
  const serial = new Serial({ irq, output: (b) => out.push(...b) });
  const rd = (reg: number) => {
    const d = new Uint8Array(1);
    serial.read(reg, d);
    return d[0]!;
  };
  const wr = (reg: number, v: number) => serial.write(reg, Uint8Array.of(v));
  return { serial, irq, out, rd, wr };
}

test('serial: transmitted bytes reach the host and raise THR-empty interrupts', () => {
  const { irq, out, rd, wr } = uart();
  wr(REG.ier, 0x02); // enable THR-empty
  assert.equal(irq.level, true, 'enabling THRE with an empty THR interrupts at once (Linux checks this)');
  assert.equal(rd(REG.iir) & 0x0f, 0x02, 'IIR says THR empty');
  assert.equal(irq.level, false, 'reading IIR acknowledges it');
  wr(REG.data, 0x41);
  wr(REG.data, 0x42);
  assert.deepEqual(out, [0x41, 0x42]);
  assert.equal(irq.level, true, 'each transmit leaves THR empty again → interrupt');
  assert.equal(rd(REG.lsr) & 0x60, 0x60, 'THR and transmitter empty');
});

test('serial: received bytes are readable with data-ready status and interrupt', () => {
  const { serial, irq, rd, wr } = uart();
  wr(REG.ier, 0x01);
  assert.equal(serial.input(Uint8Array.of(0x68, 0x69)), 2);
  assert.equal(irq.level, true);
  assert.equal(rd(REG.iir) & 0x0f, 0x04);
  assert.equal(rd(REG.lsr) & 0x01, 1);
  assert.equal(rd(REG.data), 0x68);
  assert.equal(rd(REG.data), 0x69);
  assert.equal(rd(REG.lsr) & 0x01, 0, 'no more data');
  assert.equal(irq.level, false);
  assert.equal(rd(REG.data), 0, 'reading an empty FIFO gives 0, not an error');
});

test('serial: the receive FIFO is bounded; the host is told how much fitted', () => {
  const { serial } = uart();
  const big = new Uint8Array(SERIAL_RX_CAPACITY + 100);
  assert.equal(serial.input(big), SERIAL_RX_CAPACITY);
  assert.equal(serial.rxSpace(), 0);
  assert.equal(serial.input(Uint8Array.of(1)), 0);
});

test('serial: loopback mode, scratch and divisor latch behave as the 8250 probe expects', () => {
  const { out, rd, wr } = uart();
  wr(REG.scratch, 0xa5);
  assert.equal(rd(REG.scratch), 0xa5);
  wr(REG.mcr, 0x10 | 0x0a); // loopback, RTS, OUT2
  assert.equal(rd(REG.msr) & 0xf0, 0x90, 'RTS→CTS, OUT2→DCD');
  wr(REG.data, 0x55);
  assert.deepEqual(out, [], 'loopback does not transmit');
  assert.equal(rd(REG.data), 0x55, 'loopback receives what was sent');
  wr(REG.mcr, 0x08);
  wr(REG.lcr, 0x83); // DLAB
  wr(REG.data, 0x01);
  wr(REG.ier, 0x00);
  assert.equal(rd(REG.data), 0x01);
  assert.equal(rd(REG.ier), 0x00);
  wr(REG.lcr, 0x03);
  assert.equal(rd(REG.ier), 0, 'IER untouched by divisor writes');
});

test('serial: accesses wider than a byte are ignored', () => {
  const { serial, out } = uart();
  serial.write(0, Uint8Array.of(1, 2));
  const d = Uint8Array.of(9, 9);
  serial.read(5, d);
  assert.deepEqual(out, []);
  assert.deepEqual([...d], [0, 0]);
});

test('i8042: 0xFE on the command port resets; the status says the input buffer is empty', () => {
  let resets = 0;
  const dev = new I8042(() => resets++);
  const status = new Uint8Array(1);
  dev.read(I8042_COMMAND_OFFSET, status);
  assert.equal(status[0]! & 0x02, 0);
  dev.write(I8042_COMMAND_OFFSET, Uint8Array.of(0xd1));
  dev.write(0, Uint8Array.of(0xfe));
  assert.equal(resets, 0, 'other commands and the data port do not reset');
  dev.write(I8042_COMMAND_OFFSET, Uint8Array.of(0xfe));
  assert.equal(resets, 1);
});

test('ACPI sleep control: only SLP_EN with the S5 type powers off', () => {
  let offs = 0;
  const dev = new AcpiSleepRegisters(() => offs++);
  dev.write(0, Uint8Array.of(ACPI_S5_SLEEP_TYPE << 2)); // no SLP_EN
  dev.write(0, Uint8Array.of((3 << 2) | 0x20)); // S3 is not offered
  dev.write(1, Uint8Array.of((ACPI_S5_SLEEP_TYPE << 2) | 0x20)); // status register
  assert.equal(offs, 0);
  dev.write(0, Uint8Array.of((ACPI_S5_SLEEP_TYPE << 2) | 0x20));
  assert.equal(offs, 1);
});

test('pvpanic and the boot marker report what the guest wrote', () => {
  const events: string[] = [];
  const panic = new PvPanic((e) => events.push(e));
  const features = new Uint8Array(1);
  panic.read(0, features);
  assert.equal(features[0], 3);
  panic.write(0, Uint8Array.of(1));
  panic.write(0, Uint8Array.of(2));
  panic.write(0, Uint8Array.of(0));
  assert.deepEqual(events, ['panicked', 'crash-loaded']);
  const marks: number[] = [];
  new BootMarker((v) => marks.push(v)).write(0, Uint8Array.of(123));
  assert.deepEqual(marks, [123]);
});
