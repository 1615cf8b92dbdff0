/**
 * Guests for integration tests and benchmarks: Debian's kernel (fetched into
 * the cache on the host; the lab sees the cache read-only) and busybox
 * initramfs images built per test in a temp directory.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BOOT_SIGNAL_INIT_REACHED, BOOT_SIGNAL_PORT } from '../../vmm/arch/x86_64/layout.js';
import { buildBusyboxInitramfs } from '../../guest-images/busybox-initramfs.js';
import { debianKernel, type DebianKernel } from '../../guest-images/debian-kernel.js';

/** Modules a test guest needs for our devices: virtio-mmio (found through ACPI), blk, rng, pvpanic. */
export const TEST_GUEST_MODULES = ['virtio_mmio', 'virtio_blk', 'virtio_rng', 'pvpanic-mmio'] as const;

/** Shell that tells the VMM "init reached" through the boot signal port (via /dev/port). */
export const SIGNAL_INIT_REACHED = `printf '\\${BOOT_SIGNAL_INIT_REACHED.toString(8)}' | dd of=/dev/port bs=1 seek=${BOOT_SIGNAL_PORT} count=1 2>/dev/null`;

/** The kernel command line tests use: quiet, serial console, reboot on panic. */
export const TEST_CMDLINE = 'console=ttyS0 reboot=k panic=-1 pci=off 8250.nr_uarts=1 quiet';

export interface TestGuest {
  readonly kernel: DebianKernel;
  readonly dir: string;
  readonly initrd: string;
  /** A file in the guest's temp directory. */
  path(name: string): string;
  dispose(): void;
}

/** Builds an initramfs whose /init loads the test modules, then runs `script`. */
export async function testGuest(script: string): Promise<TestGuest> {
  const kernel = await debianKernel();
  const dir = mkdtempSync(join(tmpdir(), 'belljar-guest-'));
  const initrd = join(dir, 'initrd.cpio');
  writeFileSync(initrd, buildBusyboxInitramfs({ kernel, modules: TEST_GUEST_MODULES, script }));
  return {
    kernel,
    dir,
    initrd,
    path: (name) => join(dir, name),
    dispose: () => rmSync(dir, { recursive: true, force: true }),
  };
}
