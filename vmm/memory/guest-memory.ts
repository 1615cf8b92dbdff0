/**
 * Guest physical memory as seen by device models.
 *
 * Every access a device makes to guest RAM goes through this class, and every
 * access is bounds-checked against the RAM size: a guest-supplied address or
 * length that falls outside RAM raises `GuestMemoryError`, never touches host
 * memory outside the buffer. Device models catch that error and answer the
 * guest with an error status (or mark themselves broken).
 *
 * The backing store is a V8-owned (Shared)ArrayBuffer, so it works inside
 * Electron's V8 memory cage too; see docs/guest-memory.md.
 */

export class GuestMemoryError extends Error {
  constructor(
    readonly gpa: number,
    readonly length: number,
    readonly size: number,
  ) {
    super(
      `guest memory access out of range: gpa=0x${gpa.toString(16)} length=${length} (RAM size 0x${size.toString(16)})`,
    );
    this.name = 'GuestMemoryError';
  }
}

/** Largest value the guest can name that we still treat as a plain number. */
const TWO_POW_32 = 0x1_0000_0000;

export class GuestMemory {
  readonly size: number;
  private readonly bytes: Uint8Array;
  private readonly view: DataView;

  /** `bytes` is guest physical address 0 .. bytes.length. */
  constructor(bytes: Uint8Array) {
    this.bytes = bytes;
    this.size = bytes.length;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Plain (non-shared) memory of `size` bytes, for unit tests and tools. */
  static allocate(size: number): GuestMemory {
    return new GuestMemory(new Uint8Array(size));
  }

  /** True when [gpa, gpa+length) lies inside RAM. Safe for any numeric input. */
  contains(gpa: number, length: number): boolean {
    return (
      Number.isSafeInteger(gpa) &&
      Number.isSafeInteger(length) &&
      gpa >= 0 &&
      length >= 0 &&
      gpa <= this.size &&
      length <= this.size - gpa
    );
  }

  private check(gpa: number, length: number): void {
    if (!this.contains(gpa, length)) throw new GuestMemoryError(gpa, length, this.size);
  }

  /**
   * A live view of [gpa, gpa+length). Writes through it reach the guest.
   * Zero-copy: use it to read file data straight into guest RAM.
   */
  slice(gpa: number, length: number): Uint8Array {
    this.check(gpa, length);
    return this.bytes.subarray(gpa, gpa + length);
  }

  read(gpa: number, length: number): Uint8Array {
    return this.slice(gpa, length).slice();
  }

  write(gpa: number, data: Uint8Array): void {
    this.check(gpa, data.length);
    this.bytes.set(data, gpa);
  }

  fill(gpa: number, length: number, value = 0): void {
    this.slice(gpa, length).fill(value);
  }

  readU8(gpa: number): number {
    this.check(gpa, 1);
    return this.bytes[gpa]!;
  }
  readU16(gpa: number): number {
    this.check(gpa, 2);
    return this.view.getUint16(gpa, true);
  }
  readU32(gpa: number): number {
    this.check(gpa, 4);
    return this.view.getUint32(gpa, true);
  }
  /**
   * A 64-bit guest value as a number. Values at or above 2^53 cannot be exact
   * numbers; they are returned as Infinity so any bounds check on them fails.
   */
  readU64(gpa: number): number {
    this.check(gpa, 8);
    const low = this.view.getUint32(gpa, true);
    const high = this.view.getUint32(gpa + 4, true);
    const value = high * TWO_POW_32 + low;
    return Number.isSafeInteger(value) ? value : Infinity;
  }
  readU64Big(gpa: number): bigint {
    this.check(gpa, 8);
    return this.view.getBigUint64(gpa, true);
  }

  writeU8(gpa: number, value: number): void {
    this.check(gpa, 1);
    this.bytes[gpa] = value;
  }
  writeU16(gpa: number, value: number): void {
    this.check(gpa, 2);
    this.view.setUint16(gpa, value, true);
  }
  writeU32(gpa: number, value: number): void {
    this.check(gpa, 4);
    this.view.setUint32(gpa, value, true);
  }
  writeU64(gpa: number, value: bigint | number): void {
    this.check(gpa, 8);
    this.view.setBigUint64(gpa, BigInt(value), true);
  }
}
