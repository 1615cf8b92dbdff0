import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory } from '../../vmm/memory/guest-memory.js';
import {
  AcpiError,
  FADT_F_HW_REDUCED_ACPI,
  FADT_SIZE,
  IAPC_BOOT_ARCH_8042,
  IAPC_BOOT_ARCH_CMOS_RTC_NOT_PRESENT,
  IAPC_BOOT_ARCH_MSI_NOT_SUPPORTED,
  IAPC_BOOT_ARCH_VGA_NOT_PRESENT,
  buildDsdtAml,
  checksum,
  writeAcpiTableSet,
  writeAcpiTables,
} from '../../vmm/arch/x86_64/acpi/tables.js';
import {
  ACPI_REGION_END,
  ACPI_REGION_START,
  ACPI_SLEEP_CONTROL_PORT,
  ACPI_SLEEP_STATUS_PORT,
  IOAPIC_ADDRESS,
  LAPIC_ADDRESS,
  RSDP_ADDRESS,
  virtioMmioSlot,
} from '../../vmm/arch/x86_64/layout.js';

const MiB = 1024 * 1024;

function setup(config: Partial<Parameters<typeof writeAcpiTables>[1]> = {}): {
  mem: GuestMemory;
  rsdp: number;
  tables: Map<string, number>;
} {
  const mem = GuestMemory.allocate(2 * MiB);
  const full = { vcpus: 2, virtioSlots: [virtioMmioSlot(0), virtioMmioSlot(1)], ...config };
  const set = writeAcpiTableSet(mem, full);
  const rsdp = writeAcpiTables(mem, full);
  return { mem, rsdp, tables: new Map(set.map((t) => [t.signature, t.address])) };
}

function ascii(mem: GuestMemory, at: number, length: number): string {
  return Buffer.from(mem.read(at, length)).toString('latin1');
}

/** Follows RSDP → XSDT → tables the way a guest does; returns signature → address. */
function walk(mem: GuestMemory, rsdp: number): Map<string, number> {
  assert.equal(ascii(mem, rsdp, 8), 'RSD PTR ');
  const xsdt = mem.readU64(rsdp + 24);
  assert.equal(ascii(mem, xsdt, 4), 'XSDT');
  const found = new Map<string, number>([['XSDT', xsdt]]);
  const length = mem.readU32(xsdt + 4);
  for (let at = xsdt + 36; at < xsdt + length; at += 8) {
    const table = mem.readU64(at);
    found.set(ascii(mem, table, 4), table);
  }
  const fadt = found.get('FACP');
  assert.ok(fadt !== undefined);
  found.set('DSDT', mem.readU64(fadt + 140));
  return found;
}

test('the RSDP sits at 0xE0000 with both checksums correct and points at the XSDT', () => {
  const { mem, rsdp, tables } = setup();
  assert.equal(rsdp, RSDP_ADDRESS);
  assert.equal(rsdp, 0xe0000);
  assert.equal(rsdp % 16, 0);
  assert.equal(checksum(mem.read(rsdp, 20)), 0, 'ACPI 1.0 checksum over the first 20 bytes');
  assert.equal(checksum(mem.read(rsdp, 36)), 0, 'extended checksum over all 36 bytes');
  assert.equal(mem.readU8(rsdp + 15), 2, 'revision 2 (ACPI 2.0+)');
  assert.equal(mem.readU32(rsdp + 16), 0, 'no RSDT');
  assert.equal(mem.readU32(rsdp + 20), 36);
  assert.equal(ascii(mem, rsdp + 9, 6), 'BELLJR');
  assert.equal(mem.readU64(rsdp + 24), tables.get('XSDT'));
});

test('every table has its signature, length, a zero checksum and lies in the reserved ACPI region', () => {
  const { mem, rsdp } = setup();
  const found = walk(mem, rsdp);
  assert.deepEqual([...found.keys()].sort(), ['APIC', 'DSDT', 'FACP', 'XSDT']);
  const ends: [number, number][] = [];
  for (const [signature, address] of found) {
    const length = mem.readU32(address + 4);
    assert.equal(ascii(mem, address, 4), signature);
    assert.equal(checksum(mem.read(address, length)), 0, `${signature} checksum`);
    assert.ok(address >= ACPI_REGION_START && address + length <= ACPI_REGION_END, `${signature} inside region`);
    assert.equal(address % 8, 0);
    assert.equal(ascii(mem, address + 10, 6), 'BELLJR');
    ends.push([address, address + length]);
  }
  ends.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ends.length; i++) assert.ok(ends[i]![0] >= ends[i - 1]![1], 'tables do not overlap');
  assert.ok(ends[0]![0] >= RSDP_ADDRESS + 36, 'tables do not overlap the RSDP');
  assert.equal(mem.readU32(found.get('XSDT')! + 4), 36 + 2 * 8);
});

test('the FADT is revision 6, hardware-reduced, with the sleep registers and X_DSDT', () => {
  const { mem, tables } = setup();
  const fadt = tables.get('FACP')!;
  assert.equal(mem.readU32(fadt + 4), FADT_SIZE);
  assert.equal(FADT_SIZE, 276);
  assert.equal(mem.readU8(fadt + 8), 6);
  const flags = mem.readU32(fadt + 112);
  assert.ok(flags & FADT_F_HW_REDUCED_ACPI);
  assert.equal(FADT_F_HW_REDUCED_ACPI, 1 << 20);
  const iapc = mem.readU16(fadt + 109);
  assert.equal(
    iapc,
    IAPC_BOOT_ARCH_VGA_NOT_PRESENT | IAPC_BOOT_ARCH_MSI_NOT_SUPPORTED | IAPC_BOOT_ARCH_CMOS_RTC_NOT_PRESENT,
  );
  assert.equal(iapc & IAPC_BOOT_ARCH_8042, 0);
  assert.equal(mem.readU64(fadt + 140), tables.get('DSDT'), 'X_DSDT');
  assert.equal(mem.readU32(fadt + 40), 0, '32-bit DSDT pointer unused');
  for (const [offset, port] of [
    [244, ACPI_SLEEP_CONTROL_PORT],
    [256, ACPI_SLEEP_STATUS_PORT],
  ] as const) {
    assert.equal(mem.readU8(fadt + offset), 1, 'SystemIO');
    assert.equal(mem.readU8(fadt + offset + 1), 8, 'bit width');
    assert.equal(mem.readU8(fadt + offset + 2), 0, 'bit offset');
    assert.equal(mem.readU8(fadt + offset + 3), 1, 'byte access');
    assert.equal(mem.readU64(fadt + offset + 4), port);
  }
  assert.equal(ACPI_SLEEP_CONTROL_PORT, 0x600);
  assert.equal(ACPI_SLEEP_STATUS_PORT, 0x601);
  assert.equal(ascii(mem, fadt + 268, 8), 'BELLJAR\0');

  const with8042 = setup({ i8042: true });
  assert.ok(with8042.mem.readU16(with8042.tables.get('FACP')! + 109) & IAPC_BOOT_ARCH_8042);
});

test('the MADT lists one enabled local APIC per vCPU, the IOAPIC and an NMI on LINT1', () => {
  const { mem, tables } = setup({ vcpus: 3 });
  const madt = tables.get('APIC')!;
  const length = mem.readU32(madt + 4);
  assert.equal(mem.readU32(madt + 36), LAPIC_ADDRESS);
  assert.equal(mem.readU32(madt + 40), 1, 'PCAT_COMPAT');
  const entries: { type: number; at: number; length: number }[] = [];
  for (let at = madt + 44; at < madt + length;) {
    const entry = { type: mem.readU8(at), at, length: mem.readU8(at + 1) };
    assert.ok(entry.length > 0);
    entries.push(entry);
    at += entry.length;
  }
  const lapics = entries.filter((e) => e.type === 0);
  assert.equal(lapics.length, 3);
  lapics.forEach((e, i) => {
    assert.equal(e.length, 8);
    assert.equal(mem.readU8(e.at + 2), i, 'processor UID');
    assert.equal(mem.readU8(e.at + 3), i, 'APIC id');
    assert.equal(mem.readU32(e.at + 4), 1, 'enabled');
  });
  const ioapics = entries.filter((e) => e.type === 1);
  assert.equal(ioapics.length, 1);
  assert.equal(ioapics[0]!.length, 12);
  assert.equal(mem.readU32(ioapics[0]!.at + 4), IOAPIC_ADDRESS);
  assert.equal(mem.readU32(ioapics[0]!.at + 8), 0, 'GSI base');
  assert.equal(entries.filter((e) => e.type === 2).length, 0, 'no override with KVM default routing');
  const nmi = entries.find((e) => e.type === 4)!;
  assert.equal(mem.readU8(nmi.at + 2), 0xff);
  assert.equal(mem.readU8(nmi.at + 5), 1);
  assert.equal(length, 44 + 3 * 8 + 12 + 6);
});

test('the MADT can carry the QEMU-style IRQ0 → GSI2 override', () => {
  const { mem, tables } = setup({ vcpus: 1, irq0Override: true });
  const madt = tables.get('APIC')!;
  const length = mem.readU32(madt + 4);
  let found = false;
  for (let at = madt + 44; at < madt + length; at += mem.readU8(at + 1)) {
    if (mem.readU8(at) !== 2) continue;
    found = true;
    assert.equal(mem.readU8(at + 1), 10);
    assert.equal(mem.readU8(at + 2), 0, 'ISA bus');
    assert.equal(mem.readU8(at + 3), 0, 'IRQ 0');
    assert.equal(mem.readU32(at + 4), 2, 'GSI 2');
    assert.equal(mem.readU16(at + 8), 0, 'conforms to bus');
  }
  assert.ok(found);
});

test('the DSDT body equals what iasl compiles from the equivalent ASL', () => {
  // iasl 20200925 output for: Scope (\_SB) { Device (COM1) {...PNP0501, IO 0x3F8/8, IRQNoFlags {4}}
  // Device (PEVT) {"QEMU0001", IO 0x505/1} Device (VR00) {...} Device (VR01) {...} }
  // Name (_S5, Package () {0x05, Zero, Zero, Zero})
  const expected =
    '10420e5f53425f5b822b434f4d31085f4849440c41d00501085f55494400085f43525311100a0d4701f803f803000822100079005b82' +
    '2750455654085f4849440d51454d553030303100085f435253110d0a0a470105050505010179005b82410456523030085f4849440d4c' +
    '4e524f3030303500085f55494400085f43434101085f435253111a0a1786090001000000d00002000089060001011000000079005b82' +
    '410456523031085f4849440d4c4e524f3030303500085f55494401085f43434101085f435253111a0a1786090001001000d000020000' +
    '8906000101110000007900085f53355f1207040a05000000';
  const aml = buildDsdtAml({ vcpus: 1, virtioSlots: [virtioMmioSlot(0), virtioMmioSlot(1)] });
  assert.equal(Buffer.from(aml).toString('hex'), expected);

  const { mem, tables } = setup();
  const dsdt = tables.get('DSDT')!;
  assert.equal(mem.readU8(dsdt + 8), 2, 'revision 2: 64-bit integers');
  assert.equal(Buffer.from(mem.read(dsdt + 36, aml.length)).toString('hex'), expected);
});

test('the DSDT has one LNRO0005 device per virtio slot and can omit serial and pvpanic', () => {
  const slots = [0, 1, 2, 3, 4, 5, 6, 7].map(virtioMmioSlot);
  const aml = Buffer.from(buildDsdtAml({ vcpus: 1, virtioSlots: slots, serial: false, pvpanic: false }));
  assert.equal(aml.toString('latin1').split('LNRO0005').length - 1, 8);
  for (let n = 0; n < 8; n++) assert.ok(aml.includes(`VR0${n}`));
  assert.ok(!aml.includes('QEMU0001'));
  assert.ok(!aml.includes('COM1'));
  // GSIs 16..23 appear in the Interrupt descriptors.
  for (let n = 0; n < 8; n++) assert.ok(aml.includes(Buffer.from([0x89, 6, 0, 1, 1, 16 + n, 0, 0, 0])));
});

test('bad configurations are refused', () => {
  const mem = GuestMemory.allocate(2 * MiB);
  assert.throws(() => writeAcpiTables(mem, { vcpus: 0, virtioSlots: [] }), AcpiError);
  assert.throws(() => writeAcpiTables(mem, { vcpus: 1000, virtioSlots: [] }), AcpiError);
  assert.throws(
    () => writeAcpiTables(mem, { vcpus: 1, virtioSlots: [{ base: 0x100000, size: 0x200, gsi: 16 }] }),
    AcpiError,
  );
  assert.throws(() => writeAcpiTables(mem, { vcpus: 1, virtioSlots: [virtioMmioSlot(0), virtioMmioSlot(0)] }));
  assert.throws(() => writeAcpiTables(mem, { vcpus: 1, virtioSlots: [{ ...virtioMmioSlot(0), gsi: 4 }] }));
  assert.throws(() => writeAcpiTables(mem, { vcpus: 1, virtioSlots: [{ ...virtioMmioSlot(0), gsi: 24 }] }));
  // 128 vCPUs still fit the region.
  assert.equal(writeAcpiTables(mem, { vcpus: 128, virtioSlots: [] }), RSDP_ADDRESS);
});
