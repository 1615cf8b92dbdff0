// Expected bytes below were produced by ACPICA's iasl 20200925 (Debian acpica-tools)
// from the ASL quoted next to each case, and copied here; the tests do not need iasl.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  AmlError,
  buffer,
  device,
  eisaId,
  integer,
  interrupt,
  io,
  irqNoFlags,
  memory32Fixed,
  name,
  nameSeg,
  nameString,
  pkg,
  pkgLength,
  resourceTemplate,
  scope,
  string,
} from '../../vmm/arch/x86_64/acpi/aml.js';

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}
function bytes(text: string): Uint8Array {
  return Uint8Array.from(Buffer.from(text.replace(/\s+/g, ''), 'hex'));
}
function counting(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => i & 0xff);
}

test('integers use the shortest encoding, as iasl optimises them', () => {
  assert.equal(hex(integer(0)), '00'); // Zero
  assert.equal(hex(integer(1)), '01'); // One
  assert.equal(hex(integer(5)), '0a05');
  assert.equal(hex(integer(0xff)), '0aff'); // Name (INT5, 0xFF)
  assert.equal(hex(integer(0x100)), '0b0001'); // Name (INT1, 0x100)
  assert.equal(hex(integer(0xffff)), '0bffff'); // Name (INT6, 0xFFFF)
  assert.equal(hex(integer(0x12345678)), '0c78563412');
  assert.equal(hex(integer(0xffffffff)), '0cffffffff'); // Name (INT2, 0xFFFFFFFF)
  assert.equal(hex(integer(0x1_0000_0000)), '0e0000000001000000'); // Name (INT3, 0x100000000)
  assert.equal(hex(integer(0xffff_ffff_ffff_ffffn)), 'ff'); // Name (INT4, 0xFFFFFFFFFFFFFFFF) → Ones
  assert.throws(() => integer(-1), AmlError);
  assert.throws(() => integer(1n << 64n), AmlError);
});

test('PkgLength switches from one to two to three bytes where iasl does', () => {
  // Name (B060, Buffer () {60 bytes}) → 11 3f 0a 3c …: contents 62 bytes, PkgLength 63 in one byte
  assert.equal(hex(buffer(counting(60)).subarray(0, 4)), '113f0a3c');
  // Name (B061, Buffer () {61 bytes}) → 11 41 04 0a 3d: 63 + 2 = 0x41 in two bytes
  assert.equal(hex(buffer(counting(61)).subarray(0, 5)), '1141040a3d');
  // Name (B089, Buffer () {4089 bytes}) → 11 4e ff 0b f9 0f
  assert.equal(hex(buffer(counting(4089)).subarray(0, 6)), '114eff0bf90f');
  // Name (B090, Buffer () {4090 bytes}) → 11 4f ff 0b fa 0f (4095 still fits two bytes)
  assert.equal(hex(buffer(counting(4090)).subarray(0, 6)), '114fff0bfa0f');
  // Name (B091, Buffer () {4091 bytes}) → 11 81 00 01 0b fb 0f (4097 needs three)
  assert.equal(hex(buffer(counting(4091)).subarray(0, 7)), '118100010bfb0f');
  assert.equal(buffer(counting(4091)).length, 1 + 3 + 3 + 4091);
  // Four-byte form: 2^20 and beyond.
  const big = pkgLength(1 << 20);
  assert.equal(big.length, 4);
  assert.equal(big[0]! >> 6, 3);
  const total = (big[0]! & 0x0f) | (big[1]! << 4) | (big[2]! << 12) | (big[3]! << 20);
  assert.equal(total, (1 << 20) + 4);
  assert.throws(() => pkgLength(2 ** 28), AmlError);
});

test('names: NameSeg padding, root, parent, dual and multi-segment paths', () => {
  assert.equal(hex(nameSeg('_SB')), '5f53425f');
  assert.equal(hex(nameSeg('X')), '585f5f5f');
  assert.throws(() => nameSeg('1ABC'), AmlError);
  assert.throws(() => nameSeg('abcd'), AmlError);
  assert.throws(() => nameSeg('ABCDE'), AmlError);
  assert.equal(hex(nameString('\\_SB')), '5c5f53425f');
  // Scope (\_SB) { Name (^Y, 1) } → 08 5e 59 5f 5f 5f 01
  assert.equal(hex(name('^Y', integer(1))), '085e595f5f5f01');
  // Name (\_SB.X, 1) at root → iasl drops the root prefix: 08 2e 5f 53 42 5f 58 5f 5f 5f 01
  assert.equal(hex(name('_SB.X', integer(1))), '082e5f53425f585f5f5f01');
  // Name (\_SB.ZZZ.WW.DEF, 4) → 08 2f 04 _SB_ ZZZ_ WW__ DEF_ 0a 04
  assert.equal(hex(name('_SB.ZZZ.WW.DEF', integer(4))), '082f045f53425f5a5a5a5f57575f5f4445465f0a04');
  assert.equal(hex(nameString('')), '00');
});

test('strings, packages and buffers', () => {
  assert.equal(hex(string('ab')), '0d616200');
  assert.throws(() => string('a\0b'), AmlError);
  assert.throws(() => string('é'), AmlError);
  // Name (_S5, Package () { 0x05, Zero, Zero, Zero }) → 08 5f 53 35 5f 12 07 04 0a 05 00 00 00
  assert.equal(hex(name('_S5', pkg([integer(5), integer(0), integer(0), integer(0)]))), '085f53355f1207040a05000000');
  // Package () { 0x12, 0x1234, 0x12345678, 0x123456789A, Ones, "ab", Buffer () {1, 2, 3} }
  assert.equal(
    hex(
      pkg([
        integer(0x12),
        integer(0x1234),
        integer(0x12345678),
        integer(0x12_3456_789an),
        integer(0xffff_ffff_ffff_ffffn),
        string('ab'),
        buffer(Uint8Array.of(1, 2, 3)),
      ]),
    ),
    '1221070a120b34120c785634120e9a78563412000000ff0d6162001106' + '0a03010203',
  );
  assert.throws(() => pkg(Array.from({ length: 256 }, () => integer(0))), AmlError);
});

test('EisaId compresses like iasl', () => {
  // Name (_HID, EisaId ("PNP0501")) → 0c 41 d0 05 01
  assert.equal(hex(integer(eisaId('PNP0501'))), '0c41d00501');
  assert.equal(eisaId('PNP0501'), 0x0105d041);
  assert.equal(eisaId('PNP0303'), 0x0303d041);
  assert.throws(() => eisaId('pnp0501'), AmlError);
});

test('resource descriptors match iasl byte for byte', () => {
  // Memory32Fixed (ReadWrite, 0xD0000000, 0x00000200)
  assert.equal(hex(memory32Fixed(0xd000_0000, 0x200)), '860900' + '01' + '000000d0' + '00020000');
  // Memory32Fixed (ReadOnly, 0x12345678, 0x1000)
  assert.equal(hex(memory32Fixed(0x1234_5678, 0x1000, false)), '860900' + '00' + '78563412' + '00100000');
  // Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive) {16}
  assert.equal(
    hex(interrupt({ edgeTriggered: false, activeLow: false, shared: false }, [16])),
    '8906000101' + '10000000',
  );
  // Interrupt (ResourceConsumer, Edge, ActiveLow, Shared) {5, 6}
  assert.equal(
    hex(interrupt({ edgeTriggered: true, activeLow: true, shared: true }, [5, 6])),
    '890a000f02' + '05000000' + '06000000',
  );
  // IO (Decode16, 0x03F8, 0x03F8, 0x00, 0x08)
  assert.equal(hex(io(0x3f8, 0x3f8, 0, 8)), '4701f803f8030008');
  // IRQNoFlags () {4} and {1, 12}
  assert.equal(hex(irqNoFlags([4])), '221000');
  assert.equal(hex(irqNoFlags([1, 12])), '220210');
  assert.throws(() => irqNoFlags([16]), AmlError);
  assert.throws(() => io(0x10000, 0, 0, 1), AmlError);
  assert.throws(() => interrupt({ edgeTriggered: true, activeLow: false, shared: false }, []), AmlError);
});

test('a virtio-mmio Device matches iasl output exactly', () => {
  // Device (VR00) { Name (_HID, "LNRO0005") Name (_UID, Zero) Name (_CCA, One)
  //   Name (_CRS, ResourceTemplate () { Memory32Fixed (ReadWrite, 0xD0000000, 0x200)
  //     Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive) {16} }) }
  const expected = bytes(`
    5b 82 41 04 56 52 30 30 08 5f 48 49 44 0d 4c 4e 52 4f 30 30 30 35 00 08 5f 55 49 44 00
    08 5f 43 43 41 01 08 5f 43 52 53 11 1a 0a 17 86 09 00 01 00 00 00 d0 00 02 00 00
    89 06 00 01 01 10 00 00 00 79 00`);
  const actual = device('VR00', [
    name('_HID', string('LNRO0005')),
    name('_UID', integer(0)),
    name('_CCA', integer(1)),
    name(
      '_CRS',
      resourceTemplate([
        memory32Fixed(0xd000_0000, 0x200),
        interrupt({ edgeTriggered: false, activeLow: false, shared: false }, [16]),
      ]),
    ),
  ]);
  assert.equal(hex(actual), hex(expected));
});

test('Scope wraps its children with a PkgLength', () => {
  // Scope (\_SB) { Name (^Y, 1) } → 10 0c 5f 53 42 5f 08 5e 59 5f 5f 5f 01
  assert.equal(hex(scope('_SB', [name('^Y', integer(1))])), '100c5f53425f085e595f5f5f01');
});
