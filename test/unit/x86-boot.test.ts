import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory } from '../../vmm/memory/guest-memory.js';
import { setupLinuxBoot } from '../../vmm/arch/x86_64/boot.js';
import { checksum } from '../../vmm/arch/x86_64/acpi/tables.js';
import { KernelLoadError } from '../../vmm/arch/x86_64/kernel-loader.js';
import * as layout from '../../vmm/arch/x86_64/layout.js';

const MiB = 1024 * 1024;

function tinyBzImage(initSize = 0x40000): Uint8Array {
  const file = new Uint8Array(5 * 512 + 0x1000);
  const v = new DataView(file.buffer);
  v.setUint8(0x1f1, 4);
  v.setUint32(0x1f4, 0x100, true);
  v.setUint16(0x1fe, 0xaa55, true);
  v.setUint8(0x201, 0x6a);
  v.setUint32(0x202, 0x53726448, true);
  v.setUint16(0x206, 0x020f, true);
  v.setUint8(0x211, 0x01);
  v.setUint32(0x22c, 0x7fffffff, true);
  v.setUint32(0x230, 0x200000, true);
  v.setUint8(0x234, 1);
  v.setUint16(0x236, 0x3, true);
  v.setUint32(0x238, 2047, true);
  v.setBigUint64(0x258, 0x1000000n, true);
  v.setUint32(0x260, initSize, true);
  file.fill(0xcc, 5 * 512);
  return file;
}

test('layout: every window and port range is distinct and where the brief puts it', () => {
  assert.equal(layout.MAX_GUEST_RAM, layout.MMIO_GAP_START);
  assert.equal(layout.MMIO_GAP_START, 0xc000_0000);
  assert.equal(layout.HIGH_MEMORY_START, 0x10_0000);
  assert.equal(layout.LOW_MEMORY_END, 0x9fc00);
  assert.ok(layout.RSDP_ADDRESS >= 0xe0000 && layout.RSDP_ADDRESS < 0x100000 && layout.RSDP_ADDRESS % 16 === 0);
  const mmio: [string, number, number][] = [
    ...Array.from({ length: layout.VIRTIO_MMIO_SLOT_COUNT }, (_, i): [string, number, number] => {
      const slot = layout.virtioMmioSlot(i);
      assert.equal(slot.gsi, 16 + i);
      assert.equal(slot.size, 0x200);
      return [`virtio${i}`, slot.base, layout.VIRTIO_MMIO_STRIDE];
    }),
    ['ioapic', layout.IOAPIC_ADDRESS, 0x1000],
    ['lapic', layout.LAPIC_ADDRESS, 0x1000],
    ['kvm identity map', layout.KVM_IDENTITY_MAP_ADDRESS, 0x1000],
    ['kvm tss', layout.KVM_TSS_ADDRESS, 0x3000],
  ];
  const pio: [string, number, number][] = [
    ['i8042 data', layout.I8042_DATA_PORT, 1],
    ['i8042 command', layout.I8042_COMMAND_PORT, 1],
    ['boot signal', layout.BOOT_SIGNAL_PORT, 1],
    ['com1', layout.SERIAL_COM1_PORT, layout.SERIAL_PORT_COUNT],
    ['pvpanic', layout.PVPANIC_PORT, 1],
    ['sleep control', layout.ACPI_SLEEP_CONTROL_PORT, 1],
    ['sleep status', layout.ACPI_SLEEP_STATUS_PORT, 1],
  ];
  for (const [, base, size] of mmio) assert.ok(base >= layout.MMIO_GAP_START && base + size <= layout.MMIO_GAP_END);
  for (const ranges of [mmio, pio]) {
    const sorted = [...ranges].sort((a, b) => a[1] - b[1]);
    for (let i = 1; i < sorted.length; i++) {
      assert.ok(
        sorted[i]![1] >= sorted[i - 1]![1] + sorted[i - 1]![2],
        `${sorted[i]![0]} overlaps ${sorted[i - 1]![0]}`,
      );
    }
  }
  assert.throws(() => layout.virtioMmioSlot(8), RangeError);
  assert.equal(
    (layout.ACPI_S5_SLEEP_TYPE << layout.ACPI_SLEEP_CONTROL_SLP_TYP_SHIFT) | layout.ACPI_SLEEP_CONTROL_SLP_EN,
    0x34,
  );
});

test('setupLinuxBoot writes kernel, initrd, ACPI, zero page, GDT and page tables consistently', () => {
  const mem = GuestMemory.allocate(64 * MiB);
  const initrd = new Uint8Array(10_000).fill(0x5a);
  const boot = setupLinuxBoot(mem, {
    kernel: tinyBzImage(),
    initrd,
    cmdline: 'console=ttyS0 panic=-1',
    vcpus: 2,
    virtioSlots: [layout.virtioMmioSlot(0)],
  });
  // Kernel and entry.
  assert.equal(boot.kernel.loadAddress, 0x100_0000);
  assert.equal(boot.regs.rip, 0x100_0200);
  assert.equal(mem.readU8(0x100_0000), 0xcc);
  // initrd at the top of RAM, recorded in the zero page.
  assert.ok(boot.initrdAddress !== null);
  assert.equal(boot.initrdAddress % 4096, 0);
  assert.ok(boot.initrdAddress + initrd.length <= mem.size);
  assert.deepEqual(mem.read(boot.initrdAddress, initrd.length), initrd);
  const zp = layout.ZERO_PAGE_ADDRESS;
  assert.equal(mem.readU32(zp + 0x218), boot.initrdAddress);
  assert.equal(mem.readU32(zp + 0x21c), initrd.length);
  // Zero page → RSDP → valid tables.
  assert.equal(mem.readU64(zp + 0x70), boot.rsdpAddress);
  assert.equal(checksum(mem.read(boot.rsdpAddress, 36)), 0);
  // Command line.
  assert.equal(mem.readU32(zp + 0x228), layout.CMDLINE_ADDRESS);
  assert.equal(Buffer.from(mem.read(layout.CMDLINE_ADDRESS, 22)).toString(), 'console=ttyS0 panic=-1');
  // CPU state points at what was written.
  assert.equal(boot.regs.rsi, zp);
  assert.equal(mem.readU64(boot.sregs.cr3) & ~0xfff, layout.PDPT_ADDRESS);
  assert.equal(mem.readU64Big(boot.sregs.gdt.base + boot.sregs.cs.selector), 0x00af_9b00_0000_ffffn);
  assert.equal(boot.msrs.length, 11);
  assert.equal(boot.fpu.fcw, 0x37f);
});

test('setupLinuxBoot without an initrd leaves the ramdisk fields zero', () => {
  const mem = GuestMemory.allocate(32 * MiB);
  const boot = setupLinuxBoot(mem, { kernel: tinyBzImage(), cmdline: '', vcpus: 1, virtioSlots: [] });
  assert.equal(boot.initrdAddress, null);
  assert.equal(mem.readU32(layout.ZERO_PAGE_ADDRESS + 0x218), 0);
  assert.equal(mem.readU32(layout.ZERO_PAGE_ADDRESS + 0x21c), 0);
});

test('setupLinuxBoot refuses a kernel that does not fit', () => {
  const mem = GuestMemory.allocate(32 * MiB);
  assert.throws(
    () => setupLinuxBoot(mem, { kernel: tinyBzImage(32 * MiB), cmdline: '', vcpus: 1, virtioSlots: [] }),
    KernelLoadError,
  );
});
