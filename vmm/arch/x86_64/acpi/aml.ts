/**
 * A tiny AML (ACPI Machine Language) emitter: just what our DSDT needs.
 *
 * Every function returns the encoded bytes of one term; terms nest by passing
 * those bytes to their parent. Encodings follow the ACPI 6.5 specification,
 * chapter 20 (AML grammar) and 6.4 (resource descriptors); the unit tests
 * compare the output with bytes produced by ACPICA's `iasl` compiler
 * (including its choice of the shortest integer encoding).
 */

export class AmlError extends Error {
  constructor(message: string) {
    super(`aml: ${message}`);
    this.name = 'AmlError';
  }
}

// --- opcodes (ACPI 6.5 §20.3) ---
export const ZERO_OP = 0x00;
export const ONE_OP = 0x01;
export const NAME_OP = 0x08;
export const BYTE_PREFIX = 0x0a;
export const WORD_PREFIX = 0x0b;
export const DWORD_PREFIX = 0x0c;
export const STRING_PREFIX = 0x0d;
export const QWORD_PREFIX = 0x0e;
export const SCOPE_OP = 0x10;
export const BUFFER_OP = 0x11;
export const PACKAGE_OP = 0x12;
export const EXT_OP_PREFIX = 0x5b;
export const DEVICE_OP = 0x82; // after EXT_OP_PREFIX
export const ONES_OP = 0xff;
export const ROOT_CHAR = 0x5c; // '\'
export const PARENT_PREFIX_CHAR = 0x5e; // '^'
export const DUAL_NAME_PREFIX = 0x2e;
export const MULTI_NAME_PREFIX = 0x2f;

/** Joins encoded terms. */
export function concat(...parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * A NameSeg: four characters, the first [A-Z_], the rest [A-Z0-9_]; shorter
 * names are padded with '_' as ASL does ("_SB" → "_SB_").
 */
export function nameSeg(name: string): Uint8Array {
  if (!/^[A-Z_][A-Z0-9_]{0,3}$/.test(name)) throw new AmlError(`invalid name segment "${name}"`);
  const padded = name.padEnd(4, '_');
  return Uint8Array.from(padded, (c) => c.charCodeAt(0));
}

/**
 * A NameString: an optional root ('\') or parent ('^'…) prefix, then
 * dot-separated segments ("\_SB.VR00"). One segment is written bare, two with
 * DualNamePrefix, more with MultiNamePrefix.
 */
export function nameString(path: string): Uint8Array {
  let rest = path;
  const prefix: number[] = [];
  if (rest.startsWith('\\')) {
    prefix.push(ROOT_CHAR);
    rest = rest.slice(1);
  } else {
    while (rest.startsWith('^')) {
      prefix.push(PARENT_PREFIX_CHAR);
      rest = rest.slice(1);
    }
  }
  const segments = rest === '' ? [] : rest.split('.').map(nameSeg);
  let body: Uint8Array;
  if (segments.length === 0)
    body = Uint8Array.of(0x00); // NullName
  else if (segments.length === 1) body = segments[0]!;
  else if (segments.length === 2) body = concat(Uint8Array.of(DUAL_NAME_PREFIX), ...segments);
  else if (segments.length <= 255) body = concat(Uint8Array.of(MULTI_NAME_PREFIX, segments.length), ...segments);
  else throw new AmlError(`name path with ${segments.length} segments`);
  return concat(Uint8Array.from(prefix), body);
}

/**
 * PkgLength for a package whose contents (after the PkgLength) are
 * `contentLength` bytes. The encoded value counts the PkgLength bytes too.
 * One byte holds up to 63; otherwise bits 7:6 of the lead byte give the
 * number of following bytes (1–3), its bits 3:0 the low nibble, and each
 * following byte the next 8 bits.
 */
export function pkgLength(contentLength: number): Uint8Array {
  if (!Number.isSafeInteger(contentLength) || contentLength < 0) {
    throw new AmlError(`invalid package length ${contentLength}`);
  }
  if (contentLength + 1 <= 0x3f) return Uint8Array.of(contentLength + 1);
  for (let extra = 1; extra <= 3; extra++) {
    const total = contentLength + 1 + extra;
    if (total < 2 ** (4 + 8 * extra)) {
      const out = new Uint8Array(1 + extra);
      out[0] = (extra << 6) | (total & 0x0f);
      for (let i = 1; i <= extra; i++) out[i] = Math.floor(total / 2 ** (4 + 8 * (i - 1))) & 0xff;
      return out;
    }
  }
  throw new AmlError(`package length ${contentLength} exceeds 2^28`);
}

/** opcode(s) + PkgLength + contents. */
function withPkgLength(opcode: readonly number[], contents: Uint8Array): Uint8Array {
  return concat(Uint8Array.from(opcode), pkgLength(contents.length), contents);
}

const U64_MAX = 0xffff_ffff_ffff_ffffn;

/**
 * An Integer constant in its shortest encoding, as iasl writes it: ZeroOp,
 * OneOp, OnesOp (all 64 bits set), or Byte/Word/DWord/QWord prefix + value.
 */
export function integer(value: number | bigint): Uint8Array {
  const v = BigInt(value);
  if (v < 0n || v > U64_MAX) throw new AmlError(`integer ${v} outside 0..2^64-1`);
  if (v === 0n) return Uint8Array.of(ZERO_OP);
  if (v === 1n) return Uint8Array.of(ONE_OP);
  if (v === U64_MAX) return Uint8Array.of(ONES_OP);
  const sized = (prefix: number, bytes: number): Uint8Array => {
    const out = new Uint8Array(1 + bytes);
    out[0] = prefix;
    for (let i = 0; i < bytes; i++) out[1 + i] = Number((v >> BigInt(8 * i)) & 0xffn);
    return out;
  };
  if (v <= 0xffn) return sized(BYTE_PREFIX, 1);
  if (v <= 0xffffn) return sized(WORD_PREFIX, 2);
  if (v <= 0xffff_ffffn) return sized(DWORD_PREFIX, 4);
  return sized(QWORD_PREFIX, 8);
}

/** A String constant: ASCII (1–0x7f, no NUL), NUL-terminated. */
export function string(value: string): Uint8Array {
  if ([...value].some((c) => c.charCodeAt(0) < 1 || c.charCodeAt(0) > 0x7f)) {
    throw new AmlError(`string "${value}" is not NUL-free ASCII`);
  }
  return concat(
    Uint8Array.of(STRING_PREFIX),
    Uint8Array.from(value, (c) => c.charCodeAt(0)),
    Uint8Array.of(0),
  );
}

/** A Buffer: BufferOp PkgLength BufferSize(Integer) bytes. */
export function buffer(bytes: Uint8Array): Uint8Array {
  return withPkgLength([BUFFER_OP], concat(integer(bytes.length), bytes));
}

/** A Package of up to 255 elements (each an encoded data term). */
export function pkg(elements: readonly Uint8Array[]): Uint8Array {
  if (elements.length > 255) throw new AmlError(`package of ${elements.length} elements (VarPackage not supported)`);
  return withPkgLength([PACKAGE_OP], concat(Uint8Array.of(elements.length), ...elements));
}

/** Name(path, value): declares a named object. */
export function name(path: string, value: Uint8Array): Uint8Array {
  return concat(Uint8Array.of(NAME_OP), nameString(path), value);
}

/** Scope(path) { children }. */
export function scope(path: string, children: readonly Uint8Array[]): Uint8Array {
  return withPkgLength([SCOPE_OP], concat(nameString(path), ...children));
}

/** Device(path) { children }. */
export function device(path: string, children: readonly Uint8Array[]): Uint8Array {
  return withPkgLength([EXT_OP_PREFIX, DEVICE_OP], concat(nameString(path), ...children));
}

/**
 * EisaId("PNP0501"): the compressed 32-bit EISA id iasl produces — three
 * letters in 5 bits each (A = 1) and four hex digits, stored big-endian.
 */
export function eisaId(id: string): number {
  if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id)) throw new AmlError(`invalid EISA id "${id}"`);
  const letter = (i: number): number => id.charCodeAt(i) - 0x40;
  const vendor = (letter(0) << 10) | (letter(1) << 5) | letter(2);
  const product = parseInt(id.slice(3), 16);
  const bigEndian = ((vendor << 16) | product) >>> 0;
  // Bytes in memory: vendor high, vendor low, product high, product low → as a little-endian integer.
  return (
    (((bigEndian >>> 24) & 0xff) |
      (((bigEndian >>> 16) & 0xff) << 8) |
      (((bigEndian >>> 8) & 0xff) << 16) |
      ((bigEndian & 0xff) << 24)) >>>
    0
  );
}

// --- resource descriptors (ACPI 6.5 §6.4) ---

const END_TAG = 0x79; // small item 0x0f, length 1
const IRQ_NO_FLAGS_TAG = 0x22; // small item 0x04, length 2
const IO_TAG = 0x47; // small item 0x08, length 7
const MEMORY32_FIXED_TAG = 0x86; // large item 0x06
const EXTENDED_INTERRUPT_TAG = 0x89; // large item 0x09

/**
 * ResourceTemplate(){ descriptors }: a Buffer holding the descriptors and an
 * End Tag. The End Tag's checksum byte is 0 ("treat as valid"), as iasl writes.
 */
export function resourceTemplate(descriptors: readonly Uint8Array[]): Uint8Array {
  return buffer(concat(...descriptors, Uint8Array.of(END_TAG, 0x00)));
}

function le(value: number, bytes: number): number[] {
  return Array.from({ length: bytes }, (_, i) => Math.floor(value / 2 ** (8 * i)) & 0xff);
}

function checkRange(what: string, value: number, max: number): void {
  if (!Number.isInteger(value) || value < 0 || value > max) throw new AmlError(`${what} ${value} out of range`);
}

/** Memory32Fixed(ReadWrite|ReadOnly, base, length). */
export function memory32Fixed(base: number, length: number, writable = true): Uint8Array {
  checkRange('Memory32Fixed base', base, 0xffff_ffff);
  checkRange('Memory32Fixed length', length, 0xffff_ffff);
  return Uint8Array.from([MEMORY32_FIXED_TAG, ...le(9, 2), writable ? 1 : 0, ...le(base, 4), ...le(length, 4)]);
}

/** IO(Decode16, min, max, alignment, length). A fixed port range has min = max. */
export function io(min: number, max: number, alignment: number, length: number): Uint8Array {
  checkRange('IO min', min, 0xffff);
  checkRange('IO max', max, 0xffff);
  checkRange('IO alignment', alignment, 0xff);
  checkRange('IO length', length, 0xff);
  return Uint8Array.from([IO_TAG, 0x01 /* Decode16 */, ...le(min, 2), ...le(max, 2), alignment, length]);
}

/** IRQNoFlags(){ irqs }: ISA IRQs 0–15, edge-triggered, active-high, exclusive. */
export function irqNoFlags(irqs: readonly number[]): Uint8Array {
  let mask = 0;
  for (const irq of irqs) {
    checkRange('IRQ', irq, 15);
    mask |= 1 << irq;
  }
  return Uint8Array.from([IRQ_NO_FLAGS_TAG, ...le(mask, 2)]);
}

export interface InterruptFlags {
  /** ResourceConsumer (true, the usual) or ResourceProducer. */
  readonly consumer?: boolean;
  /** Edge (true) or Level (false). */
  readonly edgeTriggered: boolean;
  /** ActiveLow (true) or ActiveHigh (false). */
  readonly activeLow: boolean;
  /** Shared (true) or Exclusive (false). */
  readonly shared: boolean;
  readonly wakeCapable?: boolean;
}

/** Interrupt(consumer, Edge|Level, ActiveHigh|ActiveLow, Exclusive|Shared){ gsis }: the extended interrupt descriptor. */
export function interrupt(flags: InterruptFlags, gsis: readonly number[]): Uint8Array {
  if (gsis.length < 1 || gsis.length > 255) throw new AmlError(`Interrupt with ${gsis.length} interrupts`);
  gsis.forEach((g) => checkRange('GSI', g, 0xffff_ffff));
  const bits =
    ((flags.consumer ?? true) ? 0x01 : 0) |
    (flags.edgeTriggered ? 0x02 : 0) |
    (flags.activeLow ? 0x04 : 0) |
    (flags.shared ? 0x08 : 0) |
    (flags.wakeCapable ? 0x10 : 0);
  const length = 2 + 4 * gsis.length;
  return Uint8Array.from([
    EXTENDED_INTERRUPT_TAG,
    ...le(length, 2),
    bits,
    gsis.length,
    ...gsis.flatMap((g) => le(g, 4)),
  ]);
}
