/**
 * The built guest image a sandbox boots (from `npm run guest:build`, found
 * through the cache's latest.json), and the kernel command line our VMM adds
 * to the image's own.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { GuestManifest } from '../../guest-images/build.js';
import { cacheRoot } from '../../guest-images/cache.js';

/**
 * What our VMM's machine needs on top of the image's command line: reboot
 * through the i8042 (the VMM ends the VM), no PCI probing, one UART, and the
 * agent on vsock.
 */
export const VMM_CMDLINE_EXTRA: readonly string[] = ['reboot=k', 'pci=off', '8250.nr_uarts=1', 'belljar.agent=vsock'];

export interface GuestImage {
  readonly kernel: string;
  readonly initrd: string;
  readonly rootfs: string;
  readonly cmdline: string;
}

export function latestManifestPointer(): string {
  return join(cacheRoot(), 'guest', 'latest.json');
}

/** The guest image, or a plain-words reason why there is none. */
export function findGuestImage(): GuestImage | { readonly missing: string } {
  const pointer = latestManifestPointer();
  const missing = { missing: 'The sandbox image is not built yet: run `npm run guest:build` once, then try again.' };
  if (!existsSync(pointer)) return missing;
  try {
    const { manifest: manifestPath } = JSON.parse(readFileSync(pointer, 'utf8')) as { manifest: string };
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as GuestManifest;
    const files = [manifest.kernel.path, manifest.initramfs.path, manifest.rootfs.path];
    if (!files.every((file) => existsSync(file))) return missing;
    return {
      kernel: manifest.kernel.path,
      initrd: manifest.initramfs.path,
      rootfs: manifest.rootfs.path,
      cmdline: [...manifest.cmdline, ...VMM_CMDLINE_EXTRA].join(' '),
    };
  } catch {
    return missing;
  }
}
