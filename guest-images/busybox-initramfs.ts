/**
 * A small initramfs: Debian's static busybox, a chosen set of kernel modules
 * (loaded by /init in dependency order) and an /init script. Used for the KVM
 * lab's L1 machine, for VMM integration tests, and as the base of the
 * sandbox guest's initramfs.
 */
import { readFileSync, existsSync } from 'node:fs';
import { basename } from 'node:path';
import { CpioWriter } from './cpio.js';
import { moduleLoadOrder, type DebianKernel } from './debian-kernel.js';

/** Debian's `busybox-static` package installs it here. */
export const BUSYBOX_STATIC = '/bin/busybox';

/** Where modules live inside the initramfs; `/init` loads them from here in order. */
export const INITRAMFS_MODULE_DIR = '/lib/belljar-modules';

export interface BusyboxInitramfsOptions {
  readonly kernel: DebianKernel;
  /** Module names (as `modprobe` knows them); dependencies are added. */
  readonly modules: readonly string[];
  /** Shell script run after the modules are loaded (as `/init.d/main`). */
  readonly script: string;
  /** Extra files: path inside → contents. */
  readonly files?: Readonly<Record<string, Uint8Array | string>>;
}

/**
 * The /init preamble every variant shares: mount the kernel's filesystems,
 * load the modules in order, then hand over to the variant's script.
 */
function initPreamble(moduleFiles: readonly string[]): string {
  const loads = moduleFiles.map((f) => `insmod ${INITRAMFS_MODULE_DIR}/${f} || echo "init: insmod ${f} failed"`);
  return [
    '#!/bin/busybox sh',
    '/bin/busybox --install -s /bin',
    'mount -t proc proc /proc',
    'mount -t sysfs sysfs /sys',
    'mount -t devtmpfs devtmpfs /dev',
    ...loads,
    'exec /bin/sh /init.d/main',
    '',
  ].join('\n');
}

export function buildBusyboxInitramfs(options: BusyboxInitramfsOptions): Buffer {
  if (!existsSync(BUSYBOX_STATIC)) {
    throw new Error(`${BUSYBOX_STATIC} is missing: install Debian's busybox-static package`);
  }
  const modulePaths = moduleLoadOrder(options.kernel, options.modules);
  const moduleFiles = modulePaths.map((p) => basename(p));
  const cpio = new CpioWriter();
  for (const dir of ['bin', 'sbin', 'dev', 'proc', 'sys', 'tmp', 'mnt', 'run', 'etc', 'init.d']) cpio.dir(dir);
  cpio.dirs(INITRAMFS_MODULE_DIR.slice(1));
  cpio.charDevice('dev/console', 5, 1);
  cpio.file('bin/busybox', readFileSync(BUSYBOX_STATIC), 0o755);
  cpio.symlink('bin/sh', 'busybox');
  modulePaths.forEach((path, i) => cpio.file(`${INITRAMFS_MODULE_DIR.slice(1)}/${moduleFiles[i]}`, readFileSync(path)));
  for (const [path, data] of Object.entries(options.files ?? {})) {
    const clean = path.replace(/^\/+/, '');
    const parent = clean.split('/').slice(0, -1).join('/');
    if (parent) cpio.dirs(parent);
    cpio.file(clean, data, 0o755);
  }
  cpio.file('init.d/main', options.script, 0o755);
  cpio.file('init', initPreamble(moduleFiles), 0o755);
  return cpio.finish();
}
