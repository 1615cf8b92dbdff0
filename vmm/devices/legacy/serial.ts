/**
 * A 16550A UART, enough for Linux's 8250 driver as console and tty:
 * transmit with THR-empty interrupts (without them userspace output stalls
 * after one character), receive with a bounded FIFO and data-ready
 * interrupts, loopback mode (the driver's probe uses it), scratch register.
 *
 * The interrupt line follows the UART's interrupt condition as a level;
 * KVM turns the rising edge into an ISA edge interrupt.
 */
import type { BusDevice, IrqLine } from '../bus.js';

/** Register offsets from the UART's base port. */
const REG = {
  data: 0, // RBR (read) / THR (write); DLL when DLAB
  interruptEnable: 1, // IER; DLM when DLAB
  interruptId: 2, // IIR (read) / FCR (write)
  lineControl: 3,
  modemControl: 4,
  lineStatus: 5,
  modemStatus: 6,
  scratch: 7,
} as const;

/** The UART's register window size in ports. */
export const SERIAL_PORT_COUNT = 8;

const IER_RX_DATA = 0x01;
const IER_THR_EMPTY = 0x02;
const IER_MASK = 0x0f;
const IIR_NONE = 0x01;
const IIR_THR_EMPTY = 0x02;
const IIR_RX_DATA = 0x04;
const IIR_FIFO_ENABLED = 0xc0;
const FCR_FIFO_ENABLE = 0x01;
const FCR_CLEAR_RX = 0x02;
const LCR_DLAB = 0x80;
const MCR_LOOPBACK = 0x10;
const MCR_MASK = 0x1f;
const LSR_DATA_READY = 0x01;
const LSR_THR_EMPTY = 0x20;
const LSR_TRANSMITTER_EMPTY = 0x40;
/** Carrier detect, data set ready, clear to send: a terminal is attached. */
const MSR_CONNECTED = 0xb0;
/** In loopback, MCR's DTR/RTS/OUT1/OUT2 (bits 0–3) appear as DSR/CTS/RI/DCD (MSR bits 5,4,6,7). */
const LOOPBACK_MSR_BITS: readonly [number, number][] = [
  [0x01, 0x20],
  [0x02, 0x10],
  [0x04, 0x40],
  [0x08, 0x80],
];
/** Divisor for 9600 baud at the standard 1.8432 MHz clock; the value is only stored. */
const DEFAULT_DIVISOR = 12;

/** Receive bytes kept before the host is asked to hold off. */
export const SERIAL_RX_CAPACITY = 64 * 1024;

export interface SerialOptions {
  readonly irq: IrqLine;
  /** Bytes the guest transmitted. */
  readonly output: (bytes: Uint8Array) => void;
}

export class Serial implements BusDevice {
  private interruptEnable = 0;
  private lineControl = 0x03; // 8 data bits, no parity, 1 stop bit
  private modemControl = 0x08; // OUT2: interrupts routed
  private scratch = 0;
  private divisor = DEFAULT_DIVISOR;
  private fifoEnabled = false;
  private thrEmptyPending = false;
  private rx: number[] = [];
  private rxHead = 0;
  private lineLevel = false;

  constructor(private readonly options: SerialOptions) {}

  /** Bytes from the host for the guest to read. Returns how many fit (the rest is refused). */
  input(bytes: Uint8Array): number {
    const room = SERIAL_RX_CAPACITY - this.rxLength();
    const taken = Math.min(room, bytes.length);
    for (let i = 0; i < taken; i++) this.rx.push(bytes[i]!);
    this.updateInterrupt();
    return taken;
  }

  /** Room left in the receive FIFO. */
  rxSpace(): number {
    return SERIAL_RX_CAPACITY - this.rxLength();
  }

  private rxLength(): number {
    return this.rx.length - this.rxHead;
  }

  private popRx(): number {
    if (this.rxLength() === 0) return 0;
    const byte = this.rx[this.rxHead++]!;
    if (this.rxHead > 4096 && this.rxHead * 2 > this.rx.length) {
      this.rx = this.rx.slice(this.rxHead);
      this.rxHead = 0;
    }
    return byte;
  }

  private get dlab(): boolean {
    return (this.lineControl & LCR_DLAB) !== 0;
  }

  private get loopback(): boolean {
    return (this.modemControl & MCR_LOOPBACK) !== 0;
  }

  private interruptId(): number {
    if (this.interruptEnable & IER_RX_DATA && this.rxLength() > 0) return IIR_RX_DATA;
    if (this.interruptEnable & IER_THR_EMPTY && this.thrEmptyPending) return IIR_THR_EMPTY;
    return IIR_NONE;
  }

  private updateInterrupt(): void {
    const level = this.interruptId() !== IIR_NONE;
    if (level !== this.lineLevel) {
      this.lineLevel = level;
      this.options.irq.setLevel(level);
    }
  }

  private modemStatus(): number {
    if (!this.loopback) return MSR_CONNECTED;
    let msr = 0;
    for (const [mcrBit, msrBit] of LOOPBACK_MSR_BITS) if (this.modemControl & mcrBit) msr |= msrBit;
    return msr;
  }

  read(offset: number, data: Uint8Array): void {
    data.fill(0);
    if (data.length !== 1) return;
    let value = 0;
    switch (offset) {
      case REG.data:
        value = this.dlab ? this.divisor & 0xff : this.popRx();
        break;
      case REG.interruptEnable:
        value = this.dlab ? this.divisor >> 8 : this.interruptEnable;
        break;
      case REG.interruptId: {
        const id = this.interruptId();
        // Reading IIR acknowledges a THR-empty interrupt.
        if (id === IIR_THR_EMPTY) this.thrEmptyPending = false;
        value = id | (this.fifoEnabled ? IIR_FIFO_ENABLED : 0);
        break;
      }
      case REG.lineControl:
        value = this.lineControl;
        break;
      case REG.modemControl:
        value = this.modemControl;
        break;
      case REG.lineStatus:
        value = LSR_THR_EMPTY | LSR_TRANSMITTER_EMPTY | (this.rxLength() > 0 ? LSR_DATA_READY : 0);
        break;
      case REG.modemStatus:
        value = this.modemStatus();
        break;
      case REG.scratch:
        value = this.scratch;
        break;
    }
    data[0] = value;
    this.updateInterrupt();
  }

  write(offset: number, data: Uint8Array): void {
    if (data.length !== 1) return;
    const value = data[0]!;
    switch (offset) {
      case REG.data:
        if (this.dlab) {
          this.divisor = (this.divisor & 0xff00) | value;
        } else {
          if (this.loopback) this.input(Uint8Array.of(value));
          else this.options.output(Uint8Array.of(value));
          // Transmission is instant: the holding register is empty again at once.
          this.thrEmptyPending = true;
        }
        break;
      case REG.interruptEnable:
        if (this.dlab) {
          this.divisor = (this.divisor & 0xff) | (value << 8);
        } else {
          const enablingThr = !(this.interruptEnable & IER_THR_EMPTY) && value & IER_THR_EMPTY;
          this.interruptEnable = value & IER_MASK;
          if (enablingThr) this.thrEmptyPending = true;
        }
        break;
      case REG.interruptId:
        this.fifoEnabled = (value & FCR_FIFO_ENABLE) !== 0;
        if (value & FCR_CLEAR_RX) {
          this.rx = [];
          this.rxHead = 0;
        }
        break;
      case REG.lineControl:
        this.lineControl = value;
        break;
      case REG.modemControl:
        this.modemControl = value & MCR_MASK;
        break;
      case REG.scratch:
        this.scratch = value;
        break;
    }
    this.updateInterrupt();
  }
}
