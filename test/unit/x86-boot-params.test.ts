import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory } from '../../vmm/memory/guest-memory.js';
import {
  BootParamsError,
  E820_RAM,
  E820_RESERVED,
  buildBootParams,
  e820Map,
  placeInitrd,
  synthesizeSetupHeader,
  writeBootParams,
} from '../../vmm/arch/x86_64/boot-params.js';
import type { BootParamsErrorCode } from '../../vmm/arch/x86_64/boot-params.js';
import {
  ACPI_REGION_END,
  ACPI_REGION_START,
  CMDLINE_ADDRESS,
  MAX_GUEST_RAM,
  ZERO_PAGE_ADDRESS,
} from '../../vmm/arch/x86_64/layout.js';

const MiB = 1024 * 1024;

/** A bzImage-like setup header (bytes from 0x1f1 to 0x26c) with a given cmdline_size and init_size. */
function header(cmdlineSize = 2047): Uint8Array {
  const page = new Uint8Array(0x26c);
  const v = new DataView(page.buffer);
  v.setUint8(0x1f1, 27);
  v.setUint16(0x1fe, 0xaa55, true);
  v.setUint8(0x201, 0x6a);
  v.setUint32(0x202, 0x53726448, true);
  v.setUint16(0x206, 0x020f, true);
  v.setUint8(0x211, 0x01);
  v.setUint16(0x1fa, 0xffff, true); // vid_mode
  v.setUint32(0x22c, 0x7fffffff, true);
  v.setUint32(0x238, cmdlineSize, true);
  v.setUint32(0x260, 0x3f98000, true);
  return page.slice(0x1f1);
}

function assertCode(fn: () => unknown, code: BootParamsErrorCode): void {
  assert.throws(fn, (e: unknown) => e instanceof BootParamsError && e.code === code);
}

test('the e820 map: low RAM, the reserved legacy hole with the ACPI tables, high RAM', () => {
  const map = e820Map(256 * MiB);
  assert.deepEqual(map, [
    { addr: 0, size: 0x9fc00, type: E820_RAM },
    { addr: 0x9fc00, size: 0x100000 - 0x9fc00, type: E820_RESERVED },
    { addr: 0x100000, size: 256 * MiB - 0x100000, type: E820_RAM },
  ]);
  const reserved = map[1]!;
  assert.ok(reserved.addr <= ACPI_REGION_START && ACPI_REGION_END <= reserved.addr + reserved.size);
  assert.equal(e820Map(MAX_GUEST_RAM).at(-1)!.addr + e820Map(MAX_GUEST_RAM).at(-1)!.size, 0xc000_0000);
  assertCode(() => e820Map(MAX_GUEST_RAM + 4096), 'ram-size');
  assertCode(() => e820Map(MiB), 'ram-size');
});

test('zero-page fields sit at their documented offsets', () => {
  const hdr = header();
  const page = buildBootParams({
    setupHeader: hdr,
    ramSize: 128 * MiB,
    cmdline: 'console=ttyS0 quiet',
    initrd: { address: 0x7c0_0000, size: 0x12345 },
    rsdpAddress: 0xe0000,
  });
  const v = new DataView(page.buffer);
  assert.equal(page.length, 4096);
  // The setup header is copied to 0x1f1 and keeps the kernel's fields.
  assert.equal(v.getUint8(0x1f1), 27, 'setup_sects');
  assert.equal(v.getUint16(0x1fa, true), 0xffff, 'vid_mode');
  assert.equal(v.getUint16(0x1fe, true), 0xaa55, 'boot_flag');
  assert.equal(v.getUint32(0x202, true), 0x53726448, 'HdrS');
  assert.equal(v.getUint16(0x206, true), 0x020f, 'version');
  assert.equal(v.getUint32(0x260, true), 0x3f98000, 'init_size');
  assert.equal(v.getUint32(0x238, true), 2047, "the kernel's cmdline_size is left alone");
  // Fields the loader fills in.
  assert.equal(v.getUint8(0x210), 0xff, 'type_of_loader');
  assert.equal(v.getUint8(0x211), 0x81, 'loadflags: LOADED_HIGH | CAN_USE_HEAP');
  assert.equal(v.getUint16(0x224, true), 0xfe00, 'heap_end_ptr');
  assert.equal(v.getUint32(0x228, true), CMDLINE_ADDRESS, 'cmd_line_ptr');
  assert.equal(v.getUint32(0x0c8, true), 0, 'ext_cmd_line_ptr');
  assert.equal(v.getUint32(0x218, true), 0x7c0_0000, 'ramdisk_image');
  assert.equal(v.getUint32(0x21c, true), 0x12345, 'ramdisk_size');
  assert.equal(v.getBigUint64(0x070, true), 0xe0000n, 'acpi_rsdp_addr');
  assert.equal(v.getUint8(0x1ef), 0, 'sentinel');
  // e820.
  assert.equal(v.getUint8(0x1e8), 3, 'e820_entries');
  const e820 = [0, 1, 2].map((i) => ({
    addr: Number(v.getBigUint64(0x2d0 + i * 20, true)),
    size: Number(v.getBigUint64(0x2d0 + i * 20 + 8, true)),
    type: v.getUint32(0x2d0 + i * 20 + 16, true),
  }));
  assert.deepEqual(e820, e820Map(128 * MiB));
  // Nothing else written: the screen_info area and the rest of the page stay zero.
  assert.deepEqual(page.subarray(0, 0x70), new Uint8Array(0x70));
  assert.deepEqual(page.subarray(0x2d0 + 3 * 20), new Uint8Array(4096 - 0x2d0 - 60));
});

test('an ELF kernel gets a synthesized minimal setup header', () => {
  const synthesized = synthesizeSetupHeader();
  const page = buildBootParams({ setupHeader: null, ramSize: 64 * MiB, cmdline: 'x' });
  const v = new DataView(page.buffer);
  assert.equal(v.getUint16(0x1fe, true), 0xaa55);
  assert.equal(v.getUint32(0x202, true), 0x53726448);
  assert.equal(v.getUint16(0x206, true), 0x020c);
  assert.equal(v.getUint8(0x210), 0xff);
  assert.equal(v.getUint32(0x228, true), CMDLINE_ADDRESS);
  assert.equal(v.getUint32(0x238, true), 2047);
  assert.equal(v.getUint32(0x218, true), 0, 'no initrd');
  assert.equal(v.getBigUint64(0x070, true), 0n, 'no RSDP given');
  assert.equal(synthesized.length, 0x290 - 0x1f1);
});

test('the command line is written NUL-terminated and checked against cmdline_size', () => {
  const mem = GuestMemory.allocate(64 * MiB);
  mem.fill(CMDLINE_ADDRESS, 64, 0xaa);
  writeBootParams(mem, { setupHeader: header(), ramSize: mem.size, cmdline: 'root=/dev/vda ro' });
  assert.equal(Buffer.from(mem.read(CMDLINE_ADDRESS, 16)).toString('latin1'), 'root=/dev/vda ro');
  assert.equal(mem.readU8(CMDLINE_ADDRESS + 16), 0);
  assert.equal(mem.readU8(CMDLINE_ADDRESS + 17), 0, 'old contents cleared');
  assert.equal(mem.readU32(ZERO_PAGE_ADDRESS + 0x202), 0x53726448);

  // cmdline_size 16: 16 characters fit, 17 do not.
  writeBootParams(mem, { setupHeader: header(16), ramSize: mem.size, cmdline: 'a'.repeat(16) });
  assertCode(
    () => writeBootParams(mem, { setupHeader: header(16), ramSize: mem.size, cmdline: 'a'.repeat(17) }),
    'cmdline-too-long',
  );
  assertCode(
    () => buildBootParams({ setupHeader: null, ramSize: mem.size, cmdline: 'a'.repeat(2048) }),
    'cmdline-too-long',
  );
  assertCode(() => buildBootParams({ setupHeader: null, ramSize: mem.size, cmdline: 'a\nb' }), 'cmdline-invalid');
});

test('the initrd goes to the highest page-aligned address that fits', () => {
  const kernelEnd = 0x100_0000 + 0x3f9_8000;
  // 256 MiB RAM: ends at RAM end, page-aligned.
  const a = placeInitrd({ ramSize: 256 * MiB, initrdSize: 3_000_000, kernelEnd });
  assert.equal(a % 4096, 0);
  assert.ok(a + 3_000_000 <= 256 * MiB);
  assert.ok(256 * MiB - (a + 3_000_000) < 4096);
  // initrd_addr_max limits it below RAM end (the initrd may occupy up to and including initrd_addr_max).
  const b = placeInitrd({ ramSize: 3 * 1024 * MiB, initrdSize: 8192, kernelEnd, initrdAddrMax: 0x7fff_ffff });
  assert.equal(b, 0x8000_0000 - 8192);
  // Never into the MMIO gap even if the kernel would allow it.
  const c = placeInitrd({ ramSize: MAX_GUEST_RAM, initrdSize: 4096, kernelEnd, initrdAddrMax: 0xffff_ffff });
  assert.equal(c, 0xc000_0000 - 4096);
  // Exactly fits between kernel end and RAM end; one page more does not.
  const ram = 128 * MiB;
  assert.equal(placeInitrd({ ramSize: ram, initrdSize: ram - kernelEnd, kernelEnd }), kernelEnd);
  assertCode(() => placeInitrd({ ramSize: ram, initrdSize: ram - kernelEnd + 1, kernelEnd }), 'initrd-too-big');
  assertCode(() => placeInitrd({ ramSize: ram, initrdSize: 0, kernelEnd }), 'initrd-too-big');
});

test('an initrd outside RAM or a header without HdrS is refused', () => {
  assertCode(
    () =>
      buildBootParams({
        setupHeader: null,
        ramSize: 64 * MiB,
        cmdline: '',
        initrd: { address: 63 * MiB, size: 2 * MiB },
      }),
    'initrd-too-big',
  );
  assertCode(
    () => buildBootParams({ setupHeader: new Uint8Array(0x40), ramSize: 64 * MiB, cmdline: '' }),
    'bad-header',
  );
});
